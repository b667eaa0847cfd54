"""deploy/prometheus/runbook-alerts: the runbooks' alerts load in Prometheus and are unit-tested.

Each `NAME.yml` there is the Prometheus alerting rules of one runbook configuration, and
`NAME.test.yml` its `promtool test rules` cases. Every file found is checked, so a file
added for another runbook is picked up without touching this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.deployfiles import DEPLOY, load_yaml, run

RUNBOOK_ALERTS = DEPLOY / "prometheus" / "runbook-alerts"
TEST_SUFFIX = ".test.yml"
RULES_FILES = sorted(p for p in RUNBOOK_ALERTS.glob("*.yml") if not p.name.endswith(TEST_SUFFIX))
TEST_FILES = sorted(RUNBOOK_ALERTS.glob(f"*{TEST_SUFFIX}"))


def unit_tests_of(rules_file: Path) -> Path:
    """`NAME.test.yml` beside `NAME.yml`."""
    return rules_file.with_name(rules_file.stem + TEST_SUFFIX)


def alert_names(rules_file: Path) -> set[str]:
    """Every alertname a rules file defines."""
    return {
        rule["alert"]
        for group in load_yaml(rules_file)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def rule_tests(test_file: Path) -> list[dict[str, Any]]:
    """Every alert_rule_test entry of a promtool test file."""
    return [check for case in load_yaml(test_file)["tests"] for check in case["alert_rule_test"]]


def test_the_shipped_runbook_alerts_are_there() -> None:
    """The KALDRIX handoff's and the DINARI playbook's alert files ship (so the
    parametrized tests below never run on an empty folder)."""
    names = {p.name for p in RULES_FILES}
    assert {"kaldrix-handoff.yml", "dinari-playbook.yml"} <= names, names


@pytest.mark.parametrize("rules_file", RULES_FILES, ids=lambda p: p.name)
def test_promtool_accepts_the_rules(rules_file: Path) -> None:
    """`promtool check rules` parses every expression and template of the file."""
    result = run("promtool", "check", "rules", rules_file)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    """`promtool test rules`: each alert fires with its labels when it should, not before."""
    result = run("promtool", "test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("rules_file", RULES_FILES, ids=lambda p: p.name)
def test_every_rules_file_has_its_test_file(rules_file: Path) -> None:
    """`NAME.yml` has `NAME.test.yml`, and that file tests `NAME.yml`."""
    test_file = unit_tests_of(rules_file)
    assert test_file.is_file(), f"{rules_file.name} has no unit tests: add {test_file.name}"
    assert load_yaml(test_file)["rule_files"] == [rules_file.name], test_file.name


@pytest.mark.parametrize("rules_file", RULES_FILES, ids=lambda p: p.name)
def test_every_alert_is_tested_firing_and_quiet(rules_file: Path) -> None:
    """Each alert of the file has a case where it fires and one where it must not."""
    test_file = unit_tests_of(rules_file)
    assert test_file.is_file(), f"{rules_file.name} has no unit tests: add {test_file.name}"
    fires: set[str] = set()
    quiet: set[str] = set()
    for check in rule_tests(test_file):
        (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = alert_names(rules_file)
    assert names <= fires, f"{test_file.name}: never seen firing: {sorted(names - fires)}"
    assert names <= quiet, f"{test_file.name}: never seen quiet: {sorted(names - quiet)}"
    assert fires | quiet <= names, f"{test_file.name}: no such alert: {sorted(fires - names)}"
