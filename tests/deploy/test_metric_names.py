"""Every metric and label the alert rules and the dashboard read exists.

A misspelt name makes an alert that never fires and a panel that stays empty, and
nothing else notices: names are checked against remediator's own registry and a real
Alertmanager's /metrics, label values against the enums the code emits.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from support.alertmanager import Alertmanager
from support.deployfiles import alert_rules, dashboard_exprs
from support.promql import (
    exposition_series,
    literal_alternatives,
    matchers,
    metric_names,
    registry_series,
    unknown_references,
)

from remediator.metrics import Metrics
from remediator.store.records import State, StepState

Series = dict[str, frozenset[str]]
# Metrics being added beside this work (config reload), and Prometheus' own `up`.
EXTRA_SERIES: Series = {
    "remediator_config_last_reload_successful": frozenset(),
    "remediator_config_last_reload_success_timestamp_seconds": frozenset(),
    "up": frozenset(),
}
# Label values the code defines, for matchers that name them literally.
KNOWN_VALUES = {
    ("remediator_actions_total", "result"): {s.value for s in StepState},
    ("remediator_incidents", "state"): {s.value for s in State},
}
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def alertmanager_series(tmp_path_factory: pytest.TempPathFactory) -> Series:
    """Sample names a real Alertmanager exposes (two rules read its webhook counters)."""
    workdir = tmp_path_factory.mktemp("am-metrics")
    with (
        Alertmanager.start(workdir, "http://127.0.0.1:9/", "unused") as am,
        NO_PROXY.open(f"{am.url}/metrics", timeout=5.0) as resp,
    ):
        return exposition_series(resp.read().decode())


@pytest.fixture(scope="module")
def known_series(alertmanager_series: Series) -> Series:
    """Every series an expression may use: remediator's, Alertmanager's, the extras."""
    metrics = Metrics()
    ours = registry_series(metrics.registry, metrics)
    assert "remediator_alerts_received_total" in ours  # counters carry the _total suffix
    assert "remediator_webhook_duration_seconds_bucket" in ours
    theirs = {k: v for k, v in alertmanager_series.items() if k.startswith("alertmanager_")}
    assert "alertmanager_notifications_total" in theirs
    return {**theirs, **ours, **EXTRA_SERIES}


def shipped_exprs() -> Iterator[tuple[str, str]]:
    """Every PromQL expression deploy/ ships: alert rules, then dashboard targets."""
    for rule in alert_rules():
        yield f"alert {rule['alert']}", rule["expr"]
    yield from dashboard_exprs()


def test_metric_and_label_names_exist(known_series: Series) -> None:
    """No expression names a metric, or a label of it, that nothing exports."""
    problems = [
        f"{where}: {problem}"
        for where, expr in shipped_exprs()
        for problem in unknown_references(expr, known_series)
    ]
    assert problems == []
    used = set().union(*(metric_names(expr) for _, expr in shipped_exprs()))
    assert set(EXTRA_SERIES) - {"up"} <= used  # the reload metrics are watched


def test_label_values_are_ones_the_code_emits() -> None:
    """`result` of actions and `state` of incidents name real StepState/State values."""
    for where, expr in shipped_exprs():
        for m in matchers(expr):
            allowed = KNOWN_VALUES.get((m.metric or "", m.label))
            values = literal_alternatives(m)
            if allowed is not None and values is not None:
                assert values <= allowed, f"{where}: {m.label} {values - allowed}"


def test_the_check_catches_typos(known_series: Series) -> None:
    """The checker itself: misspelt metrics and labels are reported, functions are not."""
    expr = (
        'sum by (status) (rate(remediator_alerts_recieved_total{stauts="firing"}[5m])) '
        '/ on () group_left histogram_quantile(0.9, sum by (le) (rate(x_bucket{le="1"}[5m])))'
    )
    assert metric_names(expr) == {"remediator_alerts_recieved_total", "x_bucket"}
    bad_label = 'remediator_alerts_received_total{stauts="firing"} offset 5m > 1e3'
    assert unknown_references(bad_label, known_series) == [
        "remediator_alerts_received_total has no label 'stauts'"
    ]
