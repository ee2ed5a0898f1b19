#!/usr/bin/env bash
# Replication cost: apsis-bench against one node alone, then against a cluster of three
# nodes (three groups, one node each) with policy `all` and `quorum`, all on 127.0.0.1.
# Each configuration runs the writes, then reads of what they wrote; in the cluster with
# policy `all`, under each read policy (one: the first group; quorum and all: every group
# asked, the newest answer), with `quorum` under the node's default read policy.
#   tools/cluster-bench.sh [apsis-bench net options...]   (default: -c 64 -P 1 -n 200000 --read-ratio 0)
# Needs a build (tools/test.sh or tools/run.sh). Ports from 17400 up; data under a temporary
# directory that is removed at the end. Every node it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
apsisd=${APSISD:-build/tools/apsisd}  # another build to compare: APSISD=path
bench=build/tools/apsis-bench
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(-c 64 -P 1 -n 200000 --read-ratio 0)
reads=()  # the same load as reads: args without their --read-ratio
for ((i = 0; i < ${#args[@]}; i++)); do
  if [ "${args[i]}" = --read-ratio ]; then i=$((i + 1)); else reads+=("${args[i]}"); fi
done
reads+=(--read-ratio 1)
pids=()
source tools/bench-lib.sh
bench_begin apsis-cluster-bench

# node NAME ID GROUP POLICY [extra --set ...]: starts one node, waits for its line.
node() {
  local name=$1 id=$2 group=$3 policy=$4; shift 4
  "$apsisd" --set node.name="$name" --set node.id="$id" --set node.data_dir="$dir/$name" \
    --set network.resp_port=0 --set network.binary_port=$((17400 + id)) --set network.http_port=0 \
    --set backend.group="$group" --set replication.policy="$policy" --set log.level=warn "$@" \
    > "$dir/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q "serving RESP" "$dir/$name.log" && return; sleep 0.1; done
  echo "cluster-bench: $name did not start" >&2; cat "$dir/$name.log" >&2; exit 1
}

stop_all() {
  for p in "${pids[@]}"; do kill "$p"; done
  for p in "${pids[@]}"; do wait "$p" || true; done
  pids=()
  rm -rf "${dir:?}"/*
}

echo "== one node alone (policy all, fsync interval:1000)"
node solo 1 1 all
"$bench" net --port 17401 "${args[@]}"
"$bench" net --port 17401 "${reads[@]}"
stop_all

for policy in all quorum; do
  echo "== three nodes, three groups, policy $policy"
  cluster=(--set cluster.cookie='"cluster-bench-cookie"' --set 'cluster.seeds=["127.0.0.1:17411"]')
  for i in 1 2 3; do node "n$i" "$i" "$i" "$policy" --set cluster.port=$((17410 + i)) "${cluster[@]}"; done
  for _ in $(seq 100); do  # until every node has joined: a write reaches three replicas
    build/tools/apsis --port 17401 put cluster-bench-probe x 2>/dev/null | grep -q "group 3 n3/1: ok" && break
    sleep 0.1
  done
  "$bench" net --port 17401 "${args[@]}"
  if [ "$policy" = all ]; then
    for read in one quorum all; do "$bench" net --port 17401 "${reads[@]}" --read "$read"; done
  else
    "$bench" net --port 17401 "${reads[@]}"
  fi
  stop_all
done
