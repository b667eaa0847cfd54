"""The inbox on both backends: rows an applying transaction consumes leave the inbox with
its commit and stay when it fails; the engine's intake drains it without an empty take."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from support.engine_harness import EngineHarness, notification, spooled

from remediator.engine.intake import TAKE
from remediator.store import PostgresStore, SqliteStore
from remediator.store.events import Event
from remediator.store.records import InboxItem


async def test_consumed_rows_leave_the_inbox_only_when_the_transaction_commits(
    store: SqliteStore | PostgresStore,
) -> None:
    """A transaction consuming taken rows that fails leaves them in the inbox, with nothing
    it wrote; one that commits takes them out with what it wrote."""
    await store.append_inbox([(1.0, "[]"), (2.0, "[]"), (3.0, "[]")])
    ids = [item.id for item in await store.take_inbox(2)]

    async def failing() -> None:
        async with store.consume_inbox(ids) as tx:
            await tx.audit(None, Event("applied", {}), 1.0)
            raise RuntimeError("applying failed")

    with pytest.raises(RuntimeError):
        await failing()
    assert await store.inbox_pending() == 3
    async with store.consume_inbox(ids) as tx:
        await tx.audit(None, Event("applied", {}), 1.0)
    assert [item.received_at for item in await store.take_inbox(5)] == [3.0]
    async with store.read() as tx:
        assert [r.event for r in await tx.audit_since(0)] == ["applied"]


PAGE_ONLY = """\
rules:
  - name: page
    match: [alertname = NodeDown]
    steps: []
"""


async def test_intake_stops_at_a_short_batch_without_an_empty_take(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Intake applies a backlog take by take; a take shorter than the take size shows
    the inbox empty, so it returns without taking again (what arrives later wakes it).
    The backlog is applied in full and nothing is left in the inbox."""
    h = await EngineHarness.start(tmp_path, PAGE_ONLY, None, store_url=store_url)
    try:
        # One in a hundred is a NodeDown (an incident each); the others no rule takes.
        names = ["NodeDown" if n % 100 == 0 else "Other" for n in range(TAKE + 5)]
        rows = [
            (1.0, spooled(notification({"alertname": name, "n": str(n)})))
            for n, name in enumerate(names)
        ]
        await h.store.append_inbox(rows)
        takes: list[int] = []
        take = h.store.take_inbox

        async def counted(limit: int) -> list[InboxItem]:
            items = await take(limit)
            takes.append(len(items))
            return items

        monkeypatch.setattr(h.store, "take_inbox", counted)
        assert await h.engine.intake.drain() == TAKE + 5
        assert takes == [TAKE, 5]
        assert await h.store.inbox_pending() == 0
        async with h.store.read() as tx:
            assert len(await tx.incidents(None, 100)) == names.count("NodeDown")
    finally:
        await h.close()


async def test_postgres_stores_webhook_bodies_lz4_compressed(pg_url: str, tmp_path: Path) -> None:
    """Bodies past PostgreSQL's compression threshold (a few alerts) are compressed with
    lz4, not the default pglz, whose CPU cost fell on ingest; set once, kept on reopen."""
    from remediator.store import open_store_url

    body = '{"alerts": [' + ",".join(f'{{"n": "{i:06d}-padding"}}' for i in range(400)) + "]}"
    for _ in range(2):  # a second start finds it set
        store = open_store_url(pg_url, tmp_path)
        assert isinstance(store, PostgresStore)
        await store.open()
        try:
            await store.append_inbox([(1.0, body)])
            async with store.read() as tx:
                res = await tx.conn.execute(
                    text("SELECT pg_column_compression(body), body FROM inbox ORDER BY id")
                )
                rows = res.all()
        finally:
            await store.close()
        assert {r[0] for r in rows} == {"lz4"}
        assert {r[1] for r in rows} == {body}


async def test_postgres_append_failing_drops_its_connection(pg_url: str, tmp_path: Path) -> None:
    """An append sent past SQLAlchemy (asyncpg itself) on a connection the server ended
    fails (the webhook gets a 503) and leaves no broken connection in the pool: the next
    append works."""
    import asyncpg

    from remediator.errors import StoreUnavailable
    from remediator.store import open_store_url

    store = open_store_url(pg_url, tmp_path)
    assert isinstance(store, PostgresStore)
    await store.open()  # one pooled connection, the migration's
    try:
        admin = await asyncpg.connect(pg_url)
        try:
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'remediator'"
            )
        finally:
            await admin.close()
        assert ended == 1
        with pytest.raises(StoreUnavailable):
            await store.append_inbox([(1.0, "{}")])
        await store.append_inbox([(2.0, "{}")])
        assert await store.inbox_pending() == 1
    finally:
        await store.close()
