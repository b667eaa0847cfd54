"""How the CLI shows the admin API's answers: rich tables for people, JSON for scripts.

Every value that came from the fleet (labels, rule names, commands, audit details) is
hostile: it goes into a `Text`, never a markup string, so `[red]` and `:emoji:` stay
literal, and non-printable characters (terminal escapes) are shown as `\\x1b`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from remediator.actions.approval import policy_of
from remediator.apimodels import (
    ApprovalOut,
    AuditEntry,
    AuditRecord,
    IncidentDetail,
    IncidentSummary,
    PauseState,
    ReplicaList,
    StepOut,
)
from remediator.notify.commandtext import command_lines, describe_command
from remediator.notify.text import visible
from remediator.store.records import CLOSED_STATES, DeadLetter, State, TargetHealth

STATE_STYLES = {
    State.AWAITING_APPROVAL: "bold magenta",
    State.RUNNING: "cyan",
    State.VERIFYING: "cyan",
    State.EXHAUSTED: "red",
    State.ESCALATING: "bold red",
    State.ACKNOWLEDGED: "yellow",
    State.REMEDIATED: "green",
    State.RESOLVED: "green",
}
PIPE_WIDTH = 160  # when stdout is not a terminal: wide enough that rows rarely wrap


def console() -> Console:
    """stdout; colours only on a terminal (rich decides), no guessing of highlights."""
    width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else PIPE_WIDTH
    return Console(highlight=False, width=width)


def print_json(value: Any) -> None:
    """Raw JSON for scripts, as the daemon sent it."""
    print(json.dumps(value, indent=2, sort_keys=True))


def safe(value: object) -> Text:
    """A value from the fleet as literal text, non-printable characters escaped."""
    return Text("-" if value is None else visible(value))


def when(ts: float | None) -> str:
    """Epoch seconds as local time."""
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _state(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(State(state), ""))


def _table(title: str | None, columns: Iterable[str]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold")
    for name in columns:
        table.add_column(name, overflow="fold")
    return table


def incidents_table(incidents: list[IncidentSummary]) -> Table:
    """GET /api/incidents as a table."""
    table = _table(None, ["ID", "STATE", "RULE", "TARGET", "ALERT", "STARTED", "UPDATED"])
    for i in incidents:
        table.add_row(
            str(i.id),
            _state(i.state),
            safe(i.rule),
            safe(i.target),
            safe(i.labels.get("alertname", "")),
            when(i.started_at),
            when(i.updated_at),
        )
    return table


def replicas_table(listing: ReplicaList) -> Table:
    """GET /api/replicas as a table; a hash other than the answering replica's in red."""
    table = _table(None, ["NAME", "ID", "CONFIG", "VERSION", "LISTEN", "STARTED", "LAST SEEN"])
    for r in listing.replicas:
        config = Text(r.config_hash, style="" if r.same_config else "bold red")
        if not r.same_config:
            config.append(" (differs)")
        table.add_row(
            safe(r.name) + Text(" *" if r.is_self else ""),
            safe(r.id),
            config,
            safe(r.version),
            safe(r.listen),
            when(r.started_at),
            when(r.last_seen_at),
        )
    return table


def _summary(i: IncidentDetail) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    closed = "closed" if i.state in CLOSED_STATES else "open"
    grid.add_row("incident", Text.assemble(f"{i.id} ", _state(i.state), f" ({closed})"))
    grid.add_row("rule", safe(i.rule))
    grid.add_row("target", safe(i.target))
    labels = " ".join(f"{k}={v}" for k, v in sorted(i.labels.items()))
    grid.add_row("labels", safe(labels))
    grid.add_row("started", when(i.started_at))
    grid.add_row("updated", when(i.updated_at))
    if i.silence_id is not None:
        grid.add_row("silence", safe(f"{i.silence_id} (Alertmanager, while steps work)"))
    for link in i.links:
        grid.add_row(link.title.lower(), safe(link.url))
    if i.escalation is not None:
        e = i.escalation
        stopped = f", stopped by {e.stopped_by}" if e.stopped_by else ""
        grid.add_row(
            "escalation", safe(f"{e.chain}: {e.state} since {when(e.started_at)}{stopped}")
        )
    return grid


def _steps(steps: list[StepOut]) -> Table:
    table = _table("Steps", ["#", "ACTION", "STATE", "STARTED", "FINISHED", "EXIT", "COMMAND"])
    for s in steps:
        command = safe(describe_command(s.command))
        if s.error:
            command.append("\nerror: ", style="red").append_text(safe(s.error))
        exit_status = "-" if s.exit_status is None else str(s.exit_status)
        table.add_row(
            str(s.step + 1),  # counted from 1, as in every message
            safe(s.action),
            safe(s.state),
            when(s.started_at),
            when(s.finished_at),
            exit_status,
            command,
        )
    return table


def _approvals(approvals: list[ApprovalOut]) -> Table:
    columns = ["ID", "STEP", "ACTION", "POLICY", "STATE", "NEEDS", "EXPIRES", "DECIDED BY"]
    table = _table("Approvals", columns)
    for a in approvals:
        table.add_row(
            str(a.id),
            str(a.step + 1),
            Text.assemble(safe(a.action), "\n", "\n".join(command_lines(a.command))),
            safe(policy_of(a.command)),
            safe(a.state),
            str(a.required),
            when(a.expires_at),
            safe(a.decided_by),
        )
    return table


def audit_table(rows: list[AuditRecord]) -> Table:
    """GET /api/audit: when, which incident, what, and its detail."""
    table = _table("Audit", ["AT", "INCIDENT", "EVENT", "DETAIL"])
    for a in rows:
        incident = str(a.incident) if a.incident is not None else "-"
        table.add_row(a.at, incident, safe(a.event), safe(json.dumps(a.detail, sort_keys=True)))
    return table


def _audit(audit: list[AuditEntry]) -> Table:
    table = _table("Audit", ["AT", "EVENT", "DETAIL"])
    for a in audit:
        table.add_row(when(a.at), safe(a.event), safe(json.dumps(a.detail, sort_keys=True)))
    return table


def incident_view(i: IncidentDetail) -> RenderableType:
    """GET /api/incidents/{id}: summary, then steps, approvals and audit tables."""
    steps = _steps(i.steps) if i.steps else Text("Steps: none run", style="bold")
    parts: list[RenderableType] = [_summary(i), Text(), steps]
    if i.approvals:
        parts += [Text(), _approvals(i.approvals)]
    parts += [Text(), _audit(i.audit)]
    return Group(*parts)


def pause_line(state: PauseState) -> Text:
    """The pause switch in one line."""
    word = "paused" if state.paused else "running"
    line = Text(f"automation {word} since {when(state.since)}")
    if state.reason:
        line.append(": ").append_text(safe(state.reason))
    return line


def quarantine_table(rows: list[TargetHealth]) -> Table:
    """Quarantined (rule, target) pairs; reasons may carry remote output, so escaped."""
    table = _table(None, ["RULE", "TARGET", "FAILURES", "SINCE", "REASON"])
    for q in rows:
        table.add_row(
            safe(q.rule), safe(q.target), str(q.failures), when(q.quarantined_at), safe(q.reason)
        )
    return table


def dead_letters_table(rows: list[DeadLetter]) -> Table:
    """Dead letters, newest first; errors may quote fleet text, so escaped."""
    table = _table(None, ["ID", "AT", "LOOP", "ITEM", "INCIDENT", "ERROR"])
    for d in rows:
        incident = str(d.incident_id) if d.incident_id is not None else "-"
        table.add_row(str(d.id), when(d.at), d.loop, safe(d.item), incident, safe(d.error))
    return table
