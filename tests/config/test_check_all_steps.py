"""`remediator check` on `all:` steps (parts run together): where a step goes wrong, and how."""

from __future__ import annotations

from pathlib import Path

import pytest
from config.test_check import APPROVALS, CONFIG, check, make

HEAD = """\
rules:
  - name: breach
    match: [alertname = Breach]
    target: "{{ labels.instance | host }}"
    escalate: critical
    steps:
"""
SSH_PART = "          - {action: ssh, params: {argv: [uptime]}}\n"
NOTIFY_PART = "          - {action: notify, params: {message: hi}}\n"


def test_a_valid_all_step_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two parts, the verify window on the all: step: the config loads."""
    rule = HEAD + "      - verify: 2m\n        all:\n" + SSH_PART + NOTIFY_PART
    code, lines = check(make(tmp_path, rules={"a.yml": rule}), capsys)
    assert code == 0, lines


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (
            "      - all:\n" + SSH_PART,
            "rules/a.yml:7: rules[0].steps[0].all: `all:` has 1 part(s): it runs at least 2 "
            "together; write a single action as a plain step (action, params)",
        ),
        (
            "      - all:\n"
            "          - {action: ssh, params: {argv: [uptime]}, verify: 1m}\n" + NOTIFY_PART,
            "rules/a.yml:8: rules[0].steps[0].all[0]: `verify` on a part: the verify window "
            "belongs to the all: step (one window after the last part finishes): move "
            "`verify:` beside `all:`",
        ),
        (
            "      - all:\n          - all: [{action: notify, params: {message: a}}]\n"
            + NOTIFY_PART,
            "rules/a.yml:8: rules[0].steps[0].all[0]: a nested `all:`: parts run together "
            "already; list these parts in the outer `all:` instead",
        ),
        (
            "      - action: ssh\n        params: {argv: [uptime]}\n        all:\n"
            + SSH_PART
            + NOTIFY_PART,
            "rules/a.yml:7: rules[0].steps[0]: `action` and `params` beside `all:`: an all: "
            "step runs its parts; give each part its own action and params inside `all:`, or "
            "drop `all:`",
        ),
    ],
    ids=["one-part", "verify-on-a-part", "nested-all", "action-beside-all"],
)
def test_malformed_all_steps_are_located(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], step: str, expected: str
) -> None:
    """Too few parts, a part's own verify window, a nested all:, or an action beside
    all: are each reported at the step (file:line) with what to write instead."""
    code, lines = check(make(tmp_path, rules={"a.yml": HEAD + step}), capsys)
    assert code == 1
    assert lines == [expected]


def test_a_part_is_checked_like_a_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each part's params are parsed by its action's own model, located in its part."""
    rule = HEAD + "      - all:\n          - {action: ssh, params: {arg: [x]}}\n" + NOTIFY_PART
    code, lines = check(make(tmp_path, rules={"a.yml": rule}), capsys)
    assert code == 1
    assert "rules/a.yml:8: rules[0].steps[0].all[0].params.argv: required key is missing" in lines


def test_parts_asking_different_policies_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One approval asks for every part: parts whose approval policies differ
    (`security` and `required`, i.e. default) cannot share it."""
    rule = (
        HEAD + "      - all:\n"
        "          - {action: ssh, params: {argv: [uptime]}, approval: security}\n"
        "          - {action: notify, params: {message: hi}, approval: required}\n"
    )
    path = make(tmp_path, rules={"a.yml": rule})
    (tmp_path / "policies" / "a.yml").write_text(APPROVALS)
    code, lines = check(path, capsys)
    assert code == 1
    assert lines == [
        "rules/a.yml:2: rule breach.steps[0].all: its parts ask different approval policies "
        "(part 0 (ssh): security, part 1 (notify): default), but an all: step asks one "
        "approval for every part: give the parts the same `approval:` (or set it once on "
        "the all: step)"
    ]
    # The same policy on both (one part `auto`) is one request.
    path.parent.joinpath("rules", "a.yml").write_text(
        rule.replace("approval: required", "approval: auto")
    )
    code, lines = check(path, capsys)
    assert code == 0, lines


def test_a_part_naming_an_unknown_policy_is_located(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A part's own `approval:` naming no policy is reported at that part."""
    rule = (
        HEAD + "      - all:\n"
        "          - {action: ssh, params: {argv: [uptime]}, approval: securty}\n" + NOTIFY_PART
    )
    path = make(tmp_path, rules={"a.yml": rule})
    (tmp_path / "policies" / "a.yml").write_text(APPROVALS)
    code, lines = check(path, capsys)
    assert code == 1
    assert len(lines) == 1
    assert lines[0].startswith(
        "rules/a.yml:2: rule breach.steps[0].all[0].approval: approval policy 'securty' is not "
        "defined in policies"
    )


def test_an_ssh_part_needs_the_ssh_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A part running over SSH needs `ssh:` like a step does, reported at the part."""

    config = CONFIG.replace("ssh:\n  username: ops\n  known_hosts: known_hosts\n", "")
    rule = HEAD + "      - all:\n" + NOTIFY_PART + SSH_PART
    code, lines = check(make(tmp_path, config, rules={"a.yml": rule}), capsys)
    assert code == 1
    assert lines == [
        "rules/a.yml:9: rules[0].steps[0].all[1].action: ssh runs over SSH, so "
        "remediator.yml needs an `ssh:` section"
    ]
