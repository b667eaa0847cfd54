"""The runbook configurations shipped under examples/<system>/ stay valid and green.

Each `examples/<system>/remediator.yml` is a complete configuration (its own inventory,
chains and approvers); `make test` runs this file, so every shipped example is checked
with `remediator check` and its rule tests with `remediator test`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
SYSTEMS = sorted(p.parent.name for p in EXAMPLES.glob("*/remediator.yml"))

# Each runbook's placeholder base, and how the rules files' comments name that runbook.
RUNBOOK_BASES = {
    "https://runbooks.example.com/kaldrix-handoff/": r"KALDRIX handoff",
    "https://runbooks.example.com/dinari-playbook/": r"DINARI playbook",
    "https://runbooks.example.com/findag-runbooks/": r"FinDAG (Operational )?runbooks",
    "https://runbooks.example.com/ainur-runbook/": r"Ainur runbook",
    "https://runbooks.example.com/phoenix-guide/": r"Phoenix guide",
}
# The runbook each configuration follows (the top-level one also borrows from the others).
SYSTEM_BASES = {
    "kaldrix": "https://runbooks.example.com/kaldrix-handoff/",
    "dinari": "https://runbooks.example.com/dinari-playbook/",
    "findag": "https://runbooks.example.com/findag-runbooks/",
    "ainur": "https://runbooks.example.com/ainur-runbook/",
    "phoenix": "https://runbooks.example.com/phoenix-guide/",
}
RULES_FILES = sorted((REPO / "rules").glob("*.yml")) + sorted(EXAMPLES.glob("*/rules/*.yml"))
# A GitHub-style heading anchor: lowercase words joined by hyphens.
ANCHOR = re.compile(r"#[a-z0-9][a-z0-9_-]*")


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


def test_every_shipped_configuration_has_rules_files() -> None:
    """The runbook-link check below runs over the repo's own rules and every example's
    (an empty glob would pass it without checking those)."""
    systems = {"kaldrix" if f.parent.parent == REPO else f.parent.parent.name for f in RULES_FILES}
    assert systems == {"kaldrix", *SYSTEMS}


@pytest.mark.parametrize("rules_file", RULES_FILES, ids=lambda f: str(f.relative_to(REPO)))
def test_every_shipped_rule_links_its_runbook_section(rules_file: Path) -> None:
    """Every rule of the shipped configurations sets `runbook_url:` to a section of the
    runbook its file cites (the Runbook button of its pages), under that runbook's
    placeholder base, and the file says the URLs are placeholders: a new rule without a
    link, or with another runbook's, fails here."""
    system = "kaldrix" if rules_file.parent.parent == REPO else rules_file.parent.parent.name
    text = rules_file.read_text()
    header = text[: text.index("\nrules:")]
    where = f"{rules_file.name}: its top comment should say the runbook URLs are placeholders"
    assert "placeholder" in header, where
    assert "runbooks.example.com" in header, where
    rules = yaml.safe_load(text)["rules"]
    assert rules
    for rule in rules:
        url = rule.get("runbook_url")
        assert isinstance(url, str), f"{rule['name']}: no runbook_url"
        base, _, anchor = url.partition("#")
        assert ANCHOR.fullmatch("#" + anchor), f"{rule['name']}: {url} has no section anchor"
        assert base in RUNBOOK_BASES, f"{rule['name']}: {url} is not a runbook's base"
        if system == "kaldrix":
            # The handoff's rules borrow other runbooks' sections, citing them by name.
            assert re.search(RUNBOOK_BASES[base], text), f"{rule['name']}: {url}, not cited"
        else:
            assert base == SYSTEM_BASES[system], f"{rule['name']}: {url} is not {system}'s"


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
