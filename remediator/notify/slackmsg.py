"""Slack messages (text + Block Kit) for incidents, approvals and pages.

Labels come from the monitored fleet: every value is escaped for mrkdwn (`&`, `<`, `>`),
so a label can never mention `@channel`, a user or smuggle a link.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import Any

from remediator.notify.views import ApprovalView, IncidentView
from remediator.store.records import ApprovalState, State

Blocks = list[dict[str, Any]]
MAX_LABELS = 20
STATE_ICON = {
    State.PENDING: ":hourglass_flowing_sand:",
    State.AWAITING_APPROVAL: ":raised_hand:",
    State.RUNNING: ":gear:",
    State.VERIFYING: ":mag:",
    State.EXHAUSTED: ":rotating_light:",
    State.ESCALATING: ":rotating_light:",
    State.ACKNOWLEDGED: ":eyes:",
    State.REMEDIATED: ":white_check_mark:",
    State.RESOLVED: ":white_check_mark:",
}


def esc(value: object) -> str:
    """Escape text for Slack mrkdwn."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}


def _labels(view: IncidentView) -> str:
    items = sorted(view.incident.labels.items())[:MAX_LABELS]
    return "\n".join(f"`{esc(k)}` = `{esc(v)}`" for k, v in items) or "(no labels)"


def _steps(view: IncidentView) -> str:
    if not view.steps:
        return "no step has run"
    return "\n".join(
        f"{s.step_index + 1}. `{esc(s.action)}`: {s.state.value}"
        + (f" (exit {s.exit_status})" if s.exit_status is not None else "")
        for s in view.steps
    )


def describe_command(command: Any) -> str:
    """One line for a step's planned command (argv lists, an HTTP request or a message)."""
    if not isinstance(command, dict):
        return str(command)
    host = f" on {command['host']}" if "host" in command else ""
    if command.get("commands"):
        return "; ".join(shlex.join(c) for c in command["commands"]) + host
    if command.get("request"):
        req = command["request"]
        return f"{req.get('method', 'POST')} {req.get('url', '')}"
    return str(command.get("message") or command.get("action", ""))


def _button(action_id: str, text: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text},
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def _confirm(title: str, text: str, confirm: str) -> dict[str, Any]:
    return {
        "title": {"type": "plain_text", "text": title},
        "text": {"type": "mrkdwn", "text": text[:300]},
        "confirm": {"type": "plain_text", "text": confirm},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }


def ack_button(incident_id: int) -> dict[str, Any]:
    """Acknowledge: stops the escalation chain."""
    return _button("ack", "Acknowledge", str(incident_id))


def _actions(view: IncidentView) -> Blocks:
    elements = []
    if view.incident.is_open and view.incident.state is not State.ACKNOWLEDGED:
        elements.append(ack_button(view.incident.id))
    if view.link:
        elements.append(
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Details"},
                "url": view.link,
                "action_id": "link",
            }
        )
    return [{"type": "actions", "elements": elements}] if elements else []


def incident_message(view: IncidentView) -> tuple[str, Blocks]:
    """The incident's message in the main channel, updated in place as it moves."""
    i = view.incident
    state = i.state.value.replace("_", " ")
    head = f"{STATE_ICON[i.state]} *{esc(view.title)}*: {state}"
    text = f"{head}\n{esc(i.annotations.get('summary', ''))}".rstrip()
    extra = []
    if view.escalation is not None:
        e = view.escalation
        stopped = f", stopped by {esc(e.stopped_by)}" if e.stopped_by else ""
        extra.append(f"escalation `{esc(e.chain)}`: {e.state.value}{stopped} ({esc(e.reason)})")
    blocks: Blocks = [
        _section(text),
        _section(f"*Steps*\n{_steps(view)}"),
        _section(f"*Labels*\n{_labels(view)}"),
    ]
    if extra:
        blocks.append(_section("\n".join(extra)))
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"opened {_when(i.created_at)}"}],
        }
    )
    return f"{esc(view.title)}: {state}", blocks + _actions(view)


def approval_message(view: ApprovalView) -> tuple[str, Blocks]:
    """An approval request; its buttons disappear once it is decided."""
    a, inc = view.approval, view.incident
    ask = (
        f":raised_hand: *Approval needed* for {esc(inc.title)}\n"
        f"step {a.step_index + 1}: `{esc(a.action)}`: `{esc(describe_command(a.command))}`"
    )
    approvals = [v for v in view.votes if v.decision == "approve"]
    if a.state is ApprovalState.PENDING:
        status = f"{len(approvals)} of {a.required} approvals; expires {_when(a.expires_at)}"
        for_whom = f"step {a.step_index + 1} ({a.action}) of incident #{inc.incident.id}"
        buttons = [
            _button("approve", "Approve", str(a.id), "primary")
            | {"confirm": _confirm("Approve?", f"Run {esc(for_whom)} now.", "Approve")},
            _button("deny", "Deny", str(a.id), "danger")
            | {"confirm": _confirm("Deny?", f"Do not run {esc(for_whom)}.", "Deny")},
        ]
        blocks: Blocks = [_section(ask), _section(status), {"type": "actions", "elements": buttons}]
    else:
        by = f" by {esc(a.decided_by)}" if a.decided_by else ""
        why = f": {esc(a.reason)}" if a.reason else ""
        blocks = [_section(ask), _section(f"*{a.state.value}*{by}{why}")]
    return f"Approval needed for {esc(inc.title)}: {a.state.value}", blocks


def page_message(view: IncidentView, reason: str, position: str) -> tuple[str, Blocks]:
    """A page from an escalation chain, with an Acknowledge button."""
    i = view.incident
    text = (
        f":rotating_light: *{esc(view.title)}* needs a human ({esc(position)})\n"
        f"{esc(reason)}\n{esc(i.annotations.get('summary', ''))}"
    ).rstrip()
    blocks: Blocks = [
        _section(text),
        _section(f"*Steps tried*\n{_steps(view)}"),
        _section(f"*Labels*\n{_labels(view)}"),
    ]
    return f"Page: {esc(view.title)}: {esc(reason)}", blocks + _actions(view)
