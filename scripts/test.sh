#!/usr/bin/env bash
# Runs the project's tests: `cargo test --workspace --locked`, with a real
# nats-server found or installed by scripts/ensure-nats-server.sh and Chromium
# found or installed by scripts/ensure-chromium.sh.
# Extra arguments go to cargo test, e.g. `scripts/test.sh -- --nocapture`.
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# The ensure script prints the binary's path on its last stdout line.
NATS_SERVER_BIN="$(scripts/ensure-nats-server.sh | tail -n 1)"
export NATS_SERVER_BIN
echo "test.sh: using nats-server $NATS_SERVER_BIN" >&2

# The status page test renders the page in headless Chromium. Without Chromium it
# fails and prints how to install it, unless TITAN_SKIP_BROWSER_TESTS=1 is set.
if [[ "${TITAN_SKIP_BROWSER_TESTS:-}" != 1 ]]; then
    if CHROMIUM_BIN="$(scripts/ensure-chromium.sh | tail -n 1)"; then
        export CHROMIUM_BIN
        echo "test.sh: using Chromium $CHROMIUM_BIN" >&2
    else
        echo "test.sh: Chromium not available; the status page test will fail (set TITAN_SKIP_BROWSER_TESTS=1 to skip it)" >&2
    fi
fi

if ! command -v node >/dev/null; then
    echo "test.sh: node not found; tests that compare against Node.js will be skipped" >&2
fi

cargo test --workspace --locked "$@"
