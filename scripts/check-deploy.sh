#!/usr/bin/env bash
# Checks the deployment files under deploy/ without a container engine.
# promtool checks and unit-tests the alerting rules and checks the Prometheus
# configuration. systemd-analyze verifies the unit. check-deploy.py parses
# every YAML and JSON file and cross-checks commands, probes and metric names.
# Installs Debian's prometheus package (for promtool) when it is missing and
# this runs as root; PyYAML comes from PyPI into .tools/venv when missing.
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

log() { echo "check-deploy: $*" >&2; }

if ! command -v promtool >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        log "promtool not found; installing Debian's prometheus package"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
        # The package starts a Prometheus server, and only promtool is needed here.
        systemctl stop prometheus 2>/dev/null || pkill -x prometheus 2>/dev/null || true
    else
        log "promtool not found: install Debian's prometheus package (apt-get install prometheus) or put promtool on PATH"
        exit 1
    fi
fi

python="python3"
if ! "$python" -c 'import yaml' 2>/dev/null; then
    venv="$repo_root/.tools/venv"
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    "$venv/bin/python" -c 'import yaml' 2>/dev/null || "$venv/bin/pip" install --quiet 'PyYAML>=6,<7'
    python="$venv/bin/python"
fi

rules=deploy/prometheus/titan-gate.rules.yml
promtool check rules "$rules"
(cd deploy/prometheus && promtool test rules titan-gate.rules.test.yml)

# prometheus.yml names the rules by their path inside the container.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cp "$rules" "$scratch/"
sed "s#/etc/prometheus/#$scratch/#" deploy/prometheus/prometheus.yml >"$scratch/prometheus.yml"
promtool check config "$scratch/prometheus.yml"

if command -v systemd-analyze >/dev/null; then
    # verify requires the ExecStart binary to exist, so `true` replaces it.
    sed "s#/usr/local/bin/titan-gate#$(command -v true)#" deploy/systemd/titan-gate.service \
        >"$scratch/titan-gate.service"
    systemd-analyze verify "$scratch/titan-gate.service"
    log "systemd-analyze verify: deploy/systemd/titan-gate.service is valid"
else
    log "systemd-analyze not found; skipped the systemd unit check"
fi

"$python" scripts/check-deploy.py
