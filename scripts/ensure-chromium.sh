#!/usr/bin/env bash
# Finds or installs Chromium for the browser tests and prints its path on the
# last line of stdout. All other messages go to stderr.
#
# Order of lookup:
#   1. $CHROMIUM_BIN, if set (it must be an executable file);
#   2. /usr/bin/chromium;
#   3. otherwise installs Debian's `chromium` package with apt-get, as root.
set -euo pipefail

readonly DEFAULT_BIN=/usr/bin/chromium

log() {
    printf 'ensure-chromium: %s\n' "$*" >&2
}

if [[ -n "${CHROMIUM_BIN:-}" ]]; then
    if [[ ! -x "$CHROMIUM_BIN" ]]; then
        log "CHROMIUM_BIN=$CHROMIUM_BIN is not an executable file; unset it or point it at a Chromium binary"
        exit 1
    fi
    log "using CHROMIUM_BIN=$CHROMIUM_BIN"
    printf '%s\n' "$CHROMIUM_BIN"
    exit 0
fi

if [[ -x "$DEFAULT_BIN" ]]; then
    log "using $DEFAULT_BIN"
    printf '%s\n' "$DEFAULT_BIN"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null; then
    log "$DEFAULT_BIN not found and cannot install it here (needs root and apt-get);" \
        "install Debian's chromium package, set CHROMIUM_BIN, or set TITAN_SKIP_BROWSER_TESTS=1"
    exit 1
fi

log "installing Debian's chromium package with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends chromium >&2

if [[ ! -x "$DEFAULT_BIN" ]]; then
    log "apt-get installed chromium, but $DEFAULT_BIN is missing"
    exit 1
fi
log "installed $DEFAULT_BIN ($("$DEFAULT_BIN" --version 2>/dev/null || true))"
printf '%s\n' "$DEFAULT_BIN"
