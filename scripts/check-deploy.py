#!/usr/bin/env python3
"""Checks the deployment files that no engine runs on a build machine.

Every YAML and JSON file under deploy/ must parse. The gate's command must be
the same `run --config` in the Dockerfile, the compose file, the Kubernetes
sidecar and the systemd unit, because that is the command the integration
tests start. The Kubernetes probes must use the gate's /readyz and /healthz.
Every metric that the alerts and the dashboard query must be one the gate
exports (listed in crates/titan-gate/src/metrics.rs), so a renamed metric
cannot silently empty a panel or mute an alert. Every alert's runbook_url must
name a heading of a document in the repository.
"""

import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
GATE_COMMAND = ["run", "--config", "/etc/titan-gate/titan-gate.toml"]
# Series that Prometheus itself makes, not the gate.
PROMETHEUS_SERIES = {"up"}

failures = []


def fail(message):
    failures.append(message)


def load_yaml_documents(path):
    with path.open() as file:
        return [document for document in yaml.safe_load_all(file) if document is not None]


def exported_metrics():
    source = (ROOT / "crates/titan-gate/src/metrics.rs").read_text()
    names = set(re.findall(r'pub const \w+: &str = "(titan_gate_\w+)"', source))
    if not names:
        fail("found no metric names in crates/titan-gate/src/metrics.rs")
    return names


def queried_metrics(expression):
    names = set(re.findall(r"\b(titan_gate_\w+|up)\b", expression))
    # Histograms are queried through their series suffixes.
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in names}


def check_parses():
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        try:
            load_yaml_documents(path)
        except yaml.YAMLError as error:
            fail(f"{path.relative_to(ROOT)}: invalid YAML: {error}")
    for path in sorted(DEPLOY.rglob("*.json")):
        try:
            json.loads(path.read_text())
        except json.JSONDecodeError as error:
            fail(f"{path.relative_to(ROOT)}: invalid JSON: {error}")


def check_dockerfile():
    text = (DEPLOY / "Dockerfile").read_text()
    entrypoint = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.MULTILINE)
    command = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    if not entrypoint or json.loads(entrypoint.group(1)) != ["/usr/local/bin/titan-gate"]:
        fail("deploy/Dockerfile: ENTRYPOINT is not [\"/usr/local/bin/titan-gate\"]")
    if not command or json.loads(command.group(1)) != GATE_COMMAND:
        fail(f"deploy/Dockerfile: CMD is not {GATE_COMMAND}")
    if not re.search(r"^USER (?!0\b|root\b)\S+", text, re.MULTILINE):
        fail("deploy/Dockerfile: the runtime stage does not switch to a non-root USER")
    if "HEALTHCHECK" not in text or "/healthz" not in text:
        fail("deploy/Dockerfile: no HEALTHCHECK on /healthz")


def check_compose():
    (compose,) = load_yaml_documents(DEPLOY / "compose.yaml")
    services = compose.get("services", {})
    for name in ["nats", "titan-gate", "prometheus", "grafana"]:
        if name not in services:
            fail(f"deploy/compose.yaml: no service {name}")
    gate = services.get("titan-gate", {})
    if gate.get("command") != GATE_COMMAND:
        fail(f"deploy/compose.yaml: titan-gate command is not {GATE_COMMAND}")
    for service in services.values():
        volumes = service.get("volumes", [])
        for volume in volumes:
            source = volume.split(":")[0]
            if source.startswith("./") and not (DEPLOY / source).exists():
                fail(f"deploy/compose.yaml: mounted file {source} does not exist")


def check_kubernetes():
    documents = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        documents.extend(load_yaml_documents(path))
    deployments = [document for document in documents if document.get("kind") == "Deployment"]
    if len(deployments) != 1:
        fail("deploy/kubernetes: expected one Deployment")
        return
    pod = deployments[0]["spec"]["template"]["spec"]
    sidecars = [container for container in pod.get("initContainers", []) if container["name"] == "titan-gate"]
    if not sidecars:
        fail("deploy/kubernetes/deployment.yaml: no titan-gate sidecar")
        return
    sidecar = sidecars[0]
    if sidecar.get("restartPolicy") != "Always":
        fail("deploy/kubernetes/deployment.yaml: titan-gate is not a native sidecar (restartPolicy: Always)")
    if sidecar.get("args") != GATE_COMMAND:
        fail(f"deploy/kubernetes/deployment.yaml: titan-gate args are not {GATE_COMMAND}")
    probes = {
        "readinessProbe": "/readyz",
        "livenessProbe": "/healthz",
    }
    for probe, path in probes.items():
        if sidecar.get(probe, {}).get("httpGet", {}).get("path") != path:
            fail(f"deploy/kubernetes/deployment.yaml: {probe} does not get {path}")
    if not (DEPLOY / "kubernetes/titan-gate.toml").exists():
        fail("deploy/kubernetes/titan-gate.toml is missing")


def check_systemd():
    text = (DEPLOY / "systemd/titan-gate.service").read_text()
    exec_start = re.search(r"^ExecStart=(.*)$", text, re.MULTILINE)
    if not exec_start or exec_start.group(1).split() != ["/usr/local/bin/titan-gate", *GATE_COMMAND]:
        fail(f"deploy/systemd/titan-gate.service: ExecStart is not titan-gate {' '.join(GATE_COMMAND)}")
    for setting in ["NoNewPrivileges=yes", "ProtectSystem=strict", "Restart=on-failure"]:
        if setting not in text:
            fail(f"deploy/systemd/titan-gate.service: {setting} is missing")


def heading_anchors(path):
    """Returns the anchors that GitHub gives the Markdown headings of `path`."""
    anchors = set()
    for line in path.read_text().splitlines():
        heading = re.match(r"^#+ (.*)$", line)
        if heading:
            text = heading.group(1).strip().lower()
            text = re.sub(r"[^\w\- ]", "", text)
            anchors.add(text.replace(" ", "-"))
    return anchors


def check_runbook_url(alert, runbook_url):
    """Checks that `runbook_url` names a document in the repository and one of its headings."""
    document, _, anchor = runbook_url.partition("#")
    path = ROOT / document
    if not path.is_file():
        fail(f"alert {alert}: runbook_url {runbook_url} names a missing file")
    elif anchor and anchor not in heading_anchors(path):
        fail(f"alert {alert}: runbook_url {runbook_url} names no heading of {document}")


def check_metric_names(exported):
    rules = load_yaml_documents(DEPLOY / "prometheus/titan-gate.rules.yml")[0]
    for group in rules["groups"]:
        for rule in group["rules"]:
            for name in queried_metrics(rule["expr"]) - exported - PROMETHEUS_SERIES:
                fail(f"alert {rule['alert']} queries {name}, which the gate does not export")
            labels = rule.get("labels", {})
            if labels.get("severity") not in {"SEV-1", "SEV-2", "SEV-3"}:
                fail(f"alert {rule['alert']}: severity is not SEV-1, SEV-2 or SEV-3")
            runbook_url = rule.get("annotations", {}).get("runbook_url")
            if not runbook_url:
                fail(f"alert {rule['alert']}: no runbook_url annotation")
            else:
                check_runbook_url(rule["alert"], runbook_url)
    dashboard = json.loads((DEPLOY / "grafana/titan-gate.dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for name in queried_metrics(target["expr"]) - exported - PROMETHEUS_SERIES:
                fail(f"dashboard panel {panel['title']!r} queries {name}, which the gate does not export")


def main():
    check_parses()
    check_dockerfile()
    check_compose()
    check_kubernetes()
    check_systemd()
    check_metric_names(exported_metrics())
    for message in failures:
        print(f"check-deploy: {message}", file=sys.stderr)
    if failures:
        return 1
    print("check-deploy: deployment files are consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
