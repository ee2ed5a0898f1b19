#!/usr/bin/env bash
# A large value through REST against its references, in one run: dd writing the same size to
# the same filesystem (with fdatasync), nginx serving the same file, and apsisd's streamed
# upload (curl -T) and download of it (to /dev/null, as nginx's; then once more, compared
# with the file), in MB/s; the node's anonymous RSS after each step.
#   tools/large-bench.sh [MiB, default 1024]
# Needs a build (tools/test.sh or tools/run.sh), curl and nginx (tools/setup.sh installs
# them). Ports 18482 (apsisd) and 18483 (nginx) on 127.0.0.1; everything under a temporary
# directory on the filesystem of /tmp, removed at the end; both servers stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
mib="${1:-1024}"
pids=()
source tools/bench-lib.sh
bench_begin apsis-large-bench
mkdir -p "$dir/www"
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
bytes=$((mib * 1024 * 1024))

echo "== dd: $mib MiB to $dir (fdatasync)"
dd if=/dev/urandom of="$dir/value" bs=1M count="$mib" status=none  # the value, random bytes
start=$(date +%s.%N)
dd if="$dir/value" of="$dir/www/value" bs=1M conv=fdatasync status=none
dd_s=$(echo "$(date +%s.%N) - $start" | bc)

bench_nginx 18483 "sendfile on;"
build/tools/apsisd --set node.data_dir="$dir/data" --set network.resp_port=0 --set network.binary_port=0 \
  --set network.http_port=18482 --set log.level=warn > "$dir/apsisd.log" 2>&1 &
apsisd=$!
pids+=($apsisd)
for _ in $(seq 100); do grep -q "serving RESP" "$dir/apsisd.log" && break; sleep 0.1; done
for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:18483/value && break; sleep 0.1; done
anon() { awk '/RssAnon/ {printf "%d MiB", $2 / 1024}' "/proc/$apsisd/status"; }

echo "== nginx: GET of the file"
nginx_s=$(curl -s -o /dev/null -w '%{time_total}' http://127.0.0.1:18483/value)
echo "== apsisd: PUT (curl -T, streamed into chunks), then GET"
echo "   node's anonymous RSS before: $(anon)"
put_s=$(curl -s -o "$dir/put.json" -w '%{time_total}' -T "$dir/value" http://127.0.0.1:18482/v1/ns/default/keys/value)
grep -q '"status":"ok"' "$dir/put.json" || { echo "large-bench: the upload failed: $(cat "$dir/put.json")" >&2; exit 1; }
echo "   after the upload: $(anon)"
get_s=$(curl -s -o /dev/null -w '%{time_total}' http://127.0.0.1:18482/v1/ns/default/keys/value)
echo "   after the download: $(anon)"
curl -s http://127.0.0.1:18482/v1/ns/default/keys/value | cmp -s - "$dir/value" ||
  { echo "large-bench: the download differs from the upload" >&2; exit 1; }

printf '%-28s %8s\n' "$mib MiB" "MB/s"
printf '%-28s %8s\n' "dd (write, fdatasync)" "$(mbps "$bytes" "$dd_s")"
printf '%-28s %8s\n' "apsisd REST upload" "$(mbps "$bytes" "$put_s")"
printf '%-28s %8s\n' "nginx GET (sendfile)" "$(mbps "$bytes" "$nginx_s")"
printf '%-28s %8s\n' "apsisd REST download" "$(mbps "$bytes" "$get_s")"
