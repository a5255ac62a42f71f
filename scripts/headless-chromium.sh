#!/usr/bin/env bash
# Runs headless Chromium once against a page on 127.0.0.1, with a fresh profile
# that is removed afterwards, and flags that keep it off every other host.
#
# Usage: scripts/headless-chromium.sh URL [CHROMIUM_FLAG...]
#   scripts/headless-chromium.sh http://127.0.0.1:9464/ --dump-dom
#   scripts/headless-chromium.sh http://127.0.0.1:9464/ --screenshot=page.png --window-size=1200,800
#
# The browser is $CHROMIUM_BIN, else /usr/bin/chromium (Debian's `chromium`
# package; scripts/ensure-chromium.sh installs it). It runs with --no-sandbox
# because CI runs it as root. It is killed after $CHROMIUM_TIMEOUT_SECONDS
# (default 60) seconds.
set -euo pipefail

log() {
    printf 'headless-chromium: %s\n' "$*" >&2
}

if [[ $# -lt 1 ]]; then
    log "missing URL; usage: $0 URL [CHROMIUM_FLAG...]"
    exit 64
fi
url="$1"
shift
if [[ "$url" != http://127.0.0.1:* ]]; then
    log "invalid URL $url: only http://127.0.0.1:PORT/... pages may be loaded"
    exit 64
fi

chromium_bin="${CHROMIUM_BIN:-/usr/bin/chromium}"
if [[ ! -x "$chromium_bin" ]]; then
    log "$chromium_bin not found; run scripts/ensure-chromium.sh (as root) or set CHROMIUM_BIN"
    exit 1
fi

profile_dir="$(mktemp -d "${TMPDIR:-/tmp}/titan-gate-chromium.XXXXXX")"
trap 'rm -rf -- "$profile_dir"' EXIT

# Every host name but 127.0.0.1 fails to resolve, and the flags turn off
# background networking, updates, sync, extensions and first-run pages.
timeout --kill-after=5 "${CHROMIUM_TIMEOUT_SECONDS:-60}" "$chromium_bin" \
    --headless \
    --no-sandbox \
    --disable-gpu \
    --disable-quic \
    --no-first-run \
    --disable-background-networking \
    --disable-component-update \
    --disable-sync \
    --disable-extensions \
    --disable-dev-shm-usage \
    --host-resolver-rules='MAP * ~NOTFOUND, EXCLUDE 127.0.0.1' \
    --user-data-dir="$profile_dir" \
    "$@" \
    "$url"
