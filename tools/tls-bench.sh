#!/usr/bin/env bash
# RESP over TLS side by side: redis-benchmark --tls SET/GET (-P 1 and -P 16) against apsisd
# with tls.resp and against redis-server --tls-port (AOF everysec, as apsisd's default fsync
# interval), on the same certificate, alternated `rounds` times; prints each run's rates and
# the ratio of the medians per test. --plain runs the same without TLS on either side, to
# tell what TLS costs from what the RESP path does.
#   tools/tls-bench.sh [--plain] [rounds, default 2] [requests, default 200000]
# Needs a build (tools/test.sh) and redis-server, redis-tools. Ports 18680 (apsisd) and 18681
# (redis) on 127.0.0.1; everything under a temporary directory removed at the end; each
# server is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
plain=0
[ "${1:-}" = "--plain" ] && { plain=1; shift; }
rounds="${1:-2}"
requests="${2:-200000}"
pids=()
source tools/bench-lib.sh
bench_begin apsis-tls-bench
build/tools/apsis certs init "$dir/certs" > /dev/null
tls=(--tls --cacert "$dir/certs/ca.crt")
apsis_tls=(--set tls.cert="\"$dir/certs/node.crt\"" --set tls.key="\"$dir/certs/node.key\"" --set tls.resp=true)
redis_port=(--port 0 --tls-port 18681)
if [ $plain = 1 ]; then
  tls=()
  apsis_tls=()
  redis_port=(--port 18681)
fi

start() {  # start NAME: one server on its port, on fresh data, its PID in $pid
  rm -rf "$dir/data-apsis" "$dir/redis"
  if [ "$1" = apsis ]; then
    build/tools/apsisd --set node.data_dir="$dir/data-apsis" --set network.resp_port=18680 \
      --set network.binary_port=0 --set network.http_port=0 --set log.level=warn \
      "${apsis_tls[@]}" > "$dir/apsis.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q "serving RESP" "$dir/apsis.log" && break; sleep 0.1; done
  else
    mkdir -p "$dir/redis"
    redis-server "${redis_port[@]}" --tls-cert-file "$dir/certs/node.crt" \
      --tls-key-file "$dir/certs/node.key" --tls-ca-cert-file "$dir/certs/ca.crt" \
      --tls-auth-clients no --dir "$dir/redis" --appendonly yes --appendfsync everysec \
      --save '' > "$dir/redis.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do redis-cli -p 18681 "${tls[@]}" PING 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  fi
  pids+=($pid)
}

bench() {  # bench PORT PIPELINE: "SET GET" rates
  redis-benchmark -p "$1" "${tls[@]}" -t set,get -d 100 -c 50 -r 100000 -n "$requests" -P "$2" \
    --csv 2>/dev/null | awk -F'"' '/^"SET"/ {s=$4} /^"GET"/ {g=$4} END {print s, g}'
}

for r in $(seq "$rounds"); do
  for server in apsis redis; do
    start "$server"
    port=$([ "$server" = apsis ] && echo 18680 || echo 18681)
    for p in 1 16; do
      read -r s g <<< "$(bench "$port" "$p")"
      printf 'round %s: %-5s -P %-2s  SET %s/s  GET %s/s\n' "$r" "$server" "$p" "$s" "$g"
      echo "$s" >> "$dir/$server-set-$p.txt"
      echo "$g" >> "$dir/$server-get-$p.txt"
    done
    kill "$pid"
    wait "$pid" || true  # its exit status is the signal's
  done
done
median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
for p in 1 16; do
  for t in set get; do
    a=$(median < "$dir/apsis-$t-$p.txt")
    b=$(median < "$dir/redis-$t-$p.txt")
    echo "== $([ $plain = 1 ] && echo plain || echo TLS) $t -P $p: apsisd $a/s, redis $b/s: ratio $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", a / b}')"
  done
done
