"""`check` points at the nearest known name, and chains may be written as bare lists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from config.test_check import RULE, check, make
from support.daemon import write_config

from remediator.config import load_config


def test_an_unknown_action_suggests_the_nearest_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`restart_servic` names `restart_service`, so the typo is fixed without the docs."""
    path = make(tmp_path, rules={"a.yml": RULE.replace("restart_service", "restart_servic")})
    code, lines = check(path, capsys)
    assert code == 1
    assert lines[0].startswith(
        "rules/a.yml:7: rules[0].steps[0].action: unknown action 'restart_servic'; "
        "did you mean `restart_service`? (one of block_ips, "
    )


def test_an_unknown_key_suggests_the_nearest_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Misspelt keys of a rule, of an action's params and of remediator.yml each name the
    key meant; a key like no known one says only `unknown key`."""
    rule = RULE.replace("target:", "targte:").replace("{service: nginx}", "{servce: nginx}")
    config = make(tmp_path, rules={"a.yml": rule})
    config.write_text(config.read_text() + "polices: policies/\ncolour: blue\n")
    code, lines = check(config, capsys)
    assert code == 1
    assert "remediator.yml:14: polices: unknown key; did you mean `policies`?" in [
        line.removeprefix(f"{config.parent}/") for line in lines
    ]
    assert f"{config}:15: colour: unknown key" in lines
    config.write_text(config.read_text().replace("polices: policies/\ncolour: blue\n", ""))
    code, lines = check(config, capsys)
    assert "rules/a.yml:5: rules[0].targte: unknown key; did you mean `target`?" in lines
    (tmp_path / "rules" / "a.yml").write_text(RULE.replace("{service: nginx}", "{servce: x}"))
    code, lines = check(config, capsys)
    assert lines == [
        "rules/a.yml:8: rules[0].steps[0].params.service: required key is missing",
        "rules/a.yml:8: rules[0].steps[0].params.servce: unknown key; did you mean `service`?",
    ]


def test_an_unknown_key_under_an_alias_suggests_the_written_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key whose field has a YAML alias (`continue`, not `continue_`) is suggested as written."""
    rule = RULE.replace("escalate: critical", "escalate: critical\n    continu: true")
    code, lines = check(make(tmp_path, rules={"a.yml": rule}), capsys)
    assert code == 1
    assert lines == ["rules/a.yml:10: rules[0].continu: unknown key; did you mean `continue`?"]


def test_an_unknown_chain_suggests_the_nearest_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`escalate: critcal` names the chain `critical`."""
    rule = RULE.replace("escalate: critical", "escalate: critcal")
    code, lines = check(make(tmp_path, rules={"a.yml": rule}), capsys)
    assert code == 1
    assert lines == [
        "rules/a.yml:2: rule restart-web.escalate: escalation chain 'critcal' is not defined "
        "in policies; did you mean `critical`?"
    ]


def test_an_unknown_always_for_action_suggests_the_nearest_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An `always_for` entry naming `block_ip` names `block_ips`."""
    path = make(tmp_path)
    (tmp_path / "policies" / "a.yml").write_text(
        "approvals:\n  default: {approvers: [alice]}\n  always_for: [block_ip]\n"
    )
    code, lines = check(path, capsys)
    assert code == 1
    assert lines[0].startswith(
        "policies/a.yml:3: approvals.always_for[0]: 'block_ip': unknown action 'block_ip'; "
        "did you mean `block_ips`? (one of "
    )


def test_a_misspelt_approvals_setting_is_not_taken_for_a_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any other key under `approvals:` names a policy, so `alway_for: [...]` would be
    read as a policy that is not a mapping: `check` names the setting meant instead."""
    path = make(tmp_path)
    (tmp_path / "policies" / "a.yml").write_text(
        "approvals:\n  default: {approvers: [alice]}\n  alway_for: [block_ips]\n"
    )
    code, lines = check(path, capsys)
    assert code == 1
    assert lines[0].startswith("policies/a.yml:")
    assert "`alway_for` is neither a setting of approvals nor a policy" in lines[0]
    assert lines[0].endswith("did you mean `always_for`?")


BARE_CHAIN = """\
escalations:
  pager:
    - notify: ['slack:#pager']
    - {after: 10m, notify: ['slack:@U024BE7LH']}
"""


def test_a_chain_may_be_a_bare_list_of_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`escalations.NAME: [steps]` is short for `{steps: [...]}`: it loads as that chain."""
    path = make(tmp_path, rules={"a.yml": RULE.replace("critical", "pager")})
    (tmp_path / "policies" / "b.yml").write_text(BARE_CHAIN)
    code, lines = check(path, capsys)
    assert (code, len(lines)) == (0, 1), lines
    pager = load_config(path).policies.escalations["pager"]
    assert [s.after for s in pager.steps] == [0.0, 600.0]
    assert pager.repeat == 0


def test_a_bare_chain_problem_is_located_at_its_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad step of a bare-list chain is reported at its own line, under `.steps[i]`, and
    a notify target needing a missing section too."""
    path = make(tmp_path)
    (tmp_path / "policies" / "b.yml").write_text(
        "escalations:\n  pager:\n    - notify: ['slack:#pager']\n"
        "    - after: soon\n      notify: ['email:oncall@example.com']\n"
    )
    code, lines = check(path, capsys)
    assert code == 1
    assert lines == [
        "policies/b.yml:4: escalations.pager.steps[1].after: invalid duration 'soon': use a "
        "number and a unit (ms, s, m, h, d, w)"
    ]
    (tmp_path / "policies" / "b.yml").write_text(
        "escalations:\n  pager:\n    - notify: ['slack:#pager']\n"
        "    - after: 5m\n      notify: ['email:oncall@example.com']\n"
    )
    code, lines = check(path, capsys)
    assert lines == [
        "policies/b.yml:5: escalations.pager.steps[1].notify[0]: notifies "
        "'email:oncall@example.com' but remediator.yml has no `email:` section"
    ]


PAGING_RULE = """\
rules:
  - name: page-only
    match: [alertname = ConsensusStalled]
    escalate: pager
"""
PAGES = """\
tests:
  - name: a rule without steps pages the bare-list chain, step by step
    alerts:
      - {at: 0s, labels: {alertname: ConsensusStalled}}
    until: 11m
    expect:
      - {at: 0s, matched: page-only}
      - {at: 0s, exhausted: 'rule has no steps: page only'}
      - {at: 0s, escalate: pager}
      - {at: 0s, page: ['slack:#pager'], chain: pager, step: 1}
      - {at: 10m, page: ['slack:@U024BE7LH'], chain: pager, step: 2}
"""


def test_a_bare_list_chain_pages_in_a_rule_test(tmp_path: Path) -> None:
    """`remediator test`: a rule escalating to a bare-list chain pages each of its steps."""
    config = write_config(tmp_path / "cfg", PAGING_RULE)
    (tmp_path / "cfg" / "policies" / "b.yml").write_text(BARE_CHAIN)
    test_file = tmp_path / "pager.test.yml"
    test_file.write_text(PAGES)
    args = [sys.executable, "-m", "remediator", "test", "-c", str(config), str(test_file)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed, 0 failed" in out.stderr
