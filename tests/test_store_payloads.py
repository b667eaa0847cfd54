"""What the store keeps as JSON, typed: outbox payloads per kind, the pause switch and audit
entries, read and written as the JSON earlier versions stored (both backends)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import insert, select

from remediator.store import PostgresStore, SqliteStore, schema
from remediator.store.events import (
    AuditEntry,
    EscalationStopped,
    Event,
    Exhausted,
    Matched,
    NotificationFailed,
    PagingAcknowledged,
    Resumed,
    StepScheduled,
)
from remediator.store.payloads import (
    Email,
    OutboxPayload,
    Pause,
    SlackEphemeral,
    SlackPost,
    SlackSync,
    SlackThread,
    Unreadable,
)
from remediator.store.records import OutboxKind

AnyStore = SqliteStore | PostgresStore

# Each kind's payload as the version before typed payloads wrote it, and as it reads now.
STORED: list[tuple[OutboxKind, dict[str, Any], OutboxPayload]] = [
    (
        OutboxKind.SLACK_POST,
        {"incident_id": 3, "reason": "down", "position": "escalation ops: step 1 of 2"},
        SlackPost(3, "down", "escalation ops: step 1 of 2"),
    ),
    (OutboxKind.SLACK_SYNC, {"key": "approval:4"}, SlackSync("approval:4")),
    (OutboxKind.SLACK_THREAD, {"incident_id": 3, "text": "step 1"}, SlackThread(3, "step 1")),
    (OutboxKind.SLACK_EPHEMERAL, {"user": "U1", "text": "no"}, SlackEphemeral("U1", "no")),
    (
        OutboxKind.EMAIL,
        {"incident_id": 3, "reason": "down", "position": "escalation ops: step 2 of 2"},
        Email(incident_id=3, reason="down", position="escalation ops: step 2 of 2"),
    ),
    (
        OutboxKind.EMAIL,
        {
            "incident_id": 3,
            "reason": "down",
            "position": "p",
            "fallback_for": "slack_post",
            "error": "rate limited",
        },
        Email(3, None, "down", "p", "slack_post", "rate limited"),
    ),
    (
        OutboxKind.EMAIL,
        {"key": "approval:4", "fallback_for": "slack_sync", "error": "timeout"},
        Email(key="approval:4", fallback_for="slack_sync", error="timeout"),
    ),
]


async def stored_payloads(store: AnyStore) -> list[Any]:
    async with store.read() as tx:
        o = schema.outbox.c
        return list((await tx.conn.execute(select(o.payload).order_by(o.id))).scalars())


async def test_payloads_are_written_as_before(store: AnyStore) -> None:
    """A payload is stored as the JSON object earlier versions wrote for its kind (same
    keys, nothing added), so a replica of either version reads the other's rows."""
    async with store.write() as tx:
        for _, _, payload in STORED:
            await tx.enqueue("#ops", payload, None, 1.0)
    assert await stored_payloads(store) == [raw for _, raw, _ in STORED]


async def test_payloads_stored_before_read_as_their_kinds_type(store: AnyStore) -> None:
    """Rows an earlier version queued are claimed as their kind's typed payload."""
    async with store.write() as tx:
        for kind, raw, _ in STORED:
            await tx.conn.execute(insert(schema.outbox).values(**row(kind, raw)))
        claimed = await tx.claim_outbox(2.0, "a", 20, 60.0)
    assert [(c.kind, c.payload) for c in claimed] == [(k, p) for k, _, p in STORED]


@pytest.mark.parametrize(
    ("kind", "raw", "says"),
    [
        (OutboxKind.SLACK_POST, {"incident_id": "3", "reason": "r", "position": "p"}, "int"),
        (OutboxKind.SLACK_SYNC, {}, "missing required field `key`"),
        (OutboxKind.SLACK_EPHEMERAL, ["U1", "no"], "object"),
        (OutboxKind.EMAIL, {"incident_id": 3, "error": 5}, "$.error"),
    ],
)
async def test_a_payload_not_of_its_kinds_type_is_claimed_unreadable(
    store: AnyStore, kind: OutboxKind, raw: Any, says: str
) -> None:
    """A row whose payload does not read as its kind's type is still claimed (the outbox
    loop then keeps it as a dead letter), marked Unreadable with what was stored and why;
    it never fails the claim of the rows around it."""
    good = SlackThread(1, "fine")
    async with store.write() as tx:
        await tx.enqueue("#ops", good, None, 1.0)
        await tx.conn.execute(insert(schema.outbox).values(**row(kind, raw)))
        await tx.enqueue("#ops", good, None, 1.0)
        first, bad, last = await tx.claim_outbox(2.0, "a", 5, 60.0)
    assert (first.payload, last.payload) == (good, good)
    assert isinstance(bad.payload, Unreadable)
    assert bad.payload.raw == raw
    assert f"not a {kind.value} payload" in bad.payload.error
    assert says in bad.payload.error


async def test_the_pause_switch_is_stored_as_before(store: AnyStore) -> None:
    """Off until set; stored as {"paused", "reason", "since"} in the settings row "pause",
    as earlier versions wrote it, and a row they wrote reads back."""
    async with store.write() as tx:
        assert await tx.pause() == Pause(paused=False, reason=None, since=None)
        await tx.set_pause(Pause(True, "deploy", 5.0), 5.0)
        assert await tx.pause() == Pause(True, "deploy", 5.0)
        s = schema.settings.c
        value = (await tx.conn.execute(select(s.value).where(s.key == "pause"))).scalar_one()
        assert value == {"paused": True, "reason": "deploy", "since": 5.0}
        await tx.set_pause(Pause(False, None, 6.0), 6.0)
        assert await tx.pause() == Pause(False, None, 6.0)


async def test_an_unreadable_pause_switch_pauses_until_set_again(store: AnyStore) -> None:
    """A pause row that does not read as the switch holds automation (paused, saying why
    and how to reset it) rather than run unchecked; pausing or resuming rewrites it."""
    async with store.write() as tx:
        row = {"key": "pause", "value": {"paused": "yes"}, "updated_at": 1.0}
        await tx.conn.execute(insert(schema.settings).values(**row))
        pause = await tx.pause()
        assert pause.paused is True
        assert pause.reason is not None
        assert "unreadable" in pause.reason
        assert "pause or resume to reset it" in pause.reason
        await tx.set_pause(Pause(False, None, 2.0), 2.0)
        assert (await tx.pause()).paused is False


# Typed audit entries and the (event, detail) earlier versions wrote for them.
AUDITED: list[tuple[AuditEntry, str, dict[str, Any]]] = [
    (Matched("restart"), "matched", {"rule": "restart"}),
    (Matched("restart", "NodeDown"), "matched", {"rule": "restart", "alertname": "NodeDown"}),
    (StepScheduled(0, "ssh"), "step_scheduled", {"step": 0, "action": "ssh"}),
    (
        StepScheduled(1, "ssh", "still firing"),
        "step_scheduled",
        {"step": 1, "action": "ssh", "reason": "still firing"},
    ),
    (Exhausted("no luck", None), "exhausted", {"reason": "no luck", "escalate": None}),
    (
        EscalationStopped("acknowledged", None),
        "escalation_stopped",
        {"state": "acknowledged", "by": None},
    ),
    (
        PagingAcknowledged("t1", "api", "security", "awaiting_approval", "alice"),
        "paging_acknowledged",
        {
            "by": "t1",
            "via": "api",
            "chain": "security",
            "state": "awaiting_approval",
            "as": "alice",
        },
    ),
    (
        PagingAcknowledged("alice", "slack", "security", "running"),
        "paging_acknowledged",
        {"by": "alice", "via": "slack", "chain": "security", "state": "running"},
    ),
    (
        NotificationFailed("email", "a@b", 3, "refused"),
        "notification_failed",
        {"kind": "email", "to": "a@b", "attempts": 3, "error": "refused"},
    ),
    (Resumed(None, 2), "resumed", {"reason": None, "steps_resumed": 2}),
    (
        Event("guard_held", {"step": 0, "guard": "pause"}),
        "guard_held",
        {"step": 0, "guard": "pause"},
    ),
]


async def test_audit_entries_are_written_as_before(store: AnyStore) -> None:
    """A typed audit entry is stored under its event name with the detail earlier versions
    wrote (an unset optional key left out, a None that always was there kept), so the
    trail reads the same through the API, `show` and the simulator."""
    async with store.write() as tx:
        for entry, _, _ in AUDITED:
            await tx.audit(None, entry, 1.0)
        rows = await tx.audit_since(0)
    assert [(r.event, r.detail) for r in rows] == [(e, d) for _, e, d in AUDITED]


def row(kind: OutboxKind, payload: Any) -> dict[str, Any]:
    """An outbox row as any version inserts it."""
    return {
        "kind": kind.value,
        "target": "#ops",
        "payload": payload,
        "state": "pending",
        "attempts": 0,
        "due_at": 1.0,
        "created_at": 1.0,
    }
