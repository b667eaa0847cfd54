"""Rule matching, `require` checks and target resolution."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from remediator.config.models import Config, Host, RuleSpec
from remediator.errors import TemplateError
from remediator.templates import render


class RuleSet:
    """Rules in file order; the first match owns an alert unless it says `continue`."""

    def __init__(self, rules: Iterable[RuleSpec]) -> None:
        self.rules = tuple(rules)
        self.by_name = {r.name: r for r in self.rules}

    def match(self, labels: dict[str, str]) -> list[RuleSpec]:
        """The rules that take this alert."""
        out = []
        for rule in self.rules:
            if all(m.matches(labels) for m in rule.match):
                out.append(rule)
                if not rule.continue_:
                    break
        return out


def _shown(value: str) -> str:
    return repr(value if len(value) <= 200 else value[:200] + "...")


def check_require(rule: RuleSpec, labels: dict[str, str]) -> str | None:
    """None when every `require` pattern fully matches, else why not."""
    for name, pattern in rule.require.items():
        value = labels.get(name)
        if value is None:
            return f"require: label {name!r} is missing"
        if re.fullmatch(pattern, value) is None:
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
    host = config.host_by_name_or_address(rendered)
    if host is None:
        return TargetResult(None, rendered, f"target {_shown(rendered)} is not in the inventory")
    return TargetResult(host, rendered, None)
