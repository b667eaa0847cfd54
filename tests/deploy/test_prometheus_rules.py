"""deploy/prometheus: promtool accepts the alert rules and their unit tests pass."""

from __future__ import annotations

from support.deployfiles import ALERTS, ALERTS_TEST, alert_rules, load_yaml, run

SEVERITIES = {"critical", "high", "medium", "low"}  # remediator's own scale


def test_promtool_accepts_the_alert_rules() -> None:
    """`promtool check rules` parses every expression and template."""
    result = run("promtool", "check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    """`promtool test rules`: the alerts fire when they should, and not before."""
    result = run("promtool", "test", "rules", ALERTS_TEST)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_tests_cover_firing_and_quiet_cases() -> None:
    """At least three alerts have both a case that fires and one that must not."""
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(ALERTS_TEST)["tests"]:
        for check in case["alert_rule_test"]:
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert len(fires & quiet) >= 3, f"fire and not-fire cases only for {fires & quiet}"
    assert fires <= {r["alert"] for r in alert_rules()}


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    """Operators route on severity and act on the runbook hint; names start Remediator.

    deploy/alertmanager/alertmanager.yml sends `Remediator.+` to humans, not to remediator.
    """
    for rule in alert_rules():
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        assert rule["alert"].startswith("Remediator"), rule["alert"]
