"""The shipped remediation rules and the shipped Prometheus alerts agree.

`remediator check --prometheus-rules` over each shipped configuration and its runbook's
alerting rules: every alert a rule waits for is produced, with the labels the rule reads,
and each severity reaches a chain. A mismatch names both files and lines.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy" / "prometheus" / "runbook-alerts"
# (configuration, its runbook's alerting rules, alerts sent from outside Prometheus)
SHIPPED = [
    # TestAlert is the KALDRIX handoff's hand-made test alert (`amtool alert add`).
    ("remediator.yml", "kaldrix-handoff.yml", ["TestAlert"]),
    ("examples/dinari/remediator.yml", "dinari-playbook.yml", []),
]


def check(config: str, alerts: str, external: list[str]) -> subprocess.CompletedProcess[str]:
    flags = [f"--external-alert={name}" for name in external]
    argv = ["check", "-c", config, "--prometheus-rules", str(ALERTS / alerts), *flags]
    return subprocess.run(
        [sys.executable, "-m", "remediator", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("config", "alerts", "external"), SHIPPED)
def test_each_shipped_configuration_agrees_with_its_runbooks_alerts(
    config: str, alerts: str, external: list[str]
) -> None:
    """Every alert its rules match is produced, carries what they read, and pages a chain."""
    result = check(config, alerts, external)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK:" in result.stdout


def test_an_alert_from_outside_prometheus_must_be_declared() -> None:
    """Without `--external-alert TestAlert` the hand-made test alert is a problem naming the
    rules file and line; declared, it is a warning and the check passes."""
    result = check("remediator.yml", "kaldrix-handoff.yml", [])
    assert result.returncode == 1
    assert "rules/70-alerting.yml:" in result.stdout
    assert "'TestAlert' is produced by no alerting rule" in result.stdout
