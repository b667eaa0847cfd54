"""The outbox loop on the store (both backends): its claims name its replica, and a row
whose payload is not its kind's type is a dead letter while delivery goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from support.daemon import write_config

from remediator.clock import FakeClock
from remediator.config import load_config
from remediator.metrics import Metrics
from remediator.notify.outbox import Outbox
from remediator.store import PostgresStore, SqliteStore, schema
from remediator.store.payloads import SlackThread


def outbox_on(store: SqliteStore | PostgresStore, tmp_path: Path, **kwargs: Any) -> Outbox:
    """An outbox worker without Slack or email, as a daemon without them builds it."""
    config = load_config(write_config(tmp_path / "cfg", "rules: []\n"))
    return Outbox(store, config, FakeClock(), Metrics(), None, None, asyncio.Event(), **kwargs)


async def test_the_outbox_claims_as_its_replica(
    store: SqliteStore | PostgresStore, tmp_path: Path
) -> None:
    """A notification the outbox worker claims records the worker's owner (the daemon
    gives it its engine's id, so work and notification rows name one replica)."""
    outbox = outbox_on(store, tmp_path, owner="remediator-replica-a")
    async with store.write() as tx:
        await tx.enqueue("#ops", SlackThread(1, "a"), None, 0.0)
    assert await outbox.deliver_due() == 1
    async with store.read() as tx:
        owners = (await tx.conn.execute(select(schema.outbox.c.claimed_by))).scalars()
        assert list(owners) == ["remediator-replica-a"]


async def test_an_unreadable_payload_is_a_dead_letter_and_delivery_goes_on(
    store: SqliteStore | PostgresStore, tmp_path: Path
) -> None:
    """A SLACK_POST row whose incident_id is a string (written by hand, or by a version
    with another shape) is given up, kept as a dead letter naming the row, its kind and
    the field, counted; the rows queued around it are still handled by the same pass."""
    outbox = outbox_on(store, tmp_path)
    async with store.write() as tx:
        before = await tx.enqueue("#ops", SlackThread(1, "a"), None, 0.0)
        bad = {"incident_id": "seven", "reason": "down", "position": "p"}
        values = {"kind": "slack_post", "target": "#ops", "payload": bad, "state": "pending"}
        res = await tx.conn.execute(
            insert(schema.outbox)
            .values(**values, attempts=0, due_at=0.0, created_at=0.0)
            .returning(schema.outbox.c.id)
        )
        bad_id = res.scalar_one()
        after = await tx.enqueue("#ops", SlackThread(1, "b"), None, 0.0)
    assert await outbox.deliver_due() == 3
    async with store.read() as tx:
        [letter] = await tx.dead_letters(10)
        o = schema.outbox.c
        rows = await tx.conn.execute(select(o.id, o.state, o.last_error).order_by(o.id))
        states = {r.id: (r.state, r.last_error) for r in rows}
    assert (letter.loop, letter.item) == ("outbox", f"outbox:{bad_id}")
    assert f"outbox row {bad_id} (slack_post): not a slack_post payload" in letter.error
    assert "$.incident_id" in letter.error
    assert states[bad_id][0] == "failed"
    # The rows around it were tried: Slack is not configured here, so they fail on that.
    for ok in (before, after):
        assert states[ok] == ("failed", "slack is not configured (no `slack:` section)")
    assert outbox.metrics.poison_items.labels(loop="outbox")._value.get() == 1
