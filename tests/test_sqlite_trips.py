"""The SQLite store's statements: one trip each to aiosqlite's thread, results intact."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text

from remediator.errors import StoreUnavailable
from remediator.store import SqliteStore
from remediator.store.payloads import Pause


@pytest.fixture
def store(sqlite_store: SqliteStore) -> SqliteStore:
    """SQLite only: the conftest's `store` runs on both backends."""
    return sqlite_store


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every function aiosqlite runs on its thread (each is a trip there and back)."""
    count = [0]
    run_there: Callable[..., Awaitable[Any]] = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Callable[..., Any], *a: Any) -> Any:
        count[0] += 1
        return await run_there(self, fn, *a)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return count


async def test_a_statement_with_rows_is_one_trip(store: SqliteStore, trips: list[int]) -> None:
    """SQLAlchemy's own adapter took four (open a cursor, execute, fetch, close)."""
    async with store.engine.connect() as conn:
        await conn.execute(text("SELECT 0"))  # the transaction's BEGIN goes with the first
        before = trips[0]
        rows = (await conn.execute(text("SELECT 1 UNION ALL SELECT 2"))).all()
        assert trips[0] - before == 1
    assert [tuple(r) for r in rows] == [(1,), (2,)]


async def test_a_committed_transaction_is_its_statements_and_commit(
    store: SqliteStore, trips: list[int]
) -> None:
    """The BEGIN goes with the first statement, and the pool's rollback of the connection
    it takes back makes no trip after a commit; a transaction that fails is still rolled
    back."""
    async with store.write() as tx:
        await tx.pause()
    before = trips[0]
    async with store.write() as tx:
        await tx.pause()
    assert trips[0] - before == 2  # BEGIN IMMEDIATE with the SELECT, then COMMIT

    async def fail_mid_transaction() -> None:
        async with store.write() as tx:
            await tx.set_pause(Pause(paused=True, reason="by test", since=1.0), 1.0)
            raise RuntimeError("the caller fails mid-transaction")

    with pytest.raises(RuntimeError):
        await fail_mid_transaction()
    async with store.read() as tx:
        assert not (await tx.pause()).paused


async def test_counts_ids_and_returned_rows_come_back(store: SqliteStore) -> None:
    """What SQLAlchemy reads off the cursor after the trip: row counts, the last row id,
    RETURNING rows, and executemany's effect."""
    async with store.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
        inserted = await conn.execute(text("INSERT INTO t (v) VALUES ('a')"))
        assert inserted.lastrowid == 1
        await conn.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": "b"}, {"v": "c"}])
        updated = await conn.execute(text("UPDATE t SET v = 'x' WHERE id > 1"))
        assert updated.rowcount == 2
        back = await conn.execute(text("DELETE FROM t WHERE id = 3 RETURNING id, v"))
        assert [tuple(r) for r in back] == [(3, "x")]
        left = await conn.execute(text("SELECT id, v FROM t ORDER BY id"))
        assert [tuple(r) for r in left] == [(1, "a"), (2, "x")]


async def test_an_error_is_sqlalchemys_as_before(store: SqliteStore) -> None:
    """A failing statement raises SQLAlchemy's wrapped DBAPI error, and the connection
    goes on working."""
    from sqlalchemy.exc import OperationalError

    async with store.engine.connect() as conn:
        with pytest.raises(OperationalError, match="no such table"):
            await conn.execute(text("SELECT * FROM missing"))
        await conn.rollback()
        assert (await conn.execute(text("SELECT 7"))).scalar_one() == 7


async def test_a_failed_commit_is_rolled_back_before_the_connection_is_reused(
    store: SqliteStore,
) -> None:
    """A COMMIT that fails (a deferred foreign key here; a full disk in life) leaves the
    transaction open in SQLite: the rollback after it must still go to the thread, or the
    pool's next user finds a transaction already open."""
    from sqlalchemy.exc import IntegrityError

    async with store.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE p (id INTEGER PRIMARY KEY)"))
        await conn.execute(
            text("CREATE TABLE c (p INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED)")
        )

    async def orphan() -> None:
        async with store.engine.begin() as conn:
            await conn.execute(text("INSERT INTO c (p) VALUES (42)"))

    with pytest.raises(IntegrityError, match="FOREIGN KEY"):
        await orphan()
    for _ in range(2):
        async with store.write() as tx:
            assert not (await tx.pause()).paused
    async with store.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM c"))).scalar_one() == 0


async def test_a_connection_closed_under_the_store_is_unavailable_then_replaced(
    store: SqliteStore,
) -> None:
    """aiosqlite's connection closed behind SQLAlchemy's back: the statement raises the
    store's StoreUnavailable (not a bare ValueError an intake would take for a poison
    body), and the pool replaces the connection."""

    async def on_a_closed_connection() -> None:
        async with store.write() as tx:
            raw = await tx.conn.get_raw_connection()
            await raw.driver_connection.close()
            await tx.conn.execute(text("SELECT 1"))

    with pytest.raises(StoreUnavailable):
        await on_a_closed_connection()
    async with store.read() as tx:
        assert (await tx.conn.execute(text("SELECT 5"))).scalar_one() == 5


async def test_a_streamed_first_statement_is_inside_its_transaction(store: SqliteStore) -> None:
    """A server-side cursor (streamed results) takes its own trips: the transaction's
    BEGIN still goes before it, so a rollback undoes what it did."""
    async with store.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    async with store.engine.connect() as conn:
        async with conn.begin() as tx:
            streamed = await conn.stream(text("INSERT INTO t (id) VALUES (1) RETURNING id"))
            assert [tuple(r) async for r in streamed] == [(1,)]
            await tx.rollback()
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
