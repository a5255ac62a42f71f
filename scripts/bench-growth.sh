#!/usr/bin/env bash
# Runs the growth and memory sweeps of titan-gate-load (about 5 minutes), then
# prints their Markdown tables and draws docs/bench-growth.png. Finds or installs
# nats-server, builds the release binaries, and installs matplotlib from PyPI into
# .tools/venv when it is missing. `scripts/bench-growth.sh plot` only redraws the
# plot and tables from docs/bench-growth.json.
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

venv="$repo_root/.tools/venv"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import matplotlib' 2>/dev/null || "$venv/bin/pip" install --quiet 'matplotlib>=3.8,<4'
python="$venv/bin/python"

if [[ "${1:-}" != plot ]]; then
    # The ensure script prints the binary's path on its last stdout line.
    NATS_SERVER_BIN="$(scripts/ensure-nats-server.sh | tail -n 1)"
    export NATS_SERVER_BIN
    echo "bench-growth.sh: building titan-gate and titan-gate-load (release)" >&2
    cargo build --quiet --locked --release -p titan-gate -p titan-gate-load
    target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
    "$python" scripts/bench-growth.py run --binary "$target_dir/release/titan-gate-load" "$@"
fi
"$python" scripts/bench-growth.py plot
