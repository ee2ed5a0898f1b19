#!/usr/bin/env bash
# Recovery cost: two nodes, two groups (one node each) on 127.0.0.1. N keys are written to
# both; then n2 is killed and N/10 more keys go to n1 alone (policy one), so n2's replica
# lags by 10%. n2 restarts, and `apsis recover dc` on n1 converges the pair while this
# script times it and reads each process's peak memory growth (VmHWM, reset just before).
#   tools/recovery-bench.sh [N]    (default 1000000; values are 100 bytes)
# Needs a build (tools/test.sh or tools/run.sh) and redis-cli. Ports 17500 up; data under a
# temporary directory that is removed at the end. Every node it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
apsisd=build/tools/apsisd
apsis=build/tools/apsis
n=${1:-1000000}
lag=$((n / 10))
declare -A pids=()
source tools/bench-lib.sh
bench_begin apsis-recovery-bench

# node I: starts node nI (group I), waits for its line. Anti-entropy's timer is an hour away
# and the push rate unlimited: the pass below does all the work, as fast as it can.
node() {
  local i=$1
  "$apsisd" --set node.name="n$i" --set node.id="$i" --set node.data_dir="$dir/n$i" \
    --set network.resp_port=$((17500 + i)) --set network.binary_port=$((17510 + i)) --set network.http_port=0 \
    --set backend.group="$i" --set replication.policy=one --set log.level=warn \
    --set cluster.port=$((17520 + i)) --set cluster.cookie='"recovery-bench-cookie"' \
    --set 'cluster.seeds=["127.0.0.1:17521"]' --set cluster.anti_entropy_ms=3600000 \
    --set cluster.recovery_rate=100000000 > "$dir/n$i.log" 2>&1 &
  pids[$i]=$!
  for _ in $(seq 100); do grep -q "serving RESP" "$dir/n$i.log" && return; sleep 0.1; done
  echo "recovery-bench: n$i did not start" >&2; cat "$dir/n$i.log" >&2; exit 1
}

# load FROM TO: SET key:FROM..key:TO-1 through n1's RESP port, pipelined.
load() {
  python3 -c "
import sys
v = 'x' * 100
out = sys.stdout
for i in range($1, $2):
    k = 'key:%d' % i
    out.write('*3\r\n\$3\r\nSET\r\n\$%d\r\n%s\r\n\$100\r\n%s\r\n' % (len(k), k, v))
" | redis-cli -p 17501 --pipe > "$dir/load.log"
  grep -q "errors: 0" "$dir/load.log" || { cat "$dir/load.log" >&2; exit 1; }
}

state_of() {  # state_of NODE_PORT NAME
  "$apsis" --port "$1" --json cluster status | python3 -c "
import json, sys
print({n['name']: n['state'] for n in json.load(sys.stdin)['cluster']['nodes']}.get('$2'))"
}
wait_state() {
  for _ in $(seq 200); do [ "$(state_of 17511 n2)" = "$1" ] && return; sleep 0.1; done
  echo "recovery-bench: n2 never $1" >&2; exit 1
}
keys_of() { "$apsis" --port "$1" --json stat | python3 -c "import json,sys; print(json.load(sys.stdin)['backends'][0]['keys'])"; }
kb() { awk -v f="$2" '$1 == f":" { print $2 }' "/proc/$1/status"; }

node 1
node 2
wait_state up
echo "== loading $n keys into both replicas"
load 0 $((n - lag))
kill -9 "${pids[2]}"; wait "${pids[2]}" 2>/dev/null || true
wait_state down
echo "== n2 down: $lag more keys into n1 alone"
load $((n - lag)) "$n"
node 2
wait_state up
echo "n1 holds $(keys_of 17511) keys, n2 $(keys_of 17512)"

for i in 1 2; do echo 5 > "/proc/${pids[$i]}/clear_refs"; done  # resets VmHWM to VmRSS
rss1=$(kb "${pids[1]}" VmRSS) rss2=$(kb "${pids[2]}" VmRSS)
start=$(date +%s.%N)
"$apsis" --port 17511 --json recover dc > "$dir/pass.json"
end=$(date +%s.%N)
echo "n1 holds $(keys_of 17511) keys, n2 $(keys_of 17512)"
python3 - "$dir/pass.json" "$start" "$end" "$n" "$rss1" "$(kb "${pids[1]}" VmHWM)" "$rss2" "$(kb "${pids[2]}" VmHWM)" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
start, end, n = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
rss1, hwm1, rss2, hwm2 = (int(x) for x in sys.argv[5:9])
secs = end - start
print(f"recover dc: {secs:.2f} s; {p['buckets_differing']} of 1024 buckets differed; "
      f"{p['keys_compared']} keys compared in them ({p['keys_compared'] / secs:,.0f}/s); "
      f"{p['repaired']} repaired ({p['repaired'] / secs:,.0f}/s); digests scanned {n:,} keys on each side")
print(f"memory growth during the pass (VmHWM - VmRSS before): n1 {(hwm1 - rss1) / 1024:.1f} MiB "
      f"(RSS before {rss1 / 1024:.0f} MiB), n2 {(hwm2 - rss2) / 1024:.1f} MiB (RSS before {rss2 / 1024:.0f} MiB)")
EOF
