"""`remediator test FILE...`: rule unit tests, like `promtool test rules`.

A test file lists cases; each case sends alerts (and human decisions) at times relative
to its start through the real engine in dry-run on a fake clock, then compares every
decision the engine made with the expected ones, in order. An expected decision names
only the fields it cares about (`at` and the decision itself at least); a case fails when
a decision is missing, different, or unexpected, and prints a diff.

```yaml
tests:
  - name: node down is restarted, then paged when it stays down
    alerts:
      - {at: 0s, labels: {alertname: NodeDown, severity: critical, instance: "validator1:9100"}}
    until: 30m
    expect:
      - {at: 0s, incident: 1, matched: restart-unresponsive-node, target: validator1}
      - {at: 0s, incident: 1, run: restart_service, step: 1, host: validator1}
      - {at: 5m, incident: 1, exhausted: alert still firing after the last step}
      - {at: 5m, incident: 1, escalate: critical}
      - {at: 5m, incident: 1, page: ["slack:#ops-team-alerts"], chain: critical, step: 1}
```
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from remediator.config.durations import parse_duration
from remediator.config.loader import validate
from remediator.config.models import Config, Duration, Model
from remediator.config.problems import Problem
from remediator.config.yamlfile import load_yaml
from remediator.simulate import Decision, Simulation, flow, format_at

DEFAULT_UNTIL = 3600.0  # how long a case runs after its last input, unless `until:` says


class AlertInput(Model):
    """One alert in one webhook notification, at a time relative to the case's start."""

    at: Duration
    status: Literal["firing", "resolved"] = "firing"
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    # When the alert started firing; default: when these labels last started firing
    # (a firing after a resolved one is a new instance, as in Alertmanager).
    starts_at: Duration | None = None


class HumanInput(Model):
    """A human's decision on an incident: exactly one of approve, deny, ack (who decides)."""

    at: Duration
    incident: int = Field(default=1, ge=1)
    approve: str | None = None
    deny: str | None = None
    ack: str | None = None

    @model_validator(mode="after")
    def _one(self) -> HumanInput:
        given = [k for k in ("approve", "deny", "ack") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of approve, deny, ack (the person deciding)")
        return self

    @property
    def decision(self) -> tuple[str, str]:
        """(approve|deny|ack, who)."""
        for kind in ("approve", "deny", "ack"):
            who = getattr(self, kind)
            if who is not None:
                return kind, who
        raise AssertionError("validated to have one")


class Case(Model):
    """One test case."""

    name: str = Field(min_length=1)
    start: datetime | None = None  # wall-clock start (UTC), e.g. inside a maintenance window
    alerts: list[AlertInput] = Field(min_length=1)
    humans: list[HumanInput] = Field(default_factory=list)
    until: Duration | None = None
    expect: list[dict[str, Any]]

    @field_validator("expect")
    @classmethod
    def _expectations(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, item in enumerate(value):
            if "at" not in item:
                raise ValueError(f"expect[{i}]: every expected decision needs `at`")
            parse_duration(item["at"])
            if len(set(item) - {"at", "incident"}) == 0:
                raise ValueError(f"expect[{i}]: say what was decided (run, page, closed...)")
        return value


class TestFile(Model):
    """A `remediator test` file."""

    tests: list[Case] = Field(min_length=1)


@dataclass
class CaseResult:
    """How one case went."""

    file: str
    line: int
    name: str
    actual: list[Decision]
    diff: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Passed."""
        return not self.diff and self.error is None


def load_tests(path: Path) -> tuple[TestFile | None, list[int], list[Problem]]:
    """Parse a test file; returns the file, each case's line, and any problems."""
    doc, problems = load_yaml(path, str(path))
    if problems:
        return None, [], problems
    parsed, problems = validate(doc, TestFile)
    if parsed is None:
        return None, [], problems
    return parsed, [doc.line_of(("tests", i)) for i in range(len(parsed.tests))], []


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _body(alert: AlertInput, starts_at: float) -> str:
    item: dict[str, Any] = {
        "status": alert.status,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "startsAt": _iso(starts_at),
    }
    return json.dumps({"version": "4", "status": alert.status, "alerts": [item]})


async def run_case(sim: Simulation, case: Case) -> list[Decision]:
    """Feed the case's inputs in time order; return every decision made."""
    inputs: list[tuple[float, int, AlertInput | HumanInput]] = [
        *((a.at, 0, a) for a in case.alerts),
        *((h.at, 1, h) for h in case.humans),
    ]
    inputs.sort(key=lambda x: (x[0], x[1]))
    firing: dict[str, float] = {}  # labels -> startsAt of the instance firing now
    decisions: list[Decision] = []
    for at, _, item in inputs:
        await sim.run_until(at)
        if isinstance(item, AlertInput):
            key = json.dumps(item.labels, sort_keys=True)
            started = item.starts_at if item.starts_at is not None else firing.get(key, at)
            if item.status == "firing":
                firing.setdefault(key, started)
            else:
                firing.pop(key, None)  # firing again later is a new alert instance
            await sim.send(_body(item, sim.start + started))
        else:
            kind, who = item.decision
            await sim.decide(item.incident, kind, who)
    last = inputs[-1][0]
    await sim.run_until(case.until if case.until is not None else last + DEFAULT_UNTIL)
    decisions.extend(await sim.decisions())
    return decisions


def _render(item: dict[str, Any]) -> str:
    return "- " + flow(item)


def _normal(expected: dict[str, Any]) -> dict[str, Any]:
    out = dict(expected)
    out["at"] = format_at(parse_duration(out["at"]))
    return out


def _kind(decision: dict[str, Any]) -> str:
    """The key naming what was decided (run, page, closed...)."""
    return next(k for k in decision if k not in ("at", "incident"))


def compare(expected: list[dict[str, Any]], actual: list[Decision]) -> list[str]:
    """A unified diff (empty when they agree); fields an expectation omits are not compared."""
    want = [_normal(e) for e in expected]
    got = [a.as_dict() for a in actual]
    left = [_render(w) for w in want]
    right = []
    for i, g in enumerate(got):
        w = want[i] if i < len(want) else None
        if w is not None and _kind(w) in g:
            right.append(_render({k: g[k] for k in w if k in g}))  # only the compared fields
        else:
            right.append(_render(g))
    if left == right:
        return []
    return list(difflib.unified_diff(left, right, "expected", "actual", lineterm="", n=2))


async def run_file(path: Path, config: Config) -> tuple[list[CaseResult], list[Problem]]:
    """Run every case of one file, each on its own fresh store."""
    parsed, lines, problems = load_tests(path)
    if parsed is None:
        return [], problems
    results = []
    for case, line in zip(parsed.tests, lines, strict=True):
        begin = case.start
        if begin is not None and begin.tzinfo is None:
            begin = begin.replace(tzinfo=UTC)  # documented as UTC, never the machine's zone
        start = begin.timestamp() if begin is not None else None
        result = CaseResult(str(path), line, case.name, [])
        try:
            async with Simulation(config, **({"start": start} if start else {})) as sim:
                result.actual = await run_case(sim, case)
        except (ValidationError, ValueError) as exc:
            result.error = f"an input is not a valid webhook: {exc}"
        else:
            result.diff = compare(case.expect, result.actual)
        results.append(result)
    return results, []


def report(result: CaseResult, show: bool) -> list[str]:
    """Lines to print for one case."""
    head = f"{result.file}:{result.line}: {result.name}"
    if result.error:
        return [f"FAIL {head}", f"  {result.error}"]
    lines = [f"{'ok  ' if result.ok else 'FAIL'} {head}"]
    if not result.ok:
        lines.append("  decisions differ (- expected, + actual):")
        lines += [f"  {d}" for d in result.diff]
    if show:
        lines.append("  actual decisions (paste under `expect:` once they are right):")
        lines += [f"    {_render(d.as_dict())}" for d in result.actual]
    return lines
