"""What a PromQL expression reads: metric names and label matchers, without a Go parser.

Good enough for the expressions we ship (alert rules, dashboards): strings, label
matchers, ranges and grouping clauses are cut out first, then every identifier that is
neither a keyword nor a function call is a metric name. ``promtool`` checks the syntax.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'
_STRINGS = re.compile(_STRING)
_SELECTOR = re.compile(rf"([A-Za-z_:][\w:]*)?\s*\{{((?:[^{{}}\"'`]|{_STRING})*)\}}")
_MATCHER = re.compile(rf"([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*({_STRING})")
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# An identifier not preceded by a word character (so not the `m` of `5m`), not followed
# by more of itself or by `(` (a function or aggregation).
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
    | {"and", "or", "unless", "offset", "atan2", "inf", "nan"}
)
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})


@dataclass(frozen=True)
class Matcher:
    """One label matcher of a selector: `metric{label op "value"}`."""

    metric: str | None
    label: str
    op: str
    value: str


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects."""
    text = _STRINGS.sub('""', expr)
    text = _BRACES.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {m for m in _IDENT.findall(text) if m.lower() not in _KEYWORDS}


def matchers(expr: str) -> Iterator[Matcher]:
    """Every label matcher in the expression, with the metric it applies to (if named)."""
    for selector in _SELECTOR.finditer(expr):
        for m in _MATCHER.finditer(selector.group(2)):
            yield Matcher(selector.group(1), m.group(1), m.group(2), m.group(3)[1:-1])


def literal_alternatives(matcher: Matcher) -> set[str] | None:
    """The values an (in)equality or plain `a|b` regex matcher names; None for real regexes."""
    if matcher.op in ("=", "!="):
        return {matcher.value}
    if re.fullmatch(r"[\w|]+", matcher.value):
        return set(matcher.value.split("|"))
    return None


def registry_series(registry: CollectorRegistry, metrics: object) -> dict[str, frozenset[str]]:
    """Sample name -> label names, for every metric `metrics` registered in `registry`.

    Labelled metrics have no samples until a child exists, so names come from each
    metric's type: counters expose `_total`, histograms `_bucket` (with `le`), `_sum`
    and `_count`; both also `_created`.
    """
    registered = {family.name for family in registry.collect()}
    out: dict[str, frozenset[str]] = {}
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        # prometheus_client keeps these private, but they are its model of the metric.
        name, kind = metric._name, metric._type
        labels = frozenset(metric._labelnames)
        assert name in registered, f"{name} is not in the registry"
        suffixes = {
            "counter": {"_total": labels, "_created": labels},
            "gauge": {"": labels},
            "histogram": {
                "_bucket": labels | {"le"},
                "_sum": labels,
                "_count": labels,
                "_created": labels,
            },
        }[kind]
        out.update({name + suffix: names for suffix, names in suffixes.items()})
    return out


def exposition_series(text: str) -> dict[str, frozenset[str]]:
    """Sample name -> label names seen, from a /metrics text exposition."""
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, set()).update(s.labels)
    return {name: frozenset(labels) for name, labels in out.items()}


def unknown_references(expr: str, known: dict[str, frozenset[str]]) -> list[str]:
    """Metric names and label names the expression uses that `known` does not have."""
    problems = [f"unknown metric {name}" for name in sorted(metric_names(expr) - set(known))]
    for m in matchers(expr):
        if m.metric in known and m.label not in known[m.metric] | TARGET_LABELS:
            problems.append(f"{m.metric} has no label {m.label!r}")
    return problems
