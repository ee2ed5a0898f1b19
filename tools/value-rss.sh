#!/usr/bin/env bash
# The memory one large RESP value costs a node: starts apsisd, sends one SET of a value of
# MiB mebibytes (minus 100 bytes, under the default 32 MiB limit) and a GET of it over one
# socket, and prints the node's peak RSS (VmHWM) before and after.
#   tools/value-rss.sh [APSISD, default build/tools/apsisd] [MiB, default 32]
# Port 18485 on 127.0.0.1; data under a temporary directory removed at the end; the node is
# stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
apsisd="${1:-build/tools/apsisd}"
mib="${2:-32}"
pids=()
source tools/bench-lib.sh
bench_begin apsis-value-rss
"$apsisd" --set node.data_dir="$dir/data" --set network.resp_port=18485 --set network.binary_port=0 \
  --set network.http_port=0 --set log.level=warn > "$dir/apsisd.log" 2>&1 &
pid=$!
pids+=($pid)
for _ in $(seq 100); do grep -q "serving RESP" "$dir/apsisd.log" && break; sleep 0.1; done
echo "before: $(grep VmHWM "/proc/$pid/status")"
python3 - "$mib" <<'PY'
import socket, sys
v = b"x" * ((int(sys.argv[1]) << 20) - 100)
s = socket.create_connection(("127.0.0.1", 18485))
s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % len(v) + v + b"\r\n")
assert s.recv(100) == b"+OK\r\n"
s.sendall(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
n, want = 0, len(v) + len(b"$%d\r\n\r\n" % len(v))
while n < want:
    n += len(s.recv(1 << 20))
PY
echo "after a SET and a GET of $mib MiB: $(grep VmHWM "/proc/$pid/status")"
