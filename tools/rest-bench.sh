#!/usr/bin/env bash
# The REST GET path against the HTTP ceiling of this machine: wrk fetches one 100-byte value
# from apsisd's REST port, then the same 100 bytes as a static file from nginx, with the same
# load, and prints both rates and their ratio. With --tls both serve HTTPS on one certificate
# (apsis certs init): apsisd with tls.http, nginx with ssl.
#   tools/rest-bench.sh [--tls] [seconds, default 10] [connections, default 64]
# Needs a build (tools/test.sh or tools/run.sh) and wrk and nginx (tools/setup.sh installs
# them). Ports 18480 (apsisd) and 18481 (nginx) on 127.0.0.1; everything under a temporary
# directory that is removed at the end; both servers are stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
tls=0
[ "${1:-}" = "--tls" ] && { tls=1; shift; }
seconds="${1:-10}"
conns="${2:-64}"
pids=()
source tools/bench-lib.sh
bench_begin apsis-rest-bench

value=$(printf 'v%.0s' $(seq 100))  # 100 bytes
scheme=http
apsis_tls=()
nginx_tls=""
curl=(curl)
if [ $tls = 1 ]; then
  build/tools/apsis certs init "$dir/certs" > /dev/null
  scheme=https
  apsis_tls=(--set tls.cert="\"$dir/certs/node.crt\"" --set tls.key="\"$dir/certs/node.key\"" --set tls.http=true)
  nginx_tls="ssl; ssl_certificate $dir/certs/node.crt; ssl_certificate_key $dir/certs/node.key"
  curl=(curl --cacert "$dir/certs/ca.crt")
fi

build/tools/apsisd --set node.data_dir="$dir/data" --set network.resp_port=0 --set network.binary_port=0 \
  --set network.http_port=18480 --set log.level=warn "${apsis_tls[@]}" > "$dir/apsisd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "serving RESP" "$dir/apsisd.log" && break; sleep 0.1; done
"${curl[@]}" -sf -X PUT --data-binary "$value" $scheme://127.0.0.1:18480/v1/ns/default/keys/bench > /dev/null

mkdir -p "$dir/www"
printf '%s' "$value" > "$dir/www/bench"
bench_nginx 18481 "keepalive_requests 100000000;" "$nginx_tls"
for _ in $(seq 50); do "${curl[@]}" -sf $scheme://127.0.0.1:18481/bench > /dev/null && break; sleep 0.1; done
[ "$("${curl[@]}" -s $scheme://127.0.0.1:18481/bench)" = "$value" ] || { echo "rest-bench: nginx does not serve the file" >&2; exit 1; }
[ "$("${curl[@]}" -s $scheme://127.0.0.1:18480/v1/ns/default/keys/bench)" = "$value" ] || { echo "rest-bench: apsisd does not serve the value" >&2; exit 1; }

run() {  # run NAME URL PID: wrk's summary, then the server's CPU a request (PID and children)
  echo "== $1: wrk -t2 -c$conns -d${seconds}s --latency $2"
  local before
  before=$(cpu_us "$3")
  wrk -t2 -c"$conns" -d"${seconds}s" --latency "$2" | tee "$dir/$1.txt"
  if grep -q "Non-2xx" "$dir/$1.txt"; then echo "rest-bench: $1 answered errors" >&2; exit 1; fi
  local used requests
  used=$(($(cpu_us "$3") - before))
  requests=$(awk '/requests in/ {print $1}' "$dir/$1.txt")
  echo "$1 CPU a request: $(awk -v u="$used" -v r="$requests" 'BEGIN {printf "%.2f", u / r}') us"
}
run apsis $scheme://127.0.0.1:18480/v1/ns/default/keys/bench "${pids[0]}"
run nginx $scheme://127.0.0.1:18481/bench "${pids[1]}"
a=$(awk '/Requests\/sec/ {print $2}' "$dir/apsis.txt")
n=$(awk '/Requests\/sec/ {print $2}' "$dir/nginx.txt")
echo "== REST GET ($scheme) $a req/s, nginx static $n req/s: ratio $(awk -v a="$a" -v n="$n" 'BEGIN {printf "%.2f", a / n}')"
