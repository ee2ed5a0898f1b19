#!/usr/bin/env bash
# Two apsisd binaries side by side, on the same load, alternated: redis-benchmark SET and GET
# (100-byte values, 50 clients, -P 1 and -P 16) on the RESP port, and wrk GET of one 100-byte
# value on the REST port. What a change that should not move speed is checked with.
#   tools/compare-builds.sh OLD_APSISD NEW_APSISD [rounds, default 2]
# e.g. git worktree add /tmp/old REV && cmake -S /tmp/old -B /tmp/old/build -G Ninja
#      -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build /tmp/old/build --target apsisd;
#      tools/compare-builds.sh /tmp/old/build/tools/apsisd build/tools/apsisd
# Ports 18490-18492 on 127.0.0.1; data under a temporary directory removed at the end; each
# node is stopped by PID after its round.
set -euo pipefail
cd "$(dirname "$0")/.."
old="$1" new="$2" rounds="${3:-2}"
pids=()
source tools/bench-lib.sh
bench_begin apsis-compare
value=$(printf 'v%.0s' $(seq 100))

# one NAME BINARY: starts it, prints one line of ops/s, stops it.
one() {
  rm -rf "$dir/data"
  "$2" --set node.data_dir="$dir/data" --set network.resp_port=18490 \
    --set network.binary_port=18491 --set network.http_port=18492 --set log.level=warn \
    > "$dir/apsisd.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do grep -q "serving RESP" "$dir/apsisd.log" && break; sleep 0.1; done
  local line="$1"
  for p in 1 16; do
    local n=$((p == 1 ? 200000 : 2000000))
    local csv
    csv=$(redis-benchmark -p 18490 -t set,get -d 100 -c 50 -n "$n" -r 100000 -P "$p" --csv)
    line+=$(echo "$csv" | awk -F'"' -v p="$p" '/^"(SET|GET)"/ {printf " %s-P%s=%.0f", $2, p, $4}')
  done
  curl -sf -X PUT --data-binary "$value" http://127.0.0.1:18492/v1/ns/default/keys/bench > /dev/null
  line+=" REST-GET=$(wrk -t2 -c64 -d5s http://127.0.0.1:18492/v1/ns/default/keys/bench |
    awk '/Requests\/sec/ {printf "%.0f", $2}')"
  kill "$pid"
  wait "$pid" || true  # a killed process's status is not 0; set -e must not stop here
  echo "$line"
}

for r in $(seq "$rounds"); do
  one "old" "$old"
  one "new" "$new"
done
