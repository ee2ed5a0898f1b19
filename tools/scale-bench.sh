#!/usr/bin/env bash
# A cluster of N real nodes on this machine, for each N given: three groups (node i in group
# (i-1)%3+1), replication policy quorum, the default fsync (interval:1000). Once every node
# writes to all three groups, one apsis-bench per node puts (16 connections x 1 in flight
# each, 100-byte values) at the same time; prints the cluster's puts/s (the sum), the worst
# node's p99, and the CPU the nodes spent per put (all apsisd processes together, and the
# busiest one).
#   tools/scale-bench.sh [N ...]   (default: 3 6 9; puts per N: $OPS, default 120000)
# Needs a build. Ports from 17500 up on 127.0.0.1; data under a temporary directory removed
# at the end; every node is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
apsisd=build/tools/apsisd
bench=build/tools/apsis-bench
counts=("$@")
[ ${#counts[@]} -eq 0 ] && counts=(3 6 9)
ops=${OPS:-120000}
hz=$(getconf CLK_TCK)
pids=()
source tools/bench-lib.sh
bench_begin apsis-scale-bench

# cpu_ticks PID: user + system ticks of a process so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

printf "%6s %12s %12s %18s %18s\n" nodes "puts/s" "worst p99" "CPU us/put (all)" "busiest node"
for n in "${counts[@]}"; do
  pids=()
  seeds='["127.0.0.1:17601"]'
  for i in $(seq "$n"); do
    "$apsisd" --set node.name="n$i" --set node.id="$i" --set node.data_dir="$dir/n$i" \
      --set network.resp_port=0 --set network.binary_port=$((17500 + i)) \
      --set network.http_port=0 --set backend.group=$(((i - 1) % 3 + 1)) \
      --set replication.policy=quorum --set log.level=warn --set cluster.port=$((17600 + i)) \
      --set cluster.cookie='"scale-bench-cookie"' --set "cluster.seeds=$seeds" \
      > "$dir/n$i.log" 2>&1 &
    pids+=($!)
  done
  for i in $(seq "$n"); do  # until every node writes to all three groups
    for try in $(seq 300); do
      build/tools/apsis --port $((17500 + i)) put scale-probe x 2>/dev/null |
        grep -q "group 3 .*: ok" && break
      [ "$try" = 300 ] && { echo "scale-bench: n$i did not join" >&2; cat "$dir/n$i.log" >&2; exit 1; }
      sleep 0.1
    done
  done
  before=()
  for p in "${pids[@]}"; do before+=("$(cpu_ticks "$p")"); done
  bench_pids=()
  for i in $(seq "$n"); do
    "$bench" net --port $((17500 + i)) -c 16 -P 1 -n $((ops / n)) --read-ratio 0 --zipf 0 \
      --seed "$i" > "$dir/bench$i.txt" &
    bench_pids+=($!)
  done
  for p in "${bench_pids[@]}"; do wait "$p"; done
  total=0 busiest=0
  for k in "${!pids[@]}"; do
    used=$(($(cpu_ticks "${pids[k]}") - before[k]))
    total=$((total + used))
    [ "$used" -gt "$busiest" ] && busiest=$used
  done
  awk -v n="$n" -v ops="$ops" -v total="$total" -v busiest="$busiest" -v hz="$hz" '
    /^put / { rate += $4; for (i = 1; i <= NF; i++) if ($i == "p99" && $(i+1) > p99) p99 = $(i+1) }
    END { printf "%6d %12.0f %9.1f us %18.1f %18.1f\n", n, rate, p99,
            total * 1e6 / hz / ops, busiest * 1e6 / hz / ops }' "$dir"/bench*.txt
  grep -h ERRORS "$dir"/bench*.txt && exit 1
  for p in "${pids[@]}"; do kill "$p"; done
  for p in "${pids[@]}"; do wait "$p" || true; done  # a killed process's status is not 0
  rm -rf "${dir:?}"/*
done
