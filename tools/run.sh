#!/usr/bin/env bash
# Installs what apsis needs, builds it, and starts a node (apsisd) in the foreground on the
# embedded default config (RESP on 127.0.0.1:6380, binary on 7380, data under ./data), and
# builds the apsis CLI beside it. Arguments go to
# apsisd, e.g. tools/run.sh --config node.toml  or  tools/run.sh --set network.resp_port=7000
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build --target apsisd apsis
exec build/tools/apsisd "$@"
