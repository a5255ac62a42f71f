#!/usr/bin/env bash
# Runs the end-to-end demo on a fresh machine: finds or installs nats-server,
# builds titan-gate and titan-gate-demo, then runs the demo, which starts its
# own nats-server and gate on 127.0.0.1 and stops both when it ends.
# Exits non-zero if any step of the demo does not behave as expected.
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# The ensure script prints the binary's path on its last stdout line.
NATS_SERVER_BIN="$(scripts/ensure-nats-server.sh | tail -n 1)"
export NATS_SERVER_BIN
echo "demo.sh: using nats-server $NATS_SERVER_BIN" >&2

echo "demo.sh: building titan-gate and titan-gate-demo" >&2
cargo build --quiet --locked -p titan-gate -p titan-gate-demo

target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
exec "$target_dir/debug/titan-gate-demo" "$@"
