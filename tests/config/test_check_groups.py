"""`remediator check` on group limits: `max_unavailable` as a count or a percentage of the
group's inventory members, located errors when it is neither or rounds down to nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from remediator.cli import main
from remediator.config import load_config

CONFIG = """\
server:
  webhook_auth: {bearer_token_env: TOKEN}
store: sqlite:///state.db
rules: rules/
policies: policies/
inventory:
  hosts:
    v1: {address: 10.0.0.1, groups: [validators]}
    v2: {address: 10.0.0.2, groups: [validators]}
    v3: {address: 10.0.0.3, groups: [validators]}
    b1: {address: 10.0.0.4, groups: [bootstrap]}
"""


def make(tmp_path: Path, groups: str) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "safety.yml").write_text(f"safety:\n  groups:\n{groups}")
    path = tmp_path / "remediator.yml"
    path.write_text(CONFIG)
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["check", "-c", str(path)])
    return code, capsys.readouterr().out.splitlines()


def test_a_percentage_is_of_the_groups_members_rounded_down(tmp_path: Path) -> None:
    """`67%` of 3 validators allows 2 (rounded down); a count stays a count."""
    path = make(
        tmp_path, "    validators: {max_unavailable: 67%}\n    bootstrap: {max_unavailable: 1}\n"
    )
    groups = load_config(path).policies.safety.groups
    assert groups["validators"].allowed(3) == 2
    assert groups["validators"].shown(3) == "67% of 3 members = 2"
    assert groups["bootstrap"].allowed(1) == 1


@pytest.mark.parametrize("value", ["0", "0%", "101%", "'25 percent'", "1.5", "true"])
def test_neither_a_count_nor_a_percentage_is_located(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """A zero, an out-of-range or unreadable percentage, a fraction or a boolean: an error
    at its line saying both accepted forms."""
    code, lines = check(make(tmp_path, f"    validators: {{max_unavailable: {value}}}\n"), capsys)
    assert code == 1
    [line] = lines
    assert line.startswith(
        "policies/safety.yml:3: safety.groups.validators.max_unavailable: invalid max_unavailable"
    )
    assert "write a count of members (`1`, at least 1) or a percentage" in line


def test_a_percentage_that_rounds_to_no_member_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`25%` of 3 validators rounds down to 0: nothing in the group could ever be
    remediated, so check refuses it, naming the smallest percentage that allows one."""
    code, lines = check(make(tmp_path, "    validators: {max_unavailable: 25%}\n"), capsys)
    assert code == 1
    assert lines == [
        "policies/safety.yml:3: safety.groups.validators.max_unavailable: 25% of 3 members = 0: "
        "no member of validators could ever be remediated; write at least `34%` or a count "
        "(`max_unavailable: 1`)"
    ]
