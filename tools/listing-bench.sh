#!/usr/bin/env bash
# What ring points cost a listing: for each points count given, two real nodes in one group
# (cluster.points = P each, so about 2P stretches of the ring), 100 keys SET through RESP,
# then the median wall time of $CALLS redis-cli DBSIZE and KEYS * calls (a process each, as
# a user runs them), and how many SCAN calls (COUNT 10) walk the 100 keys.
#   tools/listing-bench.sh [POINTS ...]   (default: 16 1024; CALLS, default 40)
# Needs a build and redis-cli. Ports from 17700 up on 127.0.0.1; data under a temporary
# directory removed at the end; every node is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
apsisd=build/tools/apsisd
counts=("$@")
[ ${#counts[@]} -eq 0 ] && counts=(16 1024)
calls=${CALLS:-40}
pids=()
source tools/bench-lib.sh
bench_begin apsis-listing-bench

printf "%8s %10s %10s %12s\n" points DBSIZE "KEYS *" "SCAN calls"
for points in "${counts[@]}"; do
  pids=()
  for i in 1 2; do
    "$apsisd" --set node.name="n$i" --set node.id="$i" --set node.data_dir="$dir/$points/n$i" \
      --set network.resp_port=$((17700 + i)) --set network.binary_port=$((17702 + i)) \
      --set network.http_port=0 --set backend.group=1 --set log.level=warn \
      --set cluster.port=$((17710 + i)) --set cluster.points="$points" \
      --set cluster.cookie='"listing-bench-cookie"' --set 'cluster.seeds=["127.0.0.1:17711"]' \
      > "$dir/n$i-$points.log" 2>&1 &
    pids+=($!)
  done
  ok=  # until the first node sees the second up
  for _ in $(seq 300); do
    build/tools/apsis --port 17703 cluster status 2>/dev/null | grep -q "^n2 .* up " && ok=1 && break
    sleep 0.1
  done
  [ -n "$ok" ] || { echo "listing-bench: the nodes did not join" >&2; cat "$dir"/n*-"$points".log >&2; exit 1; }
  for k in $(seq 100); do echo "SET key:$k value"; done | redis-cli -p 17701 > /dev/null
  python3 - "$points" "$calls" <<'PY'
import statistics, subprocess, sys, time
points, calls = sys.argv[1], int(sys.argv[2])
def cli(*args):
    return subprocess.run(["redis-cli", "-p", "17701", *args], check=True,
                          capture_output=True, text=True).stdout
def median_ms(*args):
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        cli(*args)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)
assert cli("DBSIZE").strip() == "100", "DBSIZE is not 100"
scans, cursor, seen = 0, "0", set()
while True:
    out = cli("SCAN", cursor, "COUNT", "10").split("\n")
    scans += 1
    cursor, seen = out[0], seen | {k for k in out[1:] if k}
    if cursor == "0" or scans > 10000:
        break
assert len(seen) == 100, f"SCAN found {len(seen)} keys"
print(f"{points:>8} {median_ms('DBSIZE'):>7.1f} ms {median_ms('KEYS', '*'):>7.1f} ms {scans:>12}")
PY
  for p in "${pids[@]}"; do kill "$p"; done
  for p in "${pids[@]}"; do wait "$p" || true; done
done
