"""The runbook configurations shipped under examples/<system>/ stay valid and green.

Each `examples/<system>/remediator.yml` is a complete configuration (its own inventory,
chains and approvers); `make test` runs this file, so every shipped example is checked
with `remediator check` and its rule tests with `remediator test`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
SYSTEMS = sorted(p.parent.name for p in EXAMPLES.glob("*/remediator.yml"))


def remediator(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user does, in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "remediator", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def rule_tests(system_dir: Path) -> list[Path]:
    return sorted((system_dir / "rules" / "tests").glob("*.test.yml"))


def test_every_runbook_system_is_shipped() -> None:
    """The parametrized checks below run over every runbook system shipped as an example
    (an empty or partial glob would pass them without checking those): the KALDRIX
    handoff is the repo's own top-level configuration, the four others are examples."""
    assert SYSTEMS == ["ainur", "dinari", "findag", "phoenix"]


@pytest.mark.parametrize("system", SYSTEMS)
def test_example_config_passes_check(system: str) -> None:
    """`remediator check -c examples/<system>/remediator.yml` finds no problem."""
    out = remediator("check", "-c", EXAMPLES / system / "remediator.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK:" in out.stdout


@pytest.mark.parametrize("system", SYSTEMS)
def test_every_example_rules_file_has_rule_tests(system: str) -> None:
    """Each rules file of an example has its `rules/tests/NAME.test.yml`, as the repo's own
    rules do: a rules file without tests would ship unchecked."""
    system_dir = EXAMPLES / system
    rules = sorted(p.stem for p in (system_dir / "rules").glob("*.yml"))
    tests = sorted(p.name.removesuffix(".test.yml") for p in rule_tests(system_dir))
    assert rules, f"{system}: no rules"
    assert rules == tests


@pytest.mark.parametrize("system", SYSTEMS)
def test_example_rule_tests_pass(system: str) -> None:
    """Every case of `examples/<system>/rules/tests/*.test.yml` gets the decisions it
    expects from that system's own configuration."""
    system_dir = EXAMPLES / system
    out = remediator("test", "-c", system_dir / "remediator.yml", *rule_tests(system_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    assert " 0 failed" in out.stderr


def test_a_broken_example_rule_test_fails(tmp_path: Path) -> None:
    """A case whose expectation the rules do not meet makes the run exit 1 with a diff, so
    the check above cannot pass over a broken example."""
    copy = tmp_path / "findag"
    shutil.copytree(EXAMPLES / "findag", copy, ignore=shutil.ignore_patterns("var"))
    # The known_hosts path is relative to the example's place in the repo.
    config = copy / "remediator.yml"
    config.write_text(
        config.read_text().replace("../../ssh/known_hosts", str(REPO / "ssh" / "known_hosts"))
    )
    test_file = copy / "rules" / "tests" / "10-node.test.yml"
    text = test_file.read_text()
    assert "argv: [docker, restart, findag-node]" in text
    test_file.write_text(
        text.replace("argv: [docker, restart, findag-node]", "argv: [docker, stop, findag-node]", 1)
    )
    out = remediator("test", "-c", config, test_file)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAIL " in out.stdout
    assert "argv: [docker, stop, findag-node]" in out.stdout  # the diff shows the expected line
