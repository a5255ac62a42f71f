#!/usr/bin/env bash
# Measures titan-gate beside a direct JetStream publish and a no-op forwarder.
# Finds or installs nats-server and builds titan-gate and titan-gate-load in
# release mode. Then runs titan-gate-load, which starts its own nats-server (free
# port, own storage) and gate on 127.0.0.1 and stops both when it ends.
# Arguments go to titan-gate-load; `scripts/bench-load.sh --help` lists them.
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# The ensure script prints the binary's path on its last stdout line.
NATS_SERVER_BIN="$(scripts/ensure-nats-server.sh | tail -n 1)"
export NATS_SERVER_BIN
echo "bench-load.sh: using nats-server $NATS_SERVER_BIN" >&2

echo "bench-load.sh: building titan-gate and titan-gate-load (release)" >&2
cargo build --quiet --locked --release -p titan-gate -p titan-gate-load

target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
exec "$target_dir/release/titan-gate-load" "$@"
