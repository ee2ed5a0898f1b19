#!/usr/bin/env bash
# Durable writes against Redis's: redis-benchmark SET (100-byte values, 50 clients, -P 1,
# 100,000 random keys) on apsisd with its backend at fsync "always" and on redis-server with
# appendfsync always, alternated; after each apsisd round, the writes each fsync covered.
#   tools/fsync-bench.sh [rounds, default 3]   (SETs per run: $OPS, default 50000)
# Needs a build. Ports 18490-18493 on 127.0.0.1; data under a temporary directory removed at
# the end; each server is stopped by PID after its round.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}" ops="${OPS:-50000}"
pids=()
source tools/bench-lib.sh
bench_begin apsis-fsync-bench

# set_rate PORT: SET ops/s and p99 (ms) of one redis-benchmark run.
set_rate() {
  redis-benchmark -p "$1" -t set -d 100 -c 50 -n "$ops" -r 100000 -P 1 --csv 2>/dev/null |
    awk -F'"' '/^"SET"/ {printf "%.0f SET/s, p99 %s ms", $4, $14}'
}

for r in $(seq "$rounds"); do
  rm -rf "$dir"/*
  build/tools/apsisd --set node.data_dir="$dir/apsis" --set network.resp_port=18490 \
    --set network.binary_port=18491 --set network.http_port=18492 --set log.level=warn \
    --set backend.fsync=always > "$dir/apsisd.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q "serving RESP" "$dir/apsisd.log" && break; sleep 0.1; done
  line="round $r: apsisd $(set_rate 18490)"
  line+=$(build/tools/apsis --port 18491 --json stat |
    python3 -c 'import json,sys; b=json.load(sys.stdin)["backends"][0];
print(", %.1f writes/fsync" % (b["synced_writes"] / max(b["syncs"], 1)), end="")')
  kill "${pids[-1]}"; wait "${pids[-1]}" || true  # a killed process's status is not 0
  mkdir -p "$dir/redis"
  redis-server --port 18493 --appendonly yes --appendfsync always --save '' --dir "$dir/redis" \
    > /dev/null &
  pids+=($!)
  for _ in $(seq 100); do redis-cli -p 18493 ping > /dev/null 2>&1 && break; sleep 0.1; done
  line+="; redis-server $(set_rate 18493)"
  kill "${pids[-1]}"; wait "${pids[-1]}" || true
  echo "$line"
done
