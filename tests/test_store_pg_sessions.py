"""Several replicas on one PostgreSQL database when one of them hangs or dies in the middle
of a transaction: its locks stop holding the others up within about `store.lease`
(lock_timeout, idle_in_transaction_session_timeout; store/pgsession.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from remediator.config.models import MIN_LEASE_S, StoreConfig
from remediator.errors import StoreConflict, StoreUnavailable
from remediator.store import PostgresStore, open_store_url
from remediator.store.postgres import MIGRATION_LOCK
from remediator.store.records import State

LEASE_S = MIN_LEASE_S  # idle sessions ended after 3 s, locks waited for 1 s
SCOPES = ["target:h1"]


@asynccontextmanager
async def opened(
    pg_url: str, tmp_path: Path, lease_s: float = LEASE_S
) -> AsyncIterator[PostgresStore]:
    """A replica's store on `pg_url` with `store.lease` = `lease_s`."""
    store = open_store_url(StoreConfig(url=pg_url, lease=lease_s), tmp_path)
    assert isinstance(store, PostgresStore)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_a_write_waiting_for_a_hung_peers_guard_lock_gives_up_after_the_lock_timeout(
    pg_url: str, tmp_path: Path
) -> None:
    """A peer hung inside a step start holds a guard scope's advisory lock (its session
    still alive): this replica's step start in that scope waits a third of the lease,
    then ends in StoreConflict (retried by its caller) instead of holding the process's
    writer for the statement timeout (60 s) or until the peer's session is reaped."""
    async with opened(pg_url, tmp_path) as store, opened(pg_url, tmp_path, 3600.0) as peer:
        async with peer.write() as hung:
            await hung.lock_scopes(SCOPES)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(StoreConflict, match="lock timeout"):
                async with asyncio.timeout(10), store.write() as tx:
                    await tx.lock_scopes(SCOPES)
            waited = loop.time() - started
        assert LEASE_S / 3 - 0.1 < waited < LEASE_S
        async with store.write() as tx:  # the peer gone, the scope is free again
            await tx.lock_scopes(SCOPES)


async def test_a_peer_idle_in_its_transaction_is_ended_and_its_incident_freed(
    pg_url: str, tmp_path: Path
) -> None:
    """Replica a stalls between two statements of a write (its host lost power) holding
    the incident's row lock. Replica b's writes of that incident end in StoreConflict
    while the lock holds; once a's session has been idle in its transaction for the
    lease, the server ends it and b's write goes through. a's transaction then fails
    with StoreUnavailable (rolled back, nothing of it written), and a's next write
    works on a fresh connection."""
    async with opened(pg_url, tmp_path) as a, opened(pg_url, tmp_path) as b:
        async with a.write() as tx:
            incident = await tx.create_incident("restart", "f", "s", {}, {}, 1.0)
            assert incident is not None

        async def stall() -> None:
            async with a.write() as tx:
                await tx.update_incident(incident.id, 2.0, state=State.RUNNING)
                await asyncio.sleep(LEASE_S + 2)
                await tx.incident(incident.id)

        stalled = asyncio.create_task(stall())
        await asyncio.sleep(0.3)
        loop = asyncio.get_running_loop()
        started, conflicts = loop.time(), 0
        async with asyncio.timeout(LEASE_S + 2):
            while True:
                try:
                    async with b.write() as tx:
                        await tx.update_incident(incident.id, 3.0, state=State.RESOLVED)
                    break
                except StoreConflict:
                    conflicts += 1
        assert conflicts >= 1
        assert loop.time() - started > LEASE_S - 1
        with pytest.raises(StoreUnavailable):
            await stalled
        async with a.write() as tx:
            after = await tx.incident(incident.id)
        assert after is not None
        assert after.state is State.RESOLVED


async def test_a_replica_starting_waits_for_another_replicas_long_migration(
    pg_url: str, tmp_path: Path
) -> None:
    """A replica starts while another holds the migration lock longer than lock_timeout
    (a long migration): it waits for it and starts, rather than failing its start."""
    async with opened(pg_url, tmp_path, 3600.0) as peer:
        async with peer.write() as migrating:
            lock = text("SELECT pg_advisory_xact_lock(:key)")
            await migrating.conn.execute(lock, {"key": MIGRATION_LOCK})
            store = open_store_url(StoreConfig(url=pg_url, lease=LEASE_S), tmp_path)
            starting = asyncio.create_task(store.open())
            await asyncio.sleep(LEASE_S / 3 + 1)
            assert not starting.done()
        await starting
        await store.close()


async def test_every_connection_notices_a_vanished_peer_within_about_a_lease(
    pg_url: str, tmp_path: Path
) -> None:
    """The server side of each store connection: a session idle in a transaction is ended
    after the lease, a lock is waited for a third of it (at least 1 s), and keepalive
    probes (idle, then three probes) or unacknowledged data give a silent peer up within
    about a lease, not the system's two hours."""
    names = [
        "idle_in_transaction_session_timeout",
        "lock_timeout",
        "tcp_keepalives_idle",
        "tcp_keepalives_interval",
        "tcp_keepalives_count",
        "tcp_user_timeout",  # shown in milliseconds
    ]
    for lease_s, expected in (
        (LEASE_S, ["3s", "1s", "1", "1", "3", "3000"]),
        (30.0, ["30s", "10s", "15", "5", "3", "30000"]),
    ):
        async with opened(pg_url, tmp_path, lease_s) as store, store.read() as tx:
            shown = [(await tx.conn.execute(text(f"SHOW {name}"))).scalar_one() for name in names]
        assert shown == expected, lease_s
