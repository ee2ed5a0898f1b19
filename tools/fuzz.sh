#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan+UBSan) in build-asan/, the build of
# `tools/test.sh --sanitize` (so that CI compiles once), and runs each one for a while:
#   tools/fuzz.sh [seconds per target, default 30]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
out=build-asan
if [ ! -f "$out/CMakeCache.txt" ] || ! grep -q "APSIS_FUZZ:BOOL=ON" "$out/CMakeCache.txt"; then
  rm -rf "$out"
  bash tools/setup.sh
  CC=clang CXX=clang++ cmake -S . -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DAPSIS_SANITIZE=ON -DAPSIS_FUZZ=ON
fi
targets=$(sed -n 's/^apsis_fuzz(\([a-z_]*\) .*/\1/p' tests/fuzz/CMakeLists.txt)
# shellcheck disable=SC2086
cmake --build "$out" --target $targets
for name in $targets; do
  target="$out/tests/fuzz/$name"
  corpus="$out/corpus/$name"
  mkdir -p "$corpus"
  seeds=()  # inputs that reach deep (tests/fuzz/seeds/<target>), read but never written
  [ -d "tests/fuzz/seeds/$name" ] && seeds=("tests/fuzz/seeds/$name")
  log="$out/$name.log"
  echo "== $target for ${seconds}s"
  if ! "$target" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
       -artifact_prefix="$out/" "$corpus" "${seeds[@]}" > "$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $target failed; the input is saved under $out/ (crash-*)"
    exit 1
  fi
  grep -E "average_exec_per_sec|new_units_added" "$log"
done
echo "fuzz: every target ran ${seconds}s without a crash"
