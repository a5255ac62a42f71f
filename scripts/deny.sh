#!/usr/bin/env bash
# Checks the dependency graph against deny.toml with cargo-deny: licenses, banned and
# duplicate versions, and sources, which need no network. Installs cargo-deny from
# crates.io when it is missing. The advisories check needs the RustSec database, which
# cargo-deny keeps under $CARGO_HOME/advisory-dbs and fetches from GitHub: it runs only
# when that database is already there, and is skipped with a message otherwise.
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# The version this policy was checked with. `--locked` builds it with its own Cargo.lock.
readonly CARGO_DENY_VERSION=0.20.2

log() {
    printf 'deny: %s\n' "$*" >&2
}

if ! cargo deny --version >/dev/null 2>&1; then
    log "cargo-deny not found; installing cargo-deny $CARGO_DENY_VERSION from crates.io"
    cargo install --locked cargo-deny --version "$CARGO_DENY_VERSION"
fi
log "$(cargo deny --version)"
# `--install-only` stops here, so CI can build cargo-deny while other steps run.
if [[ "${1:-}" == "--install-only" ]]; then
    exit 0
fi

# --frozen: read Cargo.lock as committed and touch no network.
cargo deny --frozen check licenses bans sources

advisory_dbs="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
if [[ -d "$advisory_dbs" ]] && [[ -n "$(ls -A "$advisory_dbs")" ]]; then
    log "checking advisories against the local database in $advisory_dbs (not updated)"
    cargo deny --frozen check advisories
else
    log "skipped the advisories check: no advisory database in $advisory_dbs" \
        "(fetch it with 'cargo deny fetch db' on a machine with network access)"
fi
