"""Rule matching, `require` checks and target resolution."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from remediator.config.models import Config, Host, RuleSpec
from remediator.errors import TemplateError
from remediator.matchers import Op, compile_regex
from remediator.templates import render


class RuleSet:
    """Rules in file order; the first match owns an alert unless it says `continue`.

    Matching does not scan every rule: each rule with an equality matcher (`alertname`
    preferred) is indexed under that (label, value); an alert only tries the rules
    indexed under its own labels plus the few rules without any equality matcher, in
    file order, so the first-match semantics are those of a full scan.
    """

    def __init__(self, rules: Iterable[RuleSpec]) -> None:
        self.rules = tuple(rules)
        self.by_name = {r.name: r for r in self.rules}
        self._index: dict[str, dict[str, list[int]]] = {}
        self._scan: list[int] = []
        for position, rule in enumerate(self.rules):
            key = _index_key(rule)
            if key is None:
                self._scan.append(position)
            else:
                self._index.setdefault(key[0], {}).setdefault(key[1], []).append(position)
        self._indexed = tuple(self._index.items())

    def candidates(self, labels: dict[str, str]) -> list[int]:
        """Positions of the rules that could match, in file order. Cheap when there are
        none, as for most alerts of a storm no rule takes: no copy, no sort."""
        found: list[int] = []
        for name, by_value in self._indexed:
            value = labels.get(name)
            if value is not None and (positions := by_value.get(value)) is not None:
                found.extend(positions)
        if self._scan:
            found.extend(self._scan)
        if len(found) > 1:
            found.sort()
        return found

    def match(self, labels: dict[str, str]) -> list[RuleSpec]:
        """The rules that take this alert."""
        out = []
        for position in self.candidates(labels):
            rule = self.rules[position]
            if all(m.matches(labels) for m in rule.match):
                out.append(rule)
                if not rule.continue_:
                    break
        return out


class MatchCache:
    """`RuleSet.match` once per distinct label set, for one batch of alerts: a storm's
    notifications repeat the same alerts (Alertmanager re-sends a group's whole list at
    each change), and matching them again finds the same rules. Lives as long as the
    batch (its entries are the batch's own labels), so a reload's new set is never missed."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self._found: dict[object, tuple[dict[str, str], tuple[RuleSpec, ...]]] = {}

    def __call__(self, labels: dict[str, str], name: str | None = None) -> tuple[RuleSpec, ...]:
        """The rules taking `labels`. `name` is a cheap key for the label set (the alert's
        fingerprint, a hash of its labels); a hit still compares the labels themselves:
        a sender's fingerprint is no proof of them."""
        key = name if name is not None else frozenset(labels.items())
        seen = self._found.get(key)
        if seen is not None and seen[0] == labels:
            return seen[1]
        if not self.rules.candidates(labels):
            return ()  # no rule could take it (most of a storm): nothing worth keeping
        found = tuple(self.rules.match(labels))
        self._found[key] = (labels, found)
        return found


def _index_key(rule: RuleSpec) -> tuple[str, str] | None:
    """The (label, value) an alert must carry for this rule to match, if any."""
    equal = [m for m in rule.match if m.op is Op.EQ and m.value != ""]
    if not equal:
        return None
    best = next((m for m in equal if m.name == "alertname"), equal[0])
    return best.name, best.value


def _shown(value: str) -> str:
    return repr(value if len(value) <= 200 else value[:200] + "...")


def check_require(rule: RuleSpec, labels: dict[str, str]) -> str | None:
    """None when every `require` pattern matches the whole value (as Go reads it), else why not."""
    for name, pattern in rule.require.items():
        value = labels.get(name)
        if value is None:
            return f"require: label {name!r} is missing"
        if compile_regex(pattern).fullmatch(value) is None:
            return f"require: label {name}={_shown(value)} does not match {pattern!r}"
    return None


def alert_context(labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    """Template context before the target is known."""
    return {"labels": dict(labels), "annotations": dict(annotations)}


def host_context(host: Host) -> dict[str, Any]:
    """`target` in templates."""
    return {
        "name": host.name,
        "address": host.address,
        "port": host.port,
        "user": host.user,
        "groups": list(host.groups),
    }


@dataclass(frozen=True)
class TargetResult:
    """A resolved target host, or why there is none."""

    host: Host | None
    rendered: str | None
    error: str | None


def resolve_target(config: Config, rule: RuleSpec, context: dict[str, Any]) -> TargetResult:
    """Render `target` and look it up in the inventory; never invents a host."""
    if rule.target is None:
        return TargetResult(None, None, None)
    try:
        rendered = render(rule.target, context).strip()
    except TemplateError as exc:
        return TargetResult(None, None, f"target: {exc}")
    if not rendered:
        # Never "every host", never a host whose address happens to be empty.
        why = "target rendered empty (a label it names is empty?): refused, no host acted on"
        return TargetResult(None, rendered, why)
    host = config.host_by_name_or_address(rendered)
    if host is None:
        return TargetResult(None, rendered, f"target {_shown(rendered)} is not in the inventory")
    return TargetResult(host, rendered, None)
