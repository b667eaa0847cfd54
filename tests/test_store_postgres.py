"""The PostgreSQL store on a real server: migrations under a lock, the inbox, its URL and
password, and an unreachable database reported as StoreUnavailable."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from sqlalchemy import select, text
from support.postgres import PASSWORD, PostgresCluster
from support.sshd import free_port

from remediator.errors import StoreConflict, StoreError, StoreUnavailable
from remediator.store import PostgresStore, open_store_url
from remediator.store import schema as t
from remediator.store.events import Event
from remediator.store.migrations import MIGRATIONS


def _store(url: str, tmp_path: Path) -> PostgresStore:
    store = open_store_url(url, tmp_path)
    assert isinstance(store, PostgresStore)
    return store


async def _versions(store: PostgresStore) -> list[int]:
    async with store.read() as tx:
        q = select(t.schema_migrations.c.version).order_by(t.schema_migrations.c.version)
        return list((await tx.conn.execute(q)).scalars())


async def test_replicas_migrating_at_once_take_turns(pg_url: str, tmp_path: Path) -> None:
    """Four stores opening one empty database together all start, and every migration is
    applied exactly once (the advisory lock serialises them; without it concurrent CREATE
    TABLEs collide)."""
    stores = [_store(pg_url, tmp_path) for _ in range(4)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        assert await _versions(stores[0]) == [m.version for m in MIGRATIONS]
    finally:
        for s in stores:
            await s.close()


async def test_inbox_keeps_rows_until_deleted(pg_url: str, tmp_path: Path) -> None:
    """Appended bodies survive a reopen and are taken oldest first until deleted."""
    store = _store(pg_url, tmp_path)
    await store.open()
    await store.append_inbox([(1.0, '[{"a": 1}]'), (2.0, "[]"), (3.0, "[]")])
    await store.close()
    store = _store(pg_url, tmp_path)
    await store.open()
    try:
        assert await store.inbox_pending() == 3
        first = await store.take_inbox(2)
        assert [(i.received_at, i.body) for i in first] == [(1.0, '[{"a": 1}]'), (2.0, "[]")]
        assert [i.id for i in await store.take_inbox(2)] == [i.id for i in first]
        await store.delete_inbox([i.id for i in first])
        assert [i.received_at for i in await store.take_inbox(5)] == [3.0]
        assert await store.inbox_pending() == 1
    finally:
        await store.close()


async def test_password_comes_from_the_named_variable(
    postgres: PostgresCluster, pg_url: str, tmp_path: Path
) -> None:
    """A URL without a password connects with the one `store_password_env` names; without
    the variable set, opening says which variable to set."""
    bare = postgres.url(pg_url.rsplit("/", 1)[1], password=False)
    store = open_store_url(bare, tmp_path, password_env="PGPW", environ={"PGPW": PASSWORD})
    await store.open()
    try:
        await store.ping()
    finally:
        await store.close()
    with pytest.raises(StoreError, match="environment variable PGPW is not set or empty"):
        open_store_url(bare, tmp_path, password_env="PGPW", environ={})


async def test_a_wrong_password_is_store_unavailable(
    postgres: PostgresCluster, pg_url: str, tmp_path: Path
) -> None:
    """A refused login is StoreUnavailable naming the database, never the password."""
    bare = postgres.url(pg_url.rsplit("/", 1)[1], password=False)
    store = open_store_url(bare, tmp_path, password_env="PGPW", environ={"PGPW": "wrong-pw"})
    with pytest.raises(
        StoreUnavailable, match=re.escape("store postgresql://postgres@127.0.0.1")
    ) as exc:
        await store.open()
    assert "wrong-pw" not in str(exc.value)


async def test_an_unreachable_server_is_store_unavailable(tmp_path: Path) -> None:
    """Nothing listening on the port: StoreUnavailable (the daemon's 503 and retry path)."""
    store = _store(f"postgresql://u:p@127.0.0.1:{free_port()}/db", tmp_path)
    with pytest.raises(StoreUnavailable, match=re.escape("store postgresql://u@127.0.0.1")):
        await store.open()


async def test_a_lost_server_fails_ping_and_writes(
    postgres: PostgresCluster, pg_url: str, tmp_path: Path
) -> None:
    """When the server ends the store's connections, ping and transactions raise
    StoreUnavailable; once it is back, they work again."""
    store = _store(pg_url, tmp_path)
    await store.open()
    try:
        async with store.write() as tx:
            killed = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            await tx.conn.execute(text(f"{killed} WHERE pid <> pg_backend_pid()"))
        with pytest.raises(StoreUnavailable):
            async with store.write() as tx:
                await tx.conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        await store.ping()
        async with store.write() as tx:
            await tx.audit(None, Event("back", {}), 1.0)
    finally:
        await store.close()


def test_urls_the_store_cannot_use_are_refused(tmp_path: Path) -> None:
    """open_store_url names what is wrong with a URL, before any connection."""
    with pytest.raises(StoreError, match="store: no user"):
        open_store_url("postgres://db.example/r", tmp_path)
    with pytest.raises(StoreError, match="unsupported URL 'mysql://u@h/r'"):
        open_store_url("mysql://u@h/r", tmp_path)


async def test_replicas_never_take_the_same_inbox_rows(pg_url: str, tmp_path: Path) -> None:
    """Rows one replica took are not handed to another while its lease runs (it may be
    applying them); once the lease is over (the replica died) the other takes them."""
    a, b = _store(pg_url, tmp_path), _store(pg_url, tmp_path)
    # b migrates the new store under the default lease: a's 0.5 s lease is also its
    # sessions' idle-in-transaction limit, which a loaded machine can exceed mid-migration.
    await b.open()
    a.inbox_lease_s = 0.5
    await a.open()
    try:
        await a.append_inbox([(1.0, "[]"), (2.0, "[]"), (3.0, "[]")])
        taken = await a.take_inbox(2)
        assert [i.received_at for i in taken] == [1.0, 2.0]
        assert [i.received_at for i in await b.take_inbox(5)] == [3.0]
        assert [i.received_at for i in await b.take_inbox(5)] == [3.0]  # its own, not a's
        await asyncio.sleep(0.6)
        assert [i.received_at for i in await b.take_inbox(5)] == [1.0, 2.0, 3.0]
    finally:
        await a.close()
        await b.close()


async def test_two_replicas_inserting_one_alert_is_a_conflict(pg_url: str, tmp_path: Path) -> None:
    """A replica inserting an alert another is inserting at once waits for it and gets
    StoreConflict (run the transaction again), not StoreUnavailable (a 503 for ever)."""
    a, b = _store(pg_url, tmp_path), _store(pg_url, tmp_path)
    await a.open()
    await b.open()
    row = {
        "fingerprint": "f",
        "starts_at": "s",
        "status": "firing",
        "labels": {},
        "annotations": {},
        "ends_at": None,
        "at": 1.0,
    }
    try:
        async with a.write() as tx:
            await tx.save_alerts([row], [])

            async def insert_again() -> None:
                async with b.write() as other:
                    await other.save_alerts([row], [])

            racing = asyncio.create_task(insert_again())
            await asyncio.sleep(0.3)  # b waits on a's uncommitted row
            assert not racing.done()
        with pytest.raises(StoreConflict, match="duplicate key"):
            await racing
    finally:
        await a.close()
        await b.close()


def test_only_a_locked_sqlite_store_is_exclusive(pg_url: str, tmp_path: Path) -> None:
    """Claims are released at start only by a store's sole user: SQLite with its lock
    file, never PostgreSQL (replicas share it) nor an unlocked SQLite store (the CLI)."""
    assert open_store_url(f"sqlite:///{tmp_path / 'a.db'}", tmp_path).exclusive
    assert not open_store_url(f"sqlite:///{tmp_path / 'a.db'}", tmp_path, lock=False).exclusive
    assert not _store(pg_url, tmp_path).exclusive


async def test_a_restarted_server_fails_one_transaction_then_the_pool_reconnects(
    tmp_path: Path,
) -> None:
    """Pooled connections are not pinged before use: after a PostgreSQL restart the first
    transaction meets a dead connection and raises StoreUnavailable, and that discards
    every connection the pool held (not only the one that failed): the transactions
    after it connect afresh and succeed."""
    with PostgresCluster.start() as own:
        store = _store(own.url(own.database()), tmp_path)
        await store.open()
        try:

            async def hold() -> None:
                async with store.read() as tx:
                    await tx.conn.execute(text("SELECT pg_sleep(0.2)"))

            await asyncio.gather(hold(), hold(), hold())  # three pooled connections
            own.stop()
            own.restart()
            with pytest.raises(StoreUnavailable):
                async with store.write() as tx:
                    await tx.conn.execute(text("SELECT 1"))
            await asyncio.gather(hold(), hold(), hold())
            async with store.write() as tx:
                await tx.audit(None, Event("back", {}), 1.0)
        finally:
            await store.close()


async def test_statements_are_planned_for_their_parameters(pg_url: str, tmp_path: Path) -> None:
    """A statement run many times while its table is empty keeps being planned for its
    parameters (no generic plan cached by the connection): a generic plan made on an
    empty alerts table is a seq scan, which would then read the whole table on every
    lookup of a few fingerprints once it has grown."""
    store = _store(pg_url, tmp_path)
    await store.open()
    try:
        async with store.read() as tx:
            for _ in range(10):
                assert await tx.alert_statuses(["a", "b", "c"]) == {}
            plans = await tx.conn.execute(
                text(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE statement LIKE 'SELECT alerts.fingerprint%'"
                )
            )
            assert [tuple(p) for p in plans] == [(0, 10)]
    finally:
        await store.close()


async def test_a_group_commit_stores_its_bodies_in_order(pg_url: str, tmp_path: Path) -> None:
    """A batch of webhook bodies, stored by one statement without a transaction around it,
    comes back whole and in order (ids follow the batch), NUL read as U+FFFD as in every
    text column, after the batches stored before it."""
    store = _store(pg_url, tmp_path)
    await store.open()
    try:
        await store.append_inbox([(0.5, "first")])
        batch = [(float(n), f"body {n}") for n in range(300)] + [(300.0, "a\x00b")]
        await store.append_inbox(batch)
        taken = await store.take_inbox(1000)
        assert [(i.received_at, i.body) for i in taken] == [
            (0.5, "first"),
            *batch[:-1],
            (300.0, "a\ufffdb"),
        ]
        assert [i.id for i in taken] == sorted(i.id for i in taken)
    finally:
        await store.close()


async def _wal_syncs(store: PostgresStore, cluster: PostgresCluster, db: str) -> int:
    """WAL fsyncs so far, once the store's backend has reported its own."""
    async with store.read() as tx:
        await tx.conn.execute(text("SELECT pg_stat_force_next_flush()"))
    await asyncio.sleep(0.3)  # the backend reports when it goes idle
    return int(cluster.psql(db, "SELECT wal_sync FROM pg_stat_wal"))


async def test_inbox_claims_and_deletes_do_not_wait_for_a_wal_flush(tmp_path: Path) -> None:
    """On a cluster with fsync on, taking and deleting inbox rows one at a time costs
    (nearly) no WAL fsync (they commit without waiting for one: lost to a crash, the rows
    are applied again, a no-op), while as many ordinary write transactions cost one each."""
    with PostgresCluster.start(durable=True) as own:
        db = own.database()
        store = _store(own.url(db), tmp_path)
        await store.open()
        try:
            await store.append_inbox([(float(n), "[]") for n in range(20)])
            before = await _wal_syncs(store, own, db)
            for _ in range(20):
                [item] = await store.take_inbox(1)
                await store.delete_inbox([item.id])
            inbox = await _wal_syncs(store, own, db) - before
            for _ in range(20):
                async with store.write() as tx:
                    await tx.audit(None, Event("applied", {}), 1.0)
            writes = await _wal_syncs(store, own, db) - before - inbox
            assert inbox < 5
            assert writes >= 20
        finally:
            await store.close()
