"""Slack messages (text + Block Kit) for incidents, approvals and pages.

Labels come from the monitored fleet: every value is escaped for mrkdwn (`&`, `<`, `>`),
so a label can never mention `@channel`, a user or smuggle a link; non-printable
characters are shown escaped (`notify.text`); and a backtick in a value is shown as
U+02CB (the modifier letter grave accent, which looks alike), so a label can neither end
a code span the message opened nor open one of its own. Label values are clipped to LABEL_LIMIT
characters, and an approval request shows its whole command in code blocks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from remediator.actions.approval import policy_of
from remediator.notify.commandtext import command_lines
from remediator.notify.text import ELLIPSIS, clip, one_line, visible
from remediator.notify.views import ApprovalView, IncidentView
from remediator.store.records import ApprovalState, EscalationState, State

Blocks = list[dict[str, Any]]
MAX_LABELS = 20
LABEL_LIMIT = 200  # characters of one label value shown in Slack
SECTION_LIMIT = 2900  # Slack refuses a section text over 3,000 characters
CODE_LIMIT = 2800  # characters of one code block, escaped, fences aside
WRAP_AT = 500  # command lines longer than this are wrapped (escaping may make them 5x longer)
MAX_COMMAND_BLOCKS = 12  # code blocks of one approval request (a message holds 50 blocks)
BACKTICK_STAND_IN = "\u02cb"
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
    """Escape text for Slack mrkdwn: no mention, link, code span or hidden character."""
    text = visible(value, keep_newlines=True)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("`", BACKTICK_STAND_IN)


def code(value: object, limit: int = LABEL_LIMIT) -> str:
    """A value as an inline code span, on one line, clipped: nothing in it can end the span."""
    return f"`{esc(one_line(value, limit))}`"


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_LIMIT)}}


def _labels(view: IncidentView) -> str:
    lines, used = [], 0
    items = sorted(view.incident.labels.items())
    for n, (k, v) in enumerate(items[:MAX_LABELS]):
        line = f"{code(k, 100)} = {code(v)}"
        if used + len(line) > SECTION_LIMIT - 100:
            lines.append(f"{ELLIPSIS} {len(items) - n} more labels")
            return "\n".join(lines)
        lines.append(line)
        used += len(line) + 1
    if len(items) > MAX_LABELS:
        lines.append(f"{ELLIPSIS} {len(items) - MAX_LABELS} more labels")
    return "\n".join(lines) or "(no labels)"


def _steps(view: IncidentView) -> str:
    if not view.steps:
        return "no step has run"
    return "\n".join(
        f"{s.step_index + 1}. {code(s.action)}: {s.state.value}"
        + (f" (exit {s.exit_status})" if s.exit_status is not None else "")
        for s in view.steps
    )


def _wrap(line: str) -> list[str]:
    """Cut a long line at spaces where it can (never inside an address), marking the rest."""
    pieces = []
    while len(line) > WRAP_AT:
        comma = line.rfind(", ", WRAP_AT // 2, WRAP_AT)  # between list items, first
        cut = comma + 1 if comma > 0 else line.rfind(" ", WRAP_AT // 2, WRAP_AT)
        cut = cut if cut > 0 else WRAP_AT
        pieces.append(line[:cut])
        line = "\u21aa " + line[cut:].lstrip(" ")
    return [*pieces, line]


def command_blocks(command: Any) -> tuple[list[str], bool]:
    """The whole command as code blocks that fit Slack; False when it had to be cut short."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for raw in command_lines(command):
        for piece in _wrap(raw):
            line = esc(piece)
            if current and size + len(line) + 1 > CODE_LIMIT:
                chunks.append("\n".join(current))
                current, size = [], 0
            current.append(line)
            size += len(line) + 1
    if current:
        chunks.append("\n".join(current))
    shown = [f"```\n{chunk}\n```" for chunk in chunks[:MAX_COMMAND_BLOCKS]]
    return shown, len(chunks) <= MAX_COMMAND_BLOCKS


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
    # A `page_at_start` chain acknowledged while automation runs: no second Acknowledge.
    e = view.escalation
    paging_acked = e is not None and e.state is EscalationState.ACKNOWLEDGED
    if view.incident.is_open and view.incident.state is not State.ACKNOWLEDGED and not paging_acked:
        elements.append(ack_button(view.incident.id))
    if view.link:
        elements.append(_link_button("link", "Details", view.link))
    for link in view.links:
        elements.append(_link_button(f"link_{link.title.lower()}", link.title, link.url))
    return [{"type": "actions", "elements": elements}] if elements else []


def _link_button(action_id: str, title: str, url: str) -> dict[str, Any]:
    """A button that opens `url` (Slack still sends its click: slackapp ignores it)."""
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": title},
        "url": url,
        "action_id": action_id,
    }


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


def _approval_head(view: ApprovalView) -> str:
    a, inc = view.approval, view.incident
    command = a.command if isinstance(a.command, dict) else {}
    where = f" on {code(command['host'])}" if "host" in command else ""
    if isinstance(command.get("parts"), list):
        where = f" ({len(command['parts'])} parts run together)"
    return (
        f":raised_hand: *Approval needed* for {esc(inc.title)}\n"
        f"step {a.step_index + 1}: {code(a.action)}{where}, for the approvers of policy "
        f"{code(policy_of(a.command))}, exactly this:"
    )


def _decide_buttons(view: ApprovalView, whole: bool) -> Blocks:
    a, inc = view.approval, view.incident
    for_whom = f"step {a.step_index + 1} ({a.action}) of incident #{inc.incident.id}"
    deny = _button("deny", "Deny", str(a.id), "danger") | {
        "confirm": _confirm("Deny?", f"Do not run {esc(for_whom)}.", "Deny")
    }
    if not whole:  # nobody approves what they could not read
        return [{"type": "actions", "elements": [deny]}]
    approve = _button("approve", "Approve", str(a.id), "primary") | {
        "confirm": _confirm("Approve?", f"Run {esc(for_whom)} now.", "Approve")
    }
    return [{"type": "actions", "elements": [approve, deny]}]


def approval_message(view: ApprovalView) -> tuple[str, Blocks]:
    """An approval request showing the whole command; its buttons disappear once decided."""
    a, inc = view.approval, view.incident
    shown, whole = command_blocks(a.command)
    blocks: Blocks = [_section(_approval_head(view)), *(_section(c) for c in shown)]
    if not whole:
        ident = inc.incident.id
        blocks.append(
            _section(
                f"*Too long to show here whole*: read it with `remediator show {ident}`, "
                f"then decide there (`remediator approve {ident}` or `deny {ident}`)."
            )
        )
    if a.state is ApprovalState.PENDING:
        approvals = [v for v in view.votes if v.decision == "approve"]
        status = f"{len(approvals)} of {a.required} approvals; expires {_when(a.expires_at)}"
        blocks += [_section(status), *_decide_buttons(view, whole)]
    else:
        by = f" by {esc(a.decided_by)}" if a.decided_by else ""
        why = f": {esc(a.reason)}" if a.reason else ""
        blocks.append(_section(f"*{a.state.value}*{by}{why}"))
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
    return f"Page: {esc(view.title)}: {esc(one_line(reason, 300))}", blocks + _actions(view)
