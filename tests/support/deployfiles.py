"""The files under deploy/ as tests read them, and the tools that check them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from remediator.config import load_config
from remediator.config.models import Config
from remediator.config.server import ServerConfig
from remediator.daemon import parse_listen

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "remediator-alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "remediator-alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "remediator-dashboard.json"
ALERTMANAGER_YML = DEPLOY / "alertmanager" / "alertmanager.yml"
ALERTMANAGER_HA_YML = DEPLOY / "alertmanager" / "alertmanager-ha.yml"
ALERTMANAGER_RUNBOOKS_YML = DEPLOY / "alertmanager" / "runbooks.yml"
K8S = DEPLOY / "kubernetes" / "base"
K8S_HA = DEPLOY / "kubernetes" / "ha"
UNIT = DEPLOY / "systemd" / "remediator.service"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
# The port remediator listens on unless its config says otherwise.
DEFAULT_PORT = parse_listen(ServerConfig.model_fields["listen"].default)[1]
# What every packaging runs: `remediator` with these arguments.
SERVE_ARGS = ["serve", "-c", "/etc/remediator/remediator.yml"]


def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    """Run a tool; never raises on its exit status."""
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=60, check=False
    )


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of remediator-alerts.yml."""
    return [r for g in load_yaml(ALERTS)["groups"] for r in g["rules"] if "alert" in r]


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Top-level panels and those nested in collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    """(where, expr) for every target of every panel."""
    for panel in all_panels(json.loads(DASHBOARD.read_text())):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} target {target['refId']}", target["expr"]


def check_config(text: str, files: dict[str, str], workdir: Path) -> Config:
    """Load a config written for /etc/remediator as if that folder were `workdir`.

    `files` are the other files of /etc/remediator (rules, policies) by relative path.
    Raises ConfigError listing each problem, as `remediator check` prints them.
    """
    for rel, content in files.items():
        (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
        (workdir / rel).write_text(content)
    path = workdir / "remediator.yml"
    path.write_text(text.replace("/etc/remediator/", f"{workdir}/"))
    return load_config(path)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments): comment lines dropped, then continuation lines joined."""
    lines = [
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    out = []
    for line in "\n".join(lines).replace("\\\n", " ").splitlines():
        if line.strip():
            word, _, args = line.strip().partition(" ")
            out.append((word.upper(), args.strip()))
    return out


def dockerfile_user() -> str:
    """The user the image runs as (the last USER, without its group)."""
    users = [args for word, args in dockerfile_instructions() if word == "USER"]
    return users[-1].split(":")[0]
