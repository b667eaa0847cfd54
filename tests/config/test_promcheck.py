"""`remediator check --prometheus-rules DIR`: the rules and the Prometheus alerts agree, and
each mismatch names the rule's file:line and the alert's."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from remediator.cli import main

CONFIG = """\
server:
  listen: 127.0.0.1:9095
  webhook_auth: {bearer_token_env: TOKEN}
store: sqlite:///state.db
rules: rules/
policies: policies/
ssh:
  username: ops
  known_hosts: known_hosts
inventory:
  hosts:
    web1: {address: 127.0.0.1}
slack: {channel: "#ops-alerts"}
"""

POLICY = """\
escalations:
  critical: [{notify: ['slack:#ops']}]
  warning: [{notify: ['slack:#ops']}]
"""

RULES = """\
rules:
  - name: restart-node
    match:
      - alertname = NodeDown
      - severity = critical
    target: "{{ labels.instance | host }}"
    steps:
      - action: restart_service
        params: {service: node}
    escalate: critical

  - name: block-sources
    match:
      - alertname =~ "FailedLoginsHigh|RateLimitViolationsHigh"
    target: "{{ labels.instance | host }}"
    require:
      source_ip: '^[0-9a-fA-F:.]+$'
    steps:
      - action: ssh
        params: {argv: [block, "{{ labels.source_ip }}"]}
    escalate: "{{ labels.severity }}"
    escalate_fallback: critical
"""

ALERTS = """\
groups:
  - name: fleet
    rules:
      - alert: NodeDown
        expr: up == 0
        for: 5m
        labels:
          severity: critical
      - record: instance:auth_failures:rate1m
        expr: sum by (instance, source_ip) (rate(auth_failures_total[1m]))
      - alert: FailedLoginsHigh
        expr: sum by (instance, source_ip) (rate(auth_failures_total[1m])) * 60 > 50
        labels:
          severity: warning
      - alert: RateLimitViolationsHigh
        expr: sum(rate(rate_limited_total[1m])) by (instance, source_ip) * 60 > 100
        labels:
          severity: warning
"""

R = "rules/r.yml"


def check(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    rules: str = RULES,
    alerts: str = ALERTS,
    extra: dict[str, str] | None = None,
) -> tuple[int, list[str], str]:
    """Write a config with one rules file and one Prometheus rules file; run the check."""
    for folder in ("rules", "policies", "prom"):
        (tmp_path / folder).mkdir()
    (tmp_path / "policies" / "p.yml").write_text(POLICY)
    (tmp_path / "rules" / "r.yml").write_text(textwrap.dedent(rules))
    (tmp_path / "prom" / "fleet.yml").write_text(textwrap.dedent(alerts))
    for name, text in (extra or {}).items():
        (tmp_path / "prom" / name).write_text(text)
    (tmp_path / "remediator.yml").write_text(CONFIG)
    argv = ["check", "-c", str(tmp_path / "remediator.yml")]
    code = main([*argv, "--prometheus-rules", str(tmp_path / "prom")])
    captured = capsys.readouterr()
    return code, captured.out.splitlines()[1:], captured.err  # [0]: check's own OK line


def test_a_consistent_pair_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Names produced, labels carried (by `by (...)`, both spellings, and a selector's
    instance), severities rendering to chains: exit 0, one OK line, no warning."""
    code, lines, _ = check(tmp_path, capsys)
    assert code == 0
    assert lines == [
        f"{tmp_path / 'prom'}: OK: 3 alerting rules; 2 rules name alerts they produce, with "
        "the labels they read and a chain for each severity"
    ]


def test_an_alertname_nothing_produces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`=` and each name of an `=~` of names: the matcher's line, where it looked, a hint."""
    alerts = ALERTS.replace("alert: NodeDown", "alert: NodeIsDown").replace(
        "alert: RateLimitViolationsHigh", "alert: RateLimited"
    )
    code, lines, err = check(tmp_path, capsys, alerts=alerts)
    assert code == 1
    prom = tmp_path / "prom"
    assert lines == [
        f"{R}:4: rules[0].match[0]: alert 'NodeDown' is produced by no alerting rule in "
        f"{prom}; did you mean `NodeIsDown`?",
        f"{R}:14: rules[1].match[0]: alert 'RateLimitViolationsHigh' is produced by no "
        f"alerting rule in {prom}",
    ]
    assert "2 problem(s) found" in err


def test_a_label_the_expression_drops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A label read by `require:` and by a param, not in `by (...)` nor `labels:`: both
    places, each with the alert's file:line and what it carries."""
    alerts = ALERTS.replace(
        "sum by (instance, source_ip) (rate(auth_failures_total[1m])) * 60",
        "sum by (instance) (rate(auth_failures_total[1m])) * 60",
    )
    code, lines, _ = check(tmp_path, capsys, alerts=alerts)
    assert code == 1
    alert = f"{tmp_path / 'prom' / 'fleet.yml'}:11"
    why = (
        f"reads label 'source_ip', which alert FailedLoginsHigh ({alert}) does not carry: it "
        "carries alertname, instance, severity (from `sum by (instance)` and its `labels:`); "
        "add source_ip to the expression's `by (...)` or to its `labels:`, or stop reading it"
    )
    assert lines == [
        f"{R}:17: rules[1].require.source_ip: {why}",
        f"{R}:20: rules[1].steps[0].params.argv[1]: {why}",
    ]


def test_static_labels_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A label the alert's `labels:` give is carried, whatever the expression keeps."""
    alerts = ALERTS.replace(
        "sum by (instance, source_ip) (rate(auth_failures_total[1m])) * 60 > 50\n        labels:\n",
        "sum by (instance) (rate(auth_failures_total[1m])) * 60 > 50\n"
        "        labels:\n          source_ip: 192.0.2.1\n",
    )
    code, _, _ = check(tmp_path, capsys, alerts=alerts)
    assert code == 0


def test_what_a_selector_may_carry_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plain selector keeps its metric's labels, which the file does not say: a label
    beyond instance and job is a warning line, and the check still passes."""
    alerts = ALERTS.replace(
        "sum(rate(rate_limited_total[1m])) by (instance, source_ip) * 60 > 100",
        "rate_limited_per_minute > 100",
    )
    code, lines, _ = check(tmp_path, capsys, alerts=alerts)
    assert code == 0
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert [w.split(": reads")[0] for w in warnings] == [
        f"warning: {R}:17: rules[1].require.source_ip",
        f"warning: {R}:20: rules[1].steps[0].params.argv[1]",
    ]
    assert f"alert RateLimitViolationsHigh ({tmp_path / 'prom' / 'fleet.yml'}:15)" in warnings[0]


def test_no_alert_of_the_name_matches_the_other_matchers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rule wants severity critical; the only NodeDown is a warning: it never matches."""
    alerts = ALERTS.replace("severity: critical", "severity: warning")
    code, lines, _ = check(tmp_path, capsys, alerts=alerts)
    assert code == 1
    assert lines == [
        f"{R}:4: rules[0].match[0]: no alert 'NodeDown' has labels this rule matches: "
        f"{tmp_path / 'prom' / 'fleet.yml'}:4 (NodeDown, severity='warning') fails "
        '`severity="critical"`'
    ]


def test_a_static_value_require_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`require:` a static label's value never passes: every incident would be refused."""
    rules = RULES.replace("'^[0-9a-fA-F:.]+$'", "'^[0-9a-fA-F:.]+$'\n      severity: '^critical$'")
    code, lines, _ = check(tmp_path, capsys, rules=rules)
    assert code == 1
    prom = tmp_path / "prom" / "fleet.yml"
    assert lines == [
        f"{R}:18: rules[1].require.severity: alert {name} ({prom}:{line}) has "
        "severity='warning', which never passes '^critical$': every one of its incidents "
        "would be refused"
        for name, line in (("FailedLoginsHigh", 11), ("RateLimitViolationsHigh", 15))
    ]


def test_a_severity_with_no_chain_of_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`escalate: "{{ labels.severity }}"` and an alert whose severity names no chain: the
    fallback would page, which is for labels nobody planned."""
    alerts = ALERTS.replace("severity: warning", "severity: high", 1)
    code, lines, _ = check(tmp_path, capsys, alerts=alerts)
    assert code == 1
    assert lines == [
        f"{R}:21: rules[1].escalate: escalate '{{{{ labels.severity }}}}' renders 'high' for "
        f"alert FailedLoginsHigh ({tmp_path / 'prom' / 'fleet.yml'}:11, severity='high'), "
        "which is no chain (chains: critical, warning); it would page escalate_fallback "
        "'critical': add a chain named 'high', or change the alert"
    ]


def test_an_alert_with_a_severity_that_reaches_no_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rule takes an alert with a severity but escalates nowhere."""
    code, lines, _ = check(tmp_path, capsys, rules=RULES.replace("    escalate: critical\n", ""))
    assert code == 1
    assert lines == [
        f"{R}:2: rules[0].name: takes alert NodeDown ({tmp_path / 'prom' / 'fleet.yml'}:4, "
        "severity='critical'), but no rule taking it (restart-node) escalates: add "
        "`escalate: CHAIN` (one of: critical, warning)"
    ]


def test_rules_matching_no_name_are_not_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rule matching `alertname =~ "Node.*"` cannot be tied to alerts: a warning, so."""
    rules = RULES.replace("alertname = NodeDown", 'alertname =~ "Node.*"')
    code, lines, _ = check(tmp_path, capsys, rules=rules)
    assert code == 0
    assert lines[0] == (
        f"warning: {R}:3: rules[0].match: matches no alertname by name (`alertname = X`, or "
        "`=~` of names only): not checked against the Prometheus alerts"
    )


def test_files_that_are_not_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A `promtool test rules` file beside the rules is skipped, as is a file not named
    .yml/.yaml; other YAML is a problem at its file."""
    extra = {
        "fleet.test.yml": "rule_files: [fleet.yml]\ntests: []\n",
        "notes.txt": "not: yaml: at all",
        "other.yaml": "alerts:\n  - name: x\n",
    }
    code, lines, _ = check(tmp_path, capsys, extra=extra)
    assert code == 1
    assert lines == [
        f"{tmp_path / 'prom' / 'other.yaml'}:1: not a Prometheus rules file: expected "
        "`groups:` (a list)"
    ]


def test_odd_files_are_reported_never_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Prometheus rules file whose YAML alias contains itself is a problem naming the
    file; an expression nested 400 deep is one this check cannot read (a warning): the
    command reports, it does not crash."""
    deep = "(" * 400 + "up" + ")" * 400
    extra = {
        "self.yml": "groups: &a [*a]\n",
        "deep.yml": f"groups:\n- name: g\n  rules:\n  - alert: Deep\n    expr: {deep}\n",
    }
    code, lines, _ = check(tmp_path, capsys, extra=extra)
    assert code == 1
    assert any("self.yml:1: invalid YAML: nested too deeply" in line for line in lines), lines
