"""`remediator check --prometheus-rules DIR`: do the rules and the Prometheus alerts agree?

For every rule that names alerts (`alertname = X`, or `alertname =~ "X|Y"` made only of
names), against the alerting rules of DIR (see promrules.py, and promql.py for how an
expression's labels are read):

- each name is the `alert:` of some alerting rule;
- some alert of that name has labels the rule's other matchers can match (its static
  `labels:`, or labels its expression does not carry, compared as Alertmanager does: a
  missing label is the empty string);
- every label the rule reads (`require:` keys; `labels.X` in `target`, `escalate` and
  steps' params) is carried by each alert it can take, and a static value passes `require`;
- every alert with a static `severity` that rules take is paged through a chain: a
  rule's literal `escalate`, or a templated one rendering, from the alert's static
  labels, to a chain's name (the fallback is for labels nobody planned, not for these).

A problem names the rule's file:line and the alert's. What the reading cannot tell (a
label a plain selector may or may not carry, a rule matching no alertname by name) is a
warning: printed, not failing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes

from remediator.config.models import Config, RuleSpec
from remediator.config.problems import Problem
from remediator.config.promrules import PromAlert, load_prometheus_rules
from remediator.config.suggest import did_you_mean
from remediator.config.yamlfile import Loc, YamlDoc, load_yaml
from remediator.errors import TemplateError
from remediator.matchers import Op, compile_regex
from remediator.templates import render

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_ALTERNATIVES = re.compile(rf"\(?(?:\?:)?({_NAME}(?:\|{_NAME})*)\)?")
_PARSE_ENV = jinja2.Environment(autoescape=True)  # only parses: which names a template reads


@dataclass
class PromReport:
    """What `check --prometheus-rules` found."""

    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    alerts: int = 0
    rules_checked: int = 0


@dataclass(frozen=True)
class _Site:
    """A rule with the YAML document it came from, for lines."""

    rule: RuleSpec
    doc: YamlDoc
    index: int

    def problem(self, loc: Loc, message: str) -> Problem:
        return self.doc.problem(("rules", self.index, *loc), message)


def alertnames(rule: RuleSpec) -> list[tuple[int, str]]:
    """(matcher index, alert name) for `alertname = X` and each name of `alertname =~ "X|Y"`."""
    out: list[tuple[int, str]] = []
    for k, m in enumerate(rule.match):
        if m.name != "alertname":
            continue
        if m.op is Op.EQ and m.value:
            out.append((k, m.value))
        elif m.op is Op.RE and (found := _ALTERNATIVES.fullmatch(m.value)):
            out.extend((k, name) for name in found.group(1).split("|"))
    return out


def label_reads(source: str) -> set[str]:
    """The labels a template reads as `labels.X` or `labels["X"]` (not `labels.get(...)`)."""
    try:
        tree = _PARSE_ENV.parse(source)
    except jinja2.TemplateSyntaxError:
        return set()  # check reports it on the rule
    called = {id(call.node) for call in tree.find_all(nodes.Call)}
    out: set[str] = set()
    for node in tree.find_all(nodes.Getattr):
        if _is_labels(node.node) and id(node) not in called:
            out.add(node.attr)
    for item in tree.find_all(nodes.Getitem):
        if _is_labels(item.node) and isinstance(item.arg, nodes.Const):
            out.add(str(item.arg.value))
    return out


def _is_labels(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "labels"


def _strings(value: Any, loc: Loc) -> list[tuple[str, Loc]]:
    if isinstance(value, str):
        return [(value, loc)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, (*loc, str(k)))]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _strings(v, (*loc, i))]
    return []


def rule_reads(raw: dict[str, Any]) -> list[tuple[str, Loc]]:
    """(label, where) for every label a rule's `require`, `target`, `escalate` and steps read."""
    reads: list[tuple[str, Loc]] = [(str(k), ("require", str(k))) for k in raw.get("require", {})]
    for key in ("target", "escalate", "steps"):
        for text, loc in _strings(raw.get(key), (key,)):
            if "{" in text:
                reads.extend((label, loc) for label in sorted(label_reads(text)))
    return reads


def _mismatch(rule: RuleSpec, alert: PromAlert) -> str | None:
    """Why the rule's matchers never match this alert's labels, or None when they may."""
    for m in rule.match:
        if m.name == "alertname":
            continue
        value = alert.static_value(m.name)
        if value is None and alert.has(m.name) is not False:
            continue  # carried, with a value only the series tell
        if not m.matches({m.name: value or ""}):
            shown = f"{m.name}={value!r}" if value is not None else f"no {m.name} label"
            return f"{alert.where} ({alert.name}, {shown}) fails `{m}`"
    return None


def _check_reads(site: _Site, reads: list[tuple[str, Loc]], alert: PromAlert) -> PromReport:
    out = PromReport()
    for label, loc in reads:
        carried = alert.has(label)
        if carried is False:
            msg = (
                f"reads label {label!r}, which alert {alert.name} ({alert.where}) does not "
                f"carry: it carries {alert.labels_shown()}; add {label} to the expression's "
                f"`by (...)` or to its `labels:`, or stop reading it"
            )
            out.problems.append(site.problem(loc, msg))
        elif carried is None:
            msg = (
                f"reads label {label!r}: cannot tell whether alert {alert.name} "
                f"({alert.where}) carries it ({alert.labels_shown()})"
            )
            out.warnings.append(site.problem(loc, msg))
    for label, pattern in site.rule.require.items():
        value = alert.static_value(label)
        if value is not None and compile_regex(pattern).fullmatch(value) is None:
            msg = (
                f"alert {alert.name} ({alert.where}) has {label}={value!r}, which never "
                f"passes {pattern!r}: every one of its incidents would be refused"
            )
            out.problems.append(site.problem(("require", label), msg))
    return out


def _chain_of(site: _Site, alert: PromAlert, chains: set[str], out: PromReport) -> str | None:
    """The chain this rule pages for this alert: None when it has no `escalate`; "" when
    a templated one renders no chain (a problem, added to `out`) or cannot be told (a
    warning), so the alert is not reported again as reaching no chain."""
    escalate = site.rule.escalate
    if escalate is None or "{" not in escalate:
        return escalate
    reads = label_reads(escalate)
    if not all(alert.static_value(label) is not None for label in reads):
        msg = (
            f"escalate {escalate!r} reads labels alert {alert.name} ({alert.where}) does not "
            "fix in its `labels:`: cannot tell which chain it pages"
        )
        out.warnings.append(site.problem(("escalate",), msg))
        return ""
    static = {label: str(alert.static_value(label)) for label in reads}
    try:
        name = render(escalate, {"labels": static, "annotations": {}})
    except TemplateError:
        name = ""
    if name in chains:
        return name
    msg = (
        f"escalate {escalate!r} renders {name!r} for alert {alert.name} ({alert.where}, "
        f"{', '.join(f'{k}={v!r}' for k, v in static.items())}), which is no chain (chains: "
        f"{', '.join(sorted(chains))}); it would page escalate_fallback "
        f"{site.rule.escalate_fallback!r}: add a chain named {name!r}, or change the alert"
    )
    out.problems.append(site.problem(("escalate",), msg))
    return ""


def _check_chains(
    taken: dict[int, list[_Site]], alerts: list[PromAlert], chains: set[str], out: PromReport
) -> None:
    """A templated `escalate` renders a chain for every alert its rule takes; every alert
    with a static severity that rules take is paged through some chain."""
    for n, alert in enumerate(alerts):
        sites = taken.get(n, [])
        found = [_chain_of(site, alert, chains, out) for site in sites]
        severity = alert.static_value("severity")
        if severity is None or not sites or any(chain is not None for chain in found):
            continue
        names = ", ".join(site.rule.name for site in sites)
        msg = (
            f"takes alert {alert.name} ({alert.where}, severity={severity!r}), but no rule "
            f"taking it ({names}) escalates: add `escalate: CHAIN` (one of: "
            f"{', '.join(sorted(chains)) or 'none'})"
        )
        out.problems.append(sites[0].problem(("name",), msg))


def _sites(config: Config) -> list[_Site]:
    """Every rule with its document (re-read for lines: check has just loaded it)."""
    docs: dict[str, YamlDoc] = {}
    sites = []
    for rule in config.rules:
        file = config.rule_files[rule.name].rpartition(":")[0]
        if file not in docs:
            path = Path(file) if Path(file).is_absolute() else config.base_dir / file
            docs[file] = load_yaml(path, file)[0]
        doc = docs[file]
        index = next(i for i, r in enumerate(doc.data["rules"]) if r.get("name") == rule.name)
        sites.append(_Site(rule, doc, index))
    return sites


def _check_rule(
    site: _Site,
    alerts: list[PromAlert],
    where: str,
    taken: dict[int, list[_Site]],
    out: PromReport,
    external: frozenset[str] = frozenset(),
) -> None:
    names = alertnames(site.rule)
    if not names:
        msg = (
            "matches no alertname by name (`alertname = X`, or `=~` of names only): not "
            "checked against the Prometheus alerts"
        )
        out.warnings.append(site.problem(("match",), msg))
        return
    out.rules_checked += 1
    reads = rule_reads(site.doc.data["rules"][site.index])
    produced = {a.name for a in alerts}
    for k, name in names:
        same = [(n, a) for n, a in enumerate(alerts) if a.name == name]
        if not same and name in external:
            msg = f"alert {name!r} comes from outside Prometheus (--external-alert): not checked"
            out.warnings.append(site.problem(("match", k), msg))
            continue
        if not same:
            near = did_you_mean(name, produced)
            msg = f"alert {name!r} is produced by no alerting rule in {where}{near}"
            out.problems.append(site.problem(("match", k), msg))
            continue
        why_not = [(n, a, _mismatch(site.rule, a)) for n, a in same]
        if all(why for _, _, why in why_not):
            msg = f"no alert {name!r} has labels this rule matches: " + "; ".join(
                str(why) for _, _, why in why_not
            )
            out.problems.append(site.problem(("match", k), msg))
            continue
        for n, alert, why in why_not:
            if why is None:
                taken.setdefault(n, []).append(site)
                found = _check_reads(site, reads, alert)
                out.problems.extend(found.problems)
                out.warnings.extend(found.warnings)


def check_prometheus_rules(
    config: Config, paths: list[Path], external: frozenset[str] = frozenset()
) -> PromReport:
    """Cross-check the config's rules against the alerting rules in `paths`; alerts named
    in `external` come from elsewhere (amtool, another system) and need no rule there."""
    alerts, problems = load_prometheus_rules(paths)
    out = PromReport(problems=problems, alerts=len(alerts))
    taken: dict[int, list[_Site]] = {}
    where = ", ".join(str(p) for p in paths)
    for site in _sites(config):
        _check_rule(site, alerts, where, taken, out, external)
    _check_chains(taken, alerts, set(config.policies.escalations), out)
    return out
