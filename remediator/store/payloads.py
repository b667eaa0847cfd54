"""What the store keeps as JSON, typed: one payload per outbox kind and the pause switch.

Each is a frozen msgspec Struct written as the JSON object earlier versions wrote (same
keys; an unset optional key is left out), so rows already stored read as before. A row
that does not read as its kind's type (written by hand, or by a version that changed the
shape) is `Unreadable`: the outbox loop keeps it as a dead letter, it never stops the loop.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from remediator.store.records import OutboxKind


class SlackPost(msgspec.Struct, frozen=True):
    """A page to a channel or user (one step of an escalation chain)."""

    kind: ClassVar[OutboxKind] = OutboxKind.SLACK_POST
    incident_id: int
    reason: str
    position: str  # "escalation ops: step 1 of 2"


class SlackSync(msgspec.Struct, frozen=True):
    """Post, or update in place, the message kept for `key` ("incident:7", "approval:3")."""

    kind: ClassVar[OutboxKind] = OutboxKind.SLACK_SYNC
    key: str

    @property
    def approval_id(self) -> int | None:
        """The approval this message shows, when it shows one."""
        kind, _, ident = self.key.partition(":")
        return int(ident) if kind == "approval" else None


class SlackThread(msgspec.Struct, frozen=True):
    """A line in the thread of an incident's message."""

    kind: ClassVar[OutboxKind] = OutboxKind.SLACK_THREAD
    incident_id: int
    text: str


class SlackEphemeral(msgspec.Struct, frozen=True):
    """A reply only `user` sees."""

    kind: ClassVar[OutboxKind] = OutboxKind.SLACK_EPHEMERAL
    user: str
    text: str


class Email(msgspec.Struct, frozen=True, omit_defaults=True):
    """A page by email: of an incident (`incident_id`), or of an approval request Slack
    could not deliver (`key` "approval:N"); `fallback_for` and `error` when it stands in
    for a Slack delivery that failed."""

    kind: ClassVar[OutboxKind] = OutboxKind.EMAIL
    incident_id: int | None = None
    key: str | None = None
    reason: str = ""
    position: str = ""
    fallback_for: str | None = None
    error: str | None = None


OutboxPayload = SlackPost | SlackSync | SlackThread | SlackEphemeral | Email
PAYLOADS: dict[OutboxKind, type[OutboxPayload]] = {
    p.kind: p for p in (SlackPost, SlackSync, SlackThread, SlackEphemeral, Email)
}


class Unreadable(msgspec.Struct, frozen=True):
    """A stored payload that is not its kind's type: what was stored and why it is not."""

    raw: Any
    error: str


def read_payload(kind: OutboxKind, raw: Any) -> OutboxPayload | Unreadable:
    """A stored payload as its kind's type, or Unreadable (never raises)."""
    try:
        return msgspec.convert(raw, PAYLOADS[kind])
    except msgspec.ValidationError as exc:
        return Unreadable(raw, f"not a {kind.value} payload: {exc}")


def fallback_email(payload: OutboxPayload | Unreadable, error: str) -> Email | None:
    """The email standing in for a Slack delivery given up (None: nothing to stand in for)."""
    if isinstance(payload, SlackPost):
        return Email(
            incident_id=payload.incident_id,
            reason=payload.reason,
            position=payload.position,
            fallback_for=payload.kind.value,
            error=error,
        )
    if isinstance(payload, SlackSync) and payload.approval_id is not None:
        return Email(key=payload.key, fallback_for=payload.kind.value, error=error)
    return None


class Pause(msgspec.Struct, frozen=True):
    """The global pause switch (settings row "pause"): on, why, since when."""

    paused: bool = False
    reason: str | None = None
    since: float | None = None


def to_json(value: msgspec.Struct) -> dict[str, Any]:
    """The JSON object a Struct is stored as."""
    out: dict[str, Any] = msgspec.to_builtins(value)
    return out
