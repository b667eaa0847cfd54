"""`max_targets` in a rule: `remediator test` shows the refusal and the page, `check`
locates a malformed value; a target rendering empty is refused in a rule test too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.daemon import write_config

from remediator.cli import main

RULES = """\
rules:
  - name: restart-web
    match: [alertname = Down]
    target: "{{ labels.instance | host }}"
    steps:
      - action: restart_service
        params: {service: nginx}
        verify: 5m
    escalate: critical
    max_targets: MAX_TARGETS
"""
HOSTS = {n: {"address": f"10.0.0.{i}"} for i, n in enumerate(["web1", "web2", "web3"], 1)}
REFUSED = (
    "'max_targets: restart-web acted on 2 targets in the last 1h (limit 2: web1, web2); "
    "not widened to web3, humans decide; next target allowed in 58m'"
)
CASES = f"""\
tests:
  - name: a third host within the hour is not restarted, it pages
    alerts:
      - {{at: 0s, labels: {{alertname: Down, instance: "web1:9100"}}}}
      - {{at: 1m, labels: {{alertname: Down, instance: "web2:9100"}}}}
      - {{at: 2m, labels: {{alertname: Down, instance: "web3:9100"}}}}
    until: 3m
    expect:
      - {{at: 0s, incident: 1, matched: restart-web, target: web1}}
      - {{at: 0s, incident: 1, run: restart_service, step: 1, host: web1}}
      - {{at: 1m, incident: 2, matched: restart-web, target: web2}}
      - {{at: 1m, incident: 2, run: restart_service, step: 1, host: web2}}
      - {{at: 2m, incident: 3, matched: restart-web, target: web3}}
      - {{at: 2m, incident: 3, refused: max_targets, step: 1, reason: {REFUSED}}}
      - {{at: 2m, incident: 3, exhausted: {REFUSED}}}
      - {{at: 2m, incident: 3, escalate: critical}}
      - {{at: 2m, incident: 3, page: ['slack:#ops'], chain: critical, step: 1}}
  - name: an empty instance label renders no target, refused and paged, no host touched
    alerts:
      - {{at: 0s, labels: {{alertname: Down, instance: ""}}}}
    until: 1m
    expect:
      - {{at: 0s, incident: 1, matched: restart-web}}
      - {{at: 0s, incident: 1, refused: target}}
      - {{at: 0s, incident: 1, exhausted: 'target rendered empty (a label it names is empty?): refused, no host acted on'}}
      - {{at: 0s, incident: 1, escalate: critical}}
      - {{at: 0s, incident: 1, page: ['slack:#ops'], chain: critical, step: 1}}
"""


def config(tmp_path: Path, max_targets: str) -> Path:
    rules = RULES.replace("MAX_TARGETS", max_targets)
    return write_config(tmp_path / "cfg", rules, hosts=HOSTS, extra="ssh: {username: ops}\n")


def test_rule_test_shows_the_blast_radius_refusal(tmp_path: Path) -> None:
    """max_targets 2 per 1h: web1 and web2 restart, web3 is refused by max_targets and its
    chain pages; an empty target is refused with the target reason."""
    cfg = config(tmp_path, "2 per 1h")
    cases = tmp_path / "radius.test.yml"
    cases.write_text(CASES)
    args = [sys.executable, "-m", "remediator", "test", "-c", str(cfg), str(cases)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed, 0 failed" in out.stderr


@pytest.mark.parametrize("value", ["lots", "0 per 1h", "2 per soon", "2"])
def test_a_malformed_max_targets_is_located(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """Not `N per WINDOW` (N at least 1): check names the file, line and key."""
    code = main(["check", "-c", str(config(tmp_path, value))])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert len(lines) == 1
    assert lines[0].startswith("rules/rules.yml:10: rules[0].max_targets")
