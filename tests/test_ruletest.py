"""`remediator test`: rule test files through the real engine, a diff and exit 1 on failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.daemon import write_config

RULES = """\
rules:
  - name: open-breaker
    match: [alertname = HighErrorRate]
    target: "{{ labels.instance | host }}"
    require: {instance: '^[a-z0-9.-]+(:[0-9]+)?$'}
    steps:
      - action: http
        params: {method: POST, url: "http://{{ target.address }}:8080/admin/circuit-breaker/open"}
        verify: 5m
        approval: required
    escalate: critical
"""
POLICIES = """\
approvals:
  default:
    approvers: [U024BE7LH]
    channel: '#ops-approvals'
    timeout: 15m
"""
HOSTS = {"api1": {"address": "10.0.3.11"}}
FIRING = "{at: 0s, labels: {alertname: HighErrorRate, instance: 'api1:9100'}}"
RESOLVED = "{at: 3m, status: resolved, labels: {alertname: HighErrorRate, instance: 'api1:9100'}}"
APPROVED_AND_REMEDIATED = f"""\
tests:
  - name: approved, the breaker opens; resolved, remediated
    alerts:
      - {FIRING}
      - {RESOLVED}
    humans:
      - {{at: 1m, approve: U024BE7LH}}
    expect:
      - {{at: 0s, incident: 1, matched: open-breaker, target: api1}}
      - {{at: 0s, incident: 1, approval: http, step: 1}}
      - {{at: 1m, approved: [U024BE7LH]}}
      - {{at: 1m, run: http, request: {{method: POST, url: 'http://10.0.3.11:8080/admin/circuit-breaker/open'}}}}
      - {{at: 3m, closed: remediated}}
  - name: nobody approves in 15 minutes, the chain pages
    alerts:
      - {FIRING}
    until: 20m
    expect:
      - {{at: 0s, matched: open-breaker}}
      - {{at: 0s, approval: http}}
      - {{at: 15m, approval_expired: true}}
      - {{at: 15m, exhausted: 'approval of step 1 (http) expired after 15m'}}
      - {{at: 15m, escalate: critical}}
      - {{at: 15m, page: ['slack:#ops'], chain: critical, step: 1}}
  - name: a hostile instance label never reaches the URL
    alerts:
      - {{at: 0s, labels: {{alertname: HighErrorRate, instance: 'api1;reboot'}}}}
    until: 1m
    expect:
      - {{at: 0s, matched: open-breaker}}
      - {{at: 0s, refused: require}}
      - {{at: 0s, exhausted: "require: label instance='api1;reboot' does not match '^[a-z0-9.-]+(:[0-9]+)?$'"}}
      - {{at: 0s, escalate: critical}}
      - {{at: 0s, page: ['slack:#ops']}}
"""


def run(config: Path, *files: Path, show: bool = False) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "remediator", "test", "-c", str(config), *map(str, files)]
    return subprocess.run(
        [*args, *(["--show"] if show else [])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def setup(tmp_path: Path, tests: str) -> tuple[Path, Path]:
    config = write_config(tmp_path / "cfg", RULES, hosts=HOSTS, policies=POLICIES)
    test_file = tmp_path / "breaker.test.yml"
    test_file.write_text(tests)
    return config, test_file


def test_passing_file_exits_0(tmp_path: Path) -> None:
    """Approval by a human, the rendered request, the verify window, a timeout, `require`."""
    config, test_file = setup(tmp_path, APPROVED_AND_REMEDIATED)
    out = run(config, test_file)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("ok   ") == 3
    assert "3 passed, 0 failed" in out.stderr


def test_wrong_expectation_exits_1_with_a_readable_diff(tmp_path: Path) -> None:
    """A wrong host in one expectation: exit 1, the case's file:line, a -/+ diff."""
    wrong = APPROVED_AND_REMEDIATED.replace("http://10.0.3.11:8080", "http://10.0.3.99:8080")
    config, test_file = setup(tmp_path, wrong)
    out = run(config, test_file)
    assert out.returncode == 1
    assert f"FAIL {test_file}:2: approved, the breaker opens" in out.stdout
    assert (
        "-- {at: 1m, run: http, request: {method: POST, url: 'http://10.0.3.99:8080" in out.stdout
    )
    assert (
        "+- {at: 1m, run: http, request: {method: POST, url: 'http://10.0.3.11:8080" in out.stdout
    )
    assert "2 passed, 1 failed" in out.stderr


def test_a_missing_or_unexpected_decision_fails(tmp_path: Path) -> None:
    """Expectations are the whole list: a decision the engine did not make, or one not
    expected, is a failure, not ignored."""
    missing_page = APPROVED_AND_REMEDIATED.replace("      - {at: 0s, page: ['slack:#ops']}\n", "")
    extra = APPROVED_AND_REMEDIATED.replace(
        "      - {at: 3m, closed: remediated}\n",
        "      - {at: 3m, closed: remediated}\n      - {at: 4m, page: ['slack:#ops']}\n",
    )
    for text in (missing_page, extra):
        config, test_file = setup(tmp_path, text)
        out = run(config, test_file)
        assert out.returncode == 1, out.stdout
        assert "+- {at: 0s, incident: 1, page:" in out.stdout or "-- {at: 4m, page:" in out.stdout


def test_show_prints_the_actual_decisions_to_paste(tmp_path: Path) -> None:
    """--show prints every decision in the test file's own syntax."""
    config, test_file = setup(tmp_path, APPROVED_AND_REMEDIATED)
    out = run(config, test_file, show=True)
    assert out.returncode == 0
    assert "    - {at: 3m, incident: 1, closed: remediated}" in out.stdout


def test_a_broken_test_file_is_located_and_fails(tmp_path: Path) -> None:
    """Unknown keys, a human with two decisions, an expectation without `at`: file:line."""
    broken = """\
tests:
  - name: broken
    alerts:
      - {at: 0s, labels: {alertname: X}, colour: red}
    humans:
      - {at: 1m, approve: a, deny: b}
    expect:
      - {matched: open-breaker}
"""
    config, test_file = setup(tmp_path, broken)
    out = run(config, test_file)
    assert out.returncode == 1
    assert f"{test_file}:4: tests[0].alerts[0].colour: unknown key" in out.stdout
    assert "give exactly one of approve, deny, ack" in out.stdout
    assert "every expected decision needs `at`" in out.stdout
    bad_yaml = setup(tmp_path, "tests: [\n")[1]
    out = run(config, bad_yaml)
    assert (out.returncode, f"{bad_yaml}:") == (1, out.stdout[: len(str(bad_yaml)) + 1])


def test_readme_example_passes_against_the_shipped_rules(tmp_path: Path) -> None:
    """The test-file example in README.md runs green on the repo's own config."""
    repo = Path(__file__).resolve().parent.parent
    readme = (repo / "README.md").read_text()
    example = readme.split("```yaml\ntests:", 1)[1].split("```", 1)[0]
    test_file = tmp_path / "readme.test.yml"
    test_file.write_text("tests:" + example)
    out = run(repo / "remediator.yml", test_file)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed, 0 failed" in out.stderr


def test_a_human_input_that_changes_nothing_is_a_decision_too(tmp_path: Path) -> None:
    """A second approve, or an ack of an incident that does not exist, shows as `no_effect`
    rather than vanishing (a test aimed at the wrong incident must not pass silently)."""
    twice = f"""\
tests:
  - name: approved twice, and an ack for a wrong incident
    alerts:
      - {FIRING}
    humans:
      - {{at: 1m, approve: U024BE7LH}}
      - {{at: 2m, approve: U024BE7LH}}
      - {{at: 2m, incident: 7, ack: U024BE7LH}}
    until: 3m
    expect:
      - {{at: 0s, matched: open-breaker}}
      - {{at: 0s, approval: http}}
      - {{at: 1m, approved: [U024BE7LH]}}
      - {{at: 1m, run: http}}
      - {{at: 2m, incident: 1, no_effect: 'approve by U024BE7LH: incident 1 has no pending approval'}}
      - {{at: 2m, incident: 7, no_effect: 'ack by U024BE7LH: incident 7 does not exist'}}
"""
    config, test_file = setup(tmp_path, twice)
    out = run(config, test_file)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_chain_chosen_by_the_alert_and_its_fallback_show_as_decisions(tmp_path: Path) -> None:
    """`escalate: "{{ labels.severity }}"`: severity=low pages `low`; a severity naming
    no chain shows `escalate_fallback` (with why) before the fallback chain pages."""
    rules = """\
rules:
  - name: page-by-severity
    match: [alertname = BlockProductionStopped]
    escalate: "{{ labels.severity }}"
    escalate_fallback: critical
"""
    chains = "  low:\n    steps:\n      - notify: ['slack:#ops-low']\n"
    tests = """\
tests:
  - name: the alert's severity names the chain
    alerts:
      - {at: 0s, labels: {alertname: BlockProductionStopped, severity: low}}
    expect:
      - {at: 0s, incident: 1, matched: page-by-severity}
      - {at: 0s, incident: 1, exhausted: 'rule has no steps: page only'}
      - {at: 0s, incident: 1, escalate: low}
      - {at: 0s, incident: 1, page: ['slack:#ops-low'], chain: low, step: 1}
  - name: a severity that is no chain pages the fallback
    alerts:
      - {at: 0s, labels: {alertname: BlockProductionStopped, severity: "sev1; rm -rf /"}}
    expect:
      - {at: 0s, incident: 1, matched: page-by-severity}
      - {at: 0s, incident: 1, exhausted: 'rule has no steps: page only'}
      - {at: 0s, incident: 1, escalate_fallback: critical, reason: "'{{ labels.severity }}' rendered 'sev1; rm -rf /', which is not a chain"}
      - {at: 0s, incident: 1, escalate: critical}
      - {at: 0s, incident: 1, page: ['slack:#ops'], chain: critical, step: 1}
"""
    config = write_config(tmp_path / "cfg", rules, policies=chains)
    test_file = tmp_path / "chains.test.yml"
    test_file.write_text(tests)
    out = run(config, test_file)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed, 0 failed" in out.stderr


def test_labels_that_fail_require_do_not_pick_the_chain(tmp_path: Path) -> None:
    """A templated `escalate:` on a rule with `require:`: when the alert fails `require:`
    its labels are not trusted to choose who is paged either, so a hostile `severity`
    naming a real chain (`low`) pages the fallback, saying why."""
    rules = """\
rules:
  - name: page-by-severity
    match: [alertname = BlockProductionStopped]
    require: {severity: '^(low|critical)$', instance: '^validator[0-9]+$'}
    escalate: "{{ labels.severity }}"
    escalate_fallback: critical
"""
    chains = "  low:\n    steps:\n      - notify: ['slack:#ops-low']\n"
    tests = """\
tests:
  - name: a label failing require leaves the chain to the fallback
    alerts:
      - {at: 0s, labels: {alertname: BlockProductionStopped, severity: low, instance: "x;reboot"}}
    expect:
      - {at: 0s, incident: 1, matched: page-by-severity}
      - {at: 0s, incident: 1, refused: require, reason: "require: label instance='x;reboot' does not match '^validator[0-9]+$'"}
      - {at: 0s, incident: 1, exhausted: "require: label instance='x;reboot' does not match '^validator[0-9]+$'"}
      - {at: 0s, incident: 1, escalate_fallback: critical, reason: "labels that fail require: do not pick the chain (require: label instance='x;reboot' does not match '^validator[0-9]+$')"}
      - {at: 0s, incident: 1, escalate: critical}
      - {at: 0s, incident: 1, page: ['slack:#ops'], chain: critical, step: 1}
"""
    config = write_config(tmp_path / "cfg", rules, policies=chains)
    test_file = tmp_path / "chains.test.yml"
    test_file.write_text(tests)
    out = run(config, test_file)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed, 0 failed" in out.stderr


def test_a_step_under_a_named_approval_policy_shows_its_policy_and_approvers(
    tmp_path: Path,
) -> None:
    """`approval: security`: the request shows `policy: security` and its `required`; a
    default approver is refused; nobody of security's deciding times out after its 5m."""
    rules = RULES.replace("approval: required", "approval: security")
    policies = POLICIES + (
        "  security:\n    approvers: [U05TD4V1S, U05SL8K2Q]\n    timeout: 5m\n    required: 2\n"
    )
    tests = f"""\
tests:
  - name: two security approvers open the breaker; the on-call is refused
    alerts:
      - {FIRING}
    humans:
      - {{at: 1m, approve: U024BE7LH}}
      - {{at: 1m, approve: U05TD4V1S}}
      - {{at: 2m, approve: U05SL8K2Q}}
    until: 3m
    expect:
      - {{at: 0s, incident: 1, matched: open-breaker, target: api1}}
      - {{at: 0s, incident: 1, approval: http, step: 1, required: 2, policy: security}}
      - {{at: 1m, incident: 1, approval_refused: U024BE7LH}}
      - {{at: 2m, incident: 1, approved: [U05SL8K2Q, U05TD4V1S]}}
      - {{at: 2m, incident: 1, run: http}}
  - name: nobody of security decides within its 5 minutes, the chain pages
    alerts:
      - {FIRING}
    until: 10m
    expect:
      - {{at: 0s, matched: open-breaker}}
      - {{at: 0s, approval: http, policy: security}}
      - {{at: 5m, approval_expired: true}}
      - {{at: 5m, exhausted: 'approval of step 1 (http) expired after 5m'}}
      - {{at: 5m, escalate: critical}}
      - {{at: 5m, page: ['slack:#ops'], chain: critical, step: 1}}
"""
    config = write_config(tmp_path / "cfg", rules, hosts=HOSTS, policies=policies)
    test_file = tmp_path / "security.test.yml"
    test_file.write_text(tests)
    out = run(config, test_file)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed, 0 failed" in out.stderr
