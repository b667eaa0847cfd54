"""Retention: closed incidents and alerts deduplication no longer needs leave the store,
in small batches; open incidents and what they need stay. Rows are made through the
store's own API and checked with plain SQL."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, inspect, select, text
from support.daemon import write_config
from support.engine_harness import EngineHarness

from remediator.config import load_config
from remediator.metrics import Metrics
from remediator.store import PostgresStore, SqliteStore, open_store_url, schema
from remediator.store.base import Tx
from remediator.store.events import Event
from remediator.store.payloads import Email, SlackPost, SlackSync
from remediator.store.records import State, WorkKind
from remediator.store.retention import Pruner, keep_s

DAY = 86400.0
NOW = 1_800_000_000.0
RETENTION = 90 * DAY
AnyStore = SqliteStore | PostgresStore  # the conftest's `store`: each backend in turn


class Clock:
    def now(self) -> float:
        return NOW


class Committed:
    """The store, with an event set once a write transaction has committed."""

    def __init__(self, store: AnyStore) -> None:
        self.store = store
        self.committed = asyncio.Event()

    def read(self) -> Any:
        return self.store.read()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        async with self.store.write() as tx:
            yield tx
        self.committed.set()


def pruner(store: Any, metrics: Metrics | None = None, **kwargs: Any) -> Pruner:
    return Pruner(store, Clock(), metrics or Metrics(), lambda: RETENTION, **kwargs)


def alert(
    fp: str, status: str, at: float, starts_at: str = "2026-01-01T00:00:00Z"
) -> dict[str, Any]:
    return {
        "fingerprint": fp,
        "starts_at": starts_at,
        "status": status,
        "labels": {"alertname": fp},
        "annotations": {},
        "ends_at": None,
        "at": at,
    }


@dataclass
class Made:
    """One incident made with a row in every table that hangs off it."""

    id: int
    approval: int
    work: int


async def incident(tx: Tx, name: str, created: float, closed: float | None) -> Made:
    """An incident of alert `name` with steps, approval, votes, escalation, work, hold,
    audit, sent notifications and Slack message refs; closed at `closed` if given."""
    made = await tx.create_incident("rule", name, "2026-01-01T00:00:00Z", {}, {}, created)
    assert made is not None
    i = made.id
    await tx.start_step(i, 0, "ssh", {"argv": ["true"]}, created)
    approval = await tx.create_approval(i, 1, "ssh", {}, 2, created, created + 900)
    await tx.add_vote(approval.id, "alice", "approve", "slack", created)
    await tx.add_vote(approval.id, "bob", "approve", "api", created)
    await tx.start_escalation(i, "critical", "exhausted", created)
    done = await tx.schedule(WorkKind.RUN_STEP, i, 0, created)
    await tx.finish_work(done, created, "ran")
    held = await tx.schedule(WorkKind.RUN_STEP, i, 1, created)
    await tx.hold(held, "pause", "paused", created)
    await tx.finish_work(held, created, "cancelled")
    for event in ("matched", "step_scheduled", "closed"):
        await tx.audit(i, Event(event, {}), created)
    for payload in (SlackSync(f"incident:{i}"), Email(incident_id=i)):
        sent = await tx.enqueue("#ops", payload, i, created)
        assert sent is not None
        await tx.outbox_sent(sent, created)
    await tx.save_slack_message(f"incident:{i}", "C1", "1.1", created)
    await tx.save_slack_message(f"approval:{approval.id}", "C1", "1.2", created)
    await tx.dead_letter("outbox", "outbox:1", i, "RuntimeError: x", None, created)
    if closed is not None:
        await tx.update_incident(i, closed, state=State.RESOLVED, closed_at=closed)
    else:
        await tx.update_incident(i, created, state=State.ESCALATING)
    return Made(i, approval.id, held)


def file_rows(db: Path, sql: str) -> set[Any]:
    conn = sqlite3.connect(db)
    try:
        return {r[0] if len(r) == 1 else tuple(r) for r in conn.execute(sql)}
    finally:
        conn.close()


async def rows(store: AnyStore, sql: str) -> set[Any]:
    async with store.read() as tx:
        res = await tx.conn.execute(text(sql))
        return {r[0] if len(r) == 1 else tuple(r) for r in res}


async def test_prunes_exactly_what_aged_out(store: AnyStore) -> None:
    """Old closed incidents go with all their rows; recent or open ones and one with a
    notification pending stay. Alerts stay while an open incident needs them, a day once
    resolved, `retention` while firing unchanged."""
    async with store.write() as tx:
        old = await incident(tx, "old", NOW - 120 * DAY, closed=NOW - 91 * DAY)
        recent = await incident(tx, "recent", NOW - 120 * DAY, closed=NOW - 89 * DAY)
        still_open = await incident(tx, "open", NOW - 200 * DAY, closed=None)
        busy = await incident(tx, "busy", NOW - 120 * DAY, closed=NOW - 100 * DAY)
        await tx.enqueue("a@example.com", Email(incident_id=busy.id), busy.id, NOW - 100 * DAY)
        await tx.save_alerts(
            [
                alert("old", "resolved", NOW - 91 * DAY),
                alert("recent", "resolved", NOW - 89 * DAY),
                alert("open", "firing", NOW - 200 * DAY),
                alert("busy", "resolved", NOW - 100 * DAY),
                alert("resolved-2d", "resolved", NOW - 2 * DAY),
                alert("resolved-12h", "resolved", NOW - DAY / 2),
                alert("firing-91d", "firing", NOW - 91 * DAY),
                alert("firing-89d", "firing", NOW - 89 * DAY),
            ],
            [],
        )
        await tx.audit(None, Event("paused", {}), NOW - 91 * DAY)
        await tx.audit(None, Event("resumed", {}), NOW - 89 * DAY)
        for age, deliver in ((91, True), (89, True), (91, False)):
            sent = await tx.enqueue("#ops", SlackPost(1, "down", "first"), None, NOW - age * DAY)
            assert sent is not None
            if deliver:
                await tx.outbox_sent(sent, NOW - age * DAY)
        await tx.set_cooldown("rule", "web1", NOW - 91 * DAY)
        await tx.set_cooldown("rule", "web2", NOW + 60)
        for age in (91, 89):  # a webhook body intake failed on belongs to no incident
            await tx.dead_letter("intake", "inbox:1", None, "E", {}, NOW - age * DAY)

    deleted = await pruner(store).prune_once(NOW)

    assert deleted == {
        "incidents": 1,
        "steps": 1,
        "approvals": 1,
        "approval_votes": 2,
        "escalations": 1,
        "work": 2,
        "holds": 1,
        "audit": 3 + 1,
        "outbox": 2 + 1,
        "slack_messages": 2,
        "alerts": 5,
        "cooldowns": 1,
        "dead_letters": 1 + 1,
    }
    kept = {recent.id, still_open.id, busy.id}
    assert await rows(store, "SELECT id FROM incidents") == kept
    for table in ("steps", "approvals", "escalations", "work", "audit", "outbox"):
        of_incidents = f"SELECT DISTINCT incident_id FROM {table}"  # noqa: S608 - fixed names
        assert await rows(store, of_incidents) - {None} == kept, table
    assert old.id not in await rows(
        store, "SELECT incident_id FROM audit WHERE incident_id IS NOT NULL"
    )
    assert await rows(store, "SELECT work_id FROM holds") == {
        recent.work,
        still_open.work,
        busy.work,
    }
    assert await rows(store, "SELECT DISTINCT approval_id FROM approval_votes") == {
        recent.approval,
        still_open.approval,
        busy.approval,
    }
    assert f"incident:{old.id}" not in await rows(store, "SELECT key FROM slack_messages")
    assert f"approval:{old.approval}" not in await rows(store, "SELECT key FROM slack_messages")
    assert len(await rows(store, "SELECT key FROM slack_messages")) == 6
    # Resolved a day ago or more, or unchanged for the retention: no open incident needs them.
    assert await rows(store, "SELECT fingerprint FROM alerts") == {
        "open",
        "resolved-12h",
        "firing-89d",
    }
    assert await rows(store, "SELECT event FROM audit WHERE incident_id IS NULL") == {"resumed"}
    assert await rows(store, "SELECT state FROM outbox WHERE incident_id IS NULL") == {
        "sent",
        "pending",
    }
    assert await rows(store, "SELECT target FROM cooldowns") == {"web2"}
    assert await pruner(store).prune_once(NOW) == {}


async def test_sizes_are_published_per_table(store: AnyStore) -> None:
    """After a pass, remediator_store_rows{table} holds each table's row count."""
    async with store.write() as tx:
        await tx.save_alerts([alert(f"a{i}", "firing", NOW) for i in range(3)], [])
    metrics = Metrics()
    await pruner(store, metrics).prune_once(NOW)
    value = metrics.registry.get_sample_value
    assert value("remediator_store_rows", {"table": "alerts"}) == 3
    assert value("remediator_store_rows", {"table": "incidents"}) == 0


async def test_deletes_in_batches_that_let_other_writers_in(store: AnyStore) -> None:
    """A write asked for while a pass runs waits for one batch, not for the whole pass."""
    async with store.write() as tx:
        await tx.save_alerts([alert(f"a{i}", "resolved", NOW - 2 * DAY) for i in range(2000)], [])
    watched = Committed(store)
    task = asyncio.create_task(pruner(watched, batch=10, pause_s=0).prune_once(NOW))
    await asyncio.wait_for(watched.committed.wait(), 5)
    async with store.write() as tx:
        await tx.audit(None, Event("intake", {}), NOW)
    left_when_written = (await rows(store, "SELECT count(*) FROM alerts")).pop()
    assert await task == {"alerts": 2000}
    assert 0 < left_when_written < 2000


async def test_longest_max_runs_window_stretches_the_retention(tmp_path: Path) -> None:
    """max_runs counts past steps: incidents stay as long as the longest window needs them."""
    rules = """
rules:
  - name: r
    match: ['alertname = A']
    max_runs: 3 per 120d
    steps: [{action: notify, params: {message: hi}}]
"""
    assert keep_s(load_config(write_config(tmp_path / "a", rules))) == 120 * DAY
    short = rules.replace("3 per 120d", "3 per 6h")
    assert keep_s(load_config(write_config(tmp_path / "b", short))) == RETENTION


async def test_loop_passes_soon_after_start_and_survives_a_failing_pass(
    store: AnyStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The first pass runs after `first_s`; a pass that raises is logged and the loop
    goes on until asked to stop."""
    watched = Committed(store)
    stopping = asyncio.Event()
    task = asyncio.create_task(pruner(watched).loop(stopping, first_s=0))
    await asyncio.wait_for(watched.committed.wait(), 5)
    stopping.set()
    await asyncio.wait_for(task, 5)

    called = asyncio.Event()

    def broken() -> float:
        called.set()
        raise RuntimeError("boom")

    stopping = asyncio.Event()
    with caplog.at_level(logging.ERROR):
        task = asyncio.create_task(
            Pruner(store, Clock(), Metrics(), broken).loop(stopping, first_s=0)
        )
        await asyncio.wait_for(called.wait(), 5)
        await asyncio.sleep(0.05)
        assert not task.done()
        assert "retention pass failed" in caplog.text
        stopping.set()
        await asyncio.wait_for(task, 5)


async def test_upgrade_adds_the_retention_indexes(store_url: str, tmp_path: Path) -> None:
    """A store at version 4 gets version 5's indexes when opened (both backends)."""
    names = {"ix_incidents_closed", "ix_alerts_status_updated", "ix_work_incident"}
    names |= {"ix_outbox_incident"}
    store = open_store_url(store_url, tmp_path)
    await store.open()
    async with store.write() as tx:
        for name in sorted(names):
            await tx.conn.execute(text(f"DROP INDEX {name}"))
        await tx.conn.execute(text("DELETE FROM schema_migrations WHERE version = 5"))
    await store.close()
    store = open_store_url(store_url, tmp_path)
    await store.open()
    try:
        async with store.read() as tx:
            indexes = await tx.conn.run_sync(all_indexes)
            q = select(schema.schema_migrations.c.version)
            versions = set((await tx.conn.execute(q)).scalars())
    finally:
        await store.close()
    assert names <= indexes
    assert 5 in versions


def all_indexes(conn: Connection) -> set[str]:
    """Every index name of every table."""
    found = inspect(conn)
    return {ix["name"] or "" for t in found.get_table_names() for ix in found.get_indexes(t)}


async def test_a_storm_of_unmatched_alerts_leaves_nothing_a_day_after_it_resolved(
    tmp_path: Path,
) -> None:
    """The finding: one notification of unmatched alerts left its rows for good. Now
    alerts no rule takes are not kept at all: firing or resolved, the store stays as
    empty as before the storm, and a pass a day later has nothing to delete."""
    rules = "rules:\n  - name: r\n    match: ['alertname = Other']\n"
    h = await EngineHarness.start(tmp_path, rules, None)
    try:
        storm = [
            {
                "status": "firing",
                "labels": {"alertname": "Noise", "n": str(i)},
                "annotations": {},
                "startsAt": "2026-11-23T09:00:00Z",
            }
            for i in range(2000)
        ]
        await h.send(json.dumps({"version": "4", "status": "firing", "alerts": storm}))
        assert file_rows(h.db, "SELECT count(*) FROM alerts") == {0}
        resolved = [{**a, "status": "resolved"} for a in storm]
        await h.send(json.dumps({"version": "4", "status": "resolved", "alerts": resolved}))
        assert file_rows(h.db, "SELECT count(*) FROM alerts") == {0}
        prune = Pruner(h.store, h.clock, Metrics(), lambda: RETENTION)
        assert await prune.prune_once(h.clock.now() + DAY + 1) == {}
    finally:
        await h.close()
    tables = file_rows(h.db, "SELECT name FROM sqlite_master WHERE type = 'table'")
    counts = {t: file_rows(h.db, f"SELECT count(*) FROM {t}").pop() for t in tables}  # noqa: S608 - names from sqlite_master
    assert {t for t, n in counts.items() if n} == {"schema_migrations"}
