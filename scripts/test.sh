#!/usr/bin/env bash
# Runs the project's tests: `cargo test --workspace --locked`, with a real
# nats-server found or installed by scripts/ensure-nats-server.sh.
# Extra arguments go to cargo test, e.g. `scripts/test.sh -- --nocapture`.
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# The ensure script prints the binary's path on its last stdout line.
NATS_SERVER_BIN="$(scripts/ensure-nats-server.sh | tail -n 1)"
export NATS_SERVER_BIN
echo "test.sh: using nats-server $NATS_SERVER_BIN" >&2

if ! command -v node >/dev/null; then
    echo "test.sh: node not found; tests that compare against Node.js will be skipped" >&2
fi

cargo test --workspace --locked "$@"
