"""The small PromQL reading behind `check --prometheus-rules`: which labels an alerting
rule's expression leaves on its alerts, and where it cannot tell."""

from __future__ import annotations

import pytest

from remediator.config.promql import PromQLError, expr_labels

KALDRIX_CPU = '100 - (avg by(instance) (irate(node_cpu_seconds_total{mode="idle"}[5m])) * 100) > 80'
KALDRIX_MEMORY = (
    "(node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes) / "
    "node_memory_MemTotal_bytes * 100 > 90"
)


@pytest.mark.parametrize(
    ("expr", "known"),
    [
        # The outermost aggregation says exactly which labels are left, either spelling.
        (
            "sum by (instance, source_ip) (rate(auth_failures_total[1m])) * 60 > 50",
            "instance source_ip",
        ),
        (
            "sum(rate(rate_limited_total[1m])) by (instance, source_ip) * 60 > 100",
            "instance source_ip",
        ),
        (KALDRIX_CPU, "instance"),
        ("sum(rate(x[5m])) > 1", ""),
        ('count_values("version", build_info) by (job)', "job version"),
        ("histogram_quantile(0.95, sum by (le, instance) (rate(h_bucket[5m]))) > 1", "instance"),
        ("x / on (instance) y > 1", "instance"),
        ('absent(up{job="kaldrix"})', "job"),
        ("vector(1)", ""),
    ],
)
def test_aggregations_say_exactly(expr: str, known: str) -> None:
    """`by (...)`, `on (...)`, absent and vector leave exactly these labels."""
    labels = expr_labels(expr)
    assert labels.exact
    assert labels.known == frozenset(known.split())


@pytest.mark.parametrize(
    ("expr", "known"),
    [
        ("up == 0", "instance job"),
        ("rate(kaldrix_blocks_produced_total[5m]) == 0", "instance job"),
        (KALDRIX_MEMORY, "instance job"),
        ('node_filesystem_avail_bytes{mountpoint="/"} < 1e9', "instance job mountpoint"),
        ('label_replace(up, "host", "$1", "instance", "(.*):.*") == 0', "host instance job"),
        ("x / on (instance) group_left (team) y", "instance job team"),
        ("topk(3, x) > 1", "instance job"),
        ("max_over_time(x[10m:1m] offset 5m) > bool 2", "instance job"),
    ],
)
def test_selectors_keep_their_metrics_labels(expr: str, known: str) -> None:
    """A selector keeps its metric's labels: instance and job (the scrape's) and those its
    `=` matchers fix are assumed, anything else cannot be told."""
    labels = expr_labels(expr)
    assert not labels.exact
    assert labels.known == frozenset(known.split())
    assert labels.has("source_ip") is None


def test_without_drops_what_it_names() -> None:
    """`sum without (job)` keeps the rest, and job is known to be gone."""
    labels = expr_labels("sum without (job) (up) == 0")
    assert labels.has("job") is False
    assert labels.has("instance") is True
    assert labels.has("pod") is None


def test_or_keeps_what_both_sides_carry() -> None:
    """An `or` alert's series come from either side: only labels both carry are sure."""
    labels = expr_labels("sum by (instance, pod) (a) > 1 or sum by (instance) (b) > 1")
    assert labels.known == {"instance"}
    assert labels.has("pod") is False


def test_an_unknown_function_cannot_be_told() -> None:
    """A function this reading does not know keeps nothing it can vouch for."""
    labels = expr_labels("mystery(up) > 1")
    assert labels.has("instance") is None


@pytest.mark.parametrize("expr", ["sum by (instance (x)", "up ==", "x{a=}", "up $ 1"])
def test_what_it_cannot_parse_is_an_error(expr: str) -> None:
    """Malformed input is a PromQLError (the check then says it cannot tell), never a crash."""
    with pytest.raises(PromQLError):
        expr_labels(expr)
