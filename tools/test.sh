#!/usr/bin/env bash
# Installs what apsis needs, builds it and runs every test.
#   tools/test.sh             release build in build/, all tests
#   tools/test.sh --sanitize  clang ASan+UBSan build in build-asan/ (the fuzz targets too,
#                             for tools/fuzz.sh), every test but the process ones
set -euo pipefail
cd "$(dirname "$0")/.."

build=build
flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
label=()
if [ "${1:-}" = "--sanitize" ]; then
  build=build-asan
  flags=(-DCMAKE_BUILD_TYPE=Debug -DAPSIS_SANITIZE=ON -DAPSIS_FUZZ=ON)
  label=(-L 'storage|actors|messages|clients|config')
  export CC=clang CXX=clang++
  # A build directory configured with another compiler cannot switch: start it afresh.
  if [ -f "$build/CMakeCache.txt" ] && ! grep -q "CMAKE_CXX_COMPILER:.*clang" "$build/CMakeCache.txt"; then
    rm -rf "$build"
  fi
fi
# Warnings fail the build everywhere, so a developer sees what CI would refuse.
flags+=(-DAPSIS_WERROR=ON)

bash tools/setup.sh
cmake -S . -B "$build" -G Ninja "${flags[@]}"
cmake --build "$build"
ctest --test-dir "$build" --output-on-failure --timeout 600 -j2 "${label[@]}"
