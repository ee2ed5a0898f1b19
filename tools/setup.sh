#!/usr/bin/env bash
# Installs every Debian package apsis needs to build, test and benchmark.
# Idempotent; runs as root (or through sudo) on a fresh Debian 12 machine.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  clang libclang-rt-14-dev            # sanitizers and libFuzzer
  clang-format                        # tools/format.sh (CI checks every file)
  libcaf-dev                          # C++ Actor Framework 0.17 (core, io, openssl)
  libssl-dev                          # SHA-512 ids (EVP)
  libboost-dev                        # Asio / Beast / Container
  libgtest-dev libgmock-dev googletest
  libbenchmark-dev
  librocksdb-dev                      # the `sorted` engine
  libxxhash-dev                       # record checksums (XXH3)
  libspdlog-dev libfmt-dev
  nlohmann-json3-dev                  # JSON part validation
  libtomlplusplus-dev libcli11-dev
  redis-tools                         # redis-cli / redis-benchmark for RESP tests
  python3                             # the process tests (standard library only)
  curl                                # docs/rest.md's examples, run by a process test
  wrk nginx-light                     # tools/rest-bench.sh: REST GET vs. a static file
  redis-server                        # tools/tls-bench.sh: RESP over TLS vs. Redis over TLS
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
