#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan+UBSan) in build-fuzz/ and runs each one
# for a while: tools/fuzz.sh [seconds per target, default 30]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
bash tools/setup.sh
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAPSIS_FUZZ=ON
cmake --build build-fuzz
for target in build-fuzz/tests/fuzz/*_fuzz; do
  corpus="build-fuzz/corpus/$(basename "$target")"
  mkdir -p "$corpus"
  log="build-fuzz/$(basename "$target").log"
  echo "== $target for ${seconds}s"
  if ! "$target" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
       -artifact_prefix=build-fuzz/ "$corpus" > "$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $target failed; the input is saved under build-fuzz/ (crash-*)"
    exit 1
  fi
  grep -E "average_exec_per_sec|new_units_added" "$log"
done
echo "fuzz: every target ran ${seconds}s without a crash"
