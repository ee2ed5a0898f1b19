#!/usr/bin/env bash
# The cost of logins on the plain RESP path: redis-benchmark SET/GET against a node with no
# users, then against the same config with one user (every connection logs in with AUTH
# once), alternated `rounds` times, with each run's rates and the ratio of the medians.
#   tools/auth-bench.sh [rounds, default 2] [requests, default 200000]
# Needs a build (tools/test.sh) and redis-tools. Port 18580 on 127.0.0.1; everything under a
# temporary directory that is removed at the end; each node is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-2}"
requests="${2:-200000}"
pids=()
source tools/bench-lib.sh
bench_begin apsis-auth-bench

hash=$(printf 'bench-pw\n' | build/tools/apsis passwd)
printf '[[backend]]\ndir = "b1"\n' > "$dir/open.toml"
printf '[[backend]]\ndir = "b1"\n[[user]]\nname = "bench"\npassword = "%s"\npermissions = { "*" = ["read", "write"] }\n' \
  "$hash" > "$dir/users.toml"

run() {  # run CONFIG [AUTH ARGS]: one node, one redis-benchmark; prints "SET GET" rates
  build/tools/apsisd -c "$dir/$1.toml" --set node.data_dir="$dir/data-$1" --set network.resp_port=18580 \
    --set network.binary_port=0 --set network.http_port=0 --set log.level=warn > "$dir/$1.log" 2>&1 &
  local pid=$!
  pids+=($pid)
  for _ in $(seq 100); do grep -q "serving RESP" "$dir/$1.log" && break; sleep 0.1; done
  shift
  redis-benchmark -p 18580 "$@" -t set,get -d 100 -c 50 -r 100000 -n "$requests" --csv 2>/dev/null \
    | awk -F'"' '/^"SET"/ {s=$4} /^"GET"/ {g=$4} END {print s, g}'
  kill "$pid"
  wait "$pid" || true
}

for r in $(seq "$rounds"); do
  read -r s g <<< "$(run open)"
  echo "round $r: no users:        SET $s/s  GET $g/s"
  echo "$s $g" >> "$dir/open.txt"
  read -r s g <<< "$(run users --user bench -a bench-pw)"
  echo "round $r: AUTH per client: SET $s/s  GET $g/s"
  echo "$s $g" >> "$dir/users.txt"
done
median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
for col in 1 2; do
  o=$(awk -v c=$col '{print $c}' "$dir/open.txt" | median)
  u=$(awk -v c=$col '{print $c}' "$dir/users.txt" | median)
  echo "== $([ $col = 1 ] && echo SET || echo GET): medians $o/s without users, $u/s with: ratio $(awk -v a="$u" -v b="$o" 'BEGIN {printf "%.2f", a / b}')"
done
