#!/usr/bin/env bash
# Writes docs/status-page.png (or the path given as the only argument): a
# screenshot of the status page of a gate halted with a global HARD_HALT and a
# scoped SOFT_HALT, taken by headless Chromium at 1200x800. Starts its own
# nats-server and gate on 127.0.0.1 through titan-gate-demo and stops both.
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
output="${1:-docs/status-page.png}"

# Both ensure scripts print the binary's path on their last stdout line.
NATS_SERVER_BIN="$(scripts/ensure-nats-server.sh | tail -n 1)"
CHROMIUM_BIN="$(scripts/ensure-chromium.sh | tail -n 1)"
export NATS_SERVER_BIN CHROMIUM_BIN

echo "screenshot-status-page: building titan-gate and titan-gate-demo" >&2
cargo build --quiet --locked -p titan-gate -p titan-gate-demo

target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
"$target_dir/debug/titan-gate-demo" status-page-screenshot "$output"
