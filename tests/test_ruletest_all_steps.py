"""`remediator test` on an `all:` step: one approval for every part, each part's command."""

from __future__ import annotations

from pathlib import Path

from support.daemon import write_config
from test_ruletest import HOSTS, POLICIES, run

RULES = """\
rules:
  - name: contain-breach
    match: [alertname = SecurityBreach]
    target: "{{ labels.instance | host }}"
    steps:
      - approval: security
        verify: 10m
        all:
          - action: http
            params: {method: POST, url: "http://{{ target.address }}:8080/admin/circuit-breaker/open"}
          - action: script
            params: {argv: [/usr/local/bin/capture-forensics, "{{ target.name }}"]}
    escalate: critical
"""
SECURITY = "  security:\n    approvers: [U05TD4V1S]\n    timeout: 5m\n"
FIRING = "{at: 0s, labels: {alertname: SecurityBreach, instance: 'api1:9100'}}"
TESTS = f"""\
tests:
  - name: approved once, both parts run together, then the verify window
    alerts:
      - {FIRING}
    humans:
      - {{at: 1m, approve: U05TD4V1S}}
    until: 12m
    expect:
      - {{at: 0s, incident: 1, matched: contain-breach, target: api1}}
      - {{at: 0s, incident: 1, approval: all, step: 1, policy: security}}
      - {{at: 1m, incident: 1, approved: [U05TD4V1S]}}
      - at: 1m
        incident: 1
        run: all
        step: 1
        parts:
          - {{run: http, host: api1, request: {{method: POST, url: 'http://10.0.3.11:8080/admin/circuit-breaker/open'}}}}
          - {{run: script, host: api1, argv: [/usr/local/bin/capture-forensics, api1]}}
      - {{at: 11m, incident: 1, exhausted: alert still firing after the last step}}
      - {{at: 11m, incident: 1, escalate: critical}}
      - {{at: 11m, incident: 1, page: ['slack:#ops'], chain: critical, step: 1}}
  - name: nobody of security approves, no part runs and the chain pages
    alerts:
      - {FIRING}
    until: 6m
    expect:
      - {{at: 0s, matched: contain-breach}}
      - {{at: 0s, approval: all, policy: security}}
      - {{at: 5m, approval_expired: true}}
      - {{at: 5m, exhausted: 'approval of step 1 (all) expired after 5m'}}
      - {{at: 5m, escalate: critical}}
      - {{at: 5m, page: ['slack:#ops'], chain: critical, step: 1}}
"""


def test_an_all_step_shows_one_approval_and_every_parts_command(tmp_path: Path) -> None:
    """An all: step behind `approval: security` asks once (`approval: all`), and once
    approved shows what each part runs (`parts:`, in order); unapproved, nothing runs."""
    config = write_config(tmp_path / "cfg", RULES, hosts=HOSTS, policies=POLICIES + SECURITY)
    test_file = tmp_path / "breach.test.yml"
    test_file.write_text(TESTS)
    out = run(config, test_file, show=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed, 0 failed" in out.stderr
