"""Prometheus alerting rules files, read for `remediator check --prometheus-rules`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remediator.config.problems import Problem
from remediator.config.promql import LabelSet, PromQLError, expr_labels
from remediator.config.yamlfile import YamlDoc, load_yaml

YAML_SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True)
class PromAlert:
    """One alerting rule: its name, where it is, its static `labels:` and what its expr keeps."""

    name: str
    file: str
    line: int
    static: dict[str, str]
    expr: LabelSet

    @property
    def where(self) -> str:
        """`file:line` of its `- alert:` item."""
        return f"{self.file}:{self.line}"

    def static_value(self, label: str) -> str | None:
        """The value its `labels:` give `label`, unless absent or a template."""
        value = self.static.get(label)
        return None if value is None or "{{" in value else value

    def has(self, label: str) -> bool | None:
        """True: its alerts carry `label`; False: they do not; None: cannot tell."""
        if label == "alertname" or label in self.static:
            return True
        return self.expr.has(label)

    def labels_shown(self) -> str:
        """What it is known to carry, for messages."""
        known = sorted({"alertname", *self.static, *self.expr.known})
        more = "" if self.expr.exact else ", maybe more"
        return f"{', '.join(known)}{more} (from {self.expr.origin} and its `labels:`)"


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in YAML_SUFFIXES and p.is_file())
    return [path]


def _alert(doc: YamlDoc, loc: tuple[str | int, ...], rule: dict[str, Any]) -> PromAlert | Problem:
    name, expr, labels = rule.get("alert"), rule.get("expr"), rule.get("labels", {})
    if not isinstance(name, str) or not isinstance(expr, str | int | float):
        return doc.problem(loc, "an alerting rule needs `alert: NAME` and `expr: PROMQL`")
    if not isinstance(labels, dict):
        return doc.problem((*loc, "labels"), "`labels:` must be a mapping of label: value")
    try:
        read = expr_labels(str(expr))
    except PromQLError as exc:
        why = f"an expression this check cannot read ({exc})"
        read = LabelSet(frozenset(), False, why)
    except RecursionError:
        read = LabelSet(frozenset(), False, "an expression nested too deeply to read")
    static = {str(k): str(v) for k, v in labels.items()}
    return PromAlert(name, doc.file, doc.line_of(loc), static, read)


def _read_doc(doc: YamlDoc) -> tuple[list[PromAlert], list[Problem]]:
    data = doc.data
    if isinstance(data, dict) and "groups" not in data and {"tests", "rule_files"} & set(data):
        return [], []  # a `promtool test rules` file beside the rules
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list):
        return [], [doc.problem((), "not a Prometheus rules file: expected `groups:` (a list)")]
    alerts: list[PromAlert] = []
    problems: list[Problem] = []
    for i, group in enumerate(groups):
        rules = group.get("rules") if isinstance(group, dict) else None
        if not isinstance(rules, list):
            problems.append(doc.problem(("groups", i), "a group needs `rules:` (a list)"))
            continue
        for j, rule in enumerate(rules):
            if not isinstance(rule, dict) or "record" in rule:
                continue  # recording rules name series, not alerts
            found = _alert(doc, ("groups", i, "rules", j), rule)
            if isinstance(found, Problem):
                problems.append(found)
            else:
                alerts.append(found)
    return alerts, problems


def load_prometheus_rules(paths: list[Path]) -> tuple[list[PromAlert], list[Problem]]:
    """Every alerting rule in these folders' (or files') YAML files, with the problems
    that keep a file from being read."""
    alerts: list[PromAlert] = []
    problems: list[Problem] = []
    for path in paths:
        if not path.exists():
            problems.append(Problem(str(path), 1, "", "no such file or folder"))
            continue
        for file in _files(path):
            doc, errs = load_yaml(file, str(file))
            problems.extend(errs)
            if errs:
                continue
            found, errs = _read_doc(doc)
            alerts.extend(found)
            problems.extend(errs)
    return alerts, problems
