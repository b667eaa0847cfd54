"""The PostgreSQL store: the same schema, migrations and queries as SQLite's, over asyncpg.

One process on PostgreSQL behaves as one on SQLite: its writers take turns, its readers
do not wait. Several replicas may share the database: work, outbox and inbox rows are
claimed with FOR UPDATE SKIP LOCKED and a lease (a dead replica's claims expire, never
released by a starting one: the store is not `exclusive`), and two replicas writing the
same row at once end in StoreConflict, the loser's transaction run again by its caller.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy import BigInteger, any_, bindparam, delete, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from remediator.errors import StoreConflict, StoreError, StoreUnavailable
from remediator.store import leases
from remediator.store import schema as t
from remediator.store.migrations import migrate
from remediator.store.pgsession import session_settings
from remediator.store.records import InboxItem
from remediator.store.sqltx import SqlTx

# pg_advisory_xact_lock key taken around migrations, so replicas starting together migrate
# one after the other (the second finds nothing left to do). Any fixed bigint will do.
MIGRATION_LOCK = 0x72656D6564  # "remed"
CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 60.0
INBOX_LEASE_S = 60.0  # a replica applies what it took well within this, or it died
SERVER_SETTINGS = {
    "application_name": "remediator",
    # Plan each prepared statement for its parameters: a generic plan made while a table
    # was empty (a seq scan) would otherwise stay in the connection's statement cache as
    # the table grows, and `WHERE fingerprint IN (...)` would read the whole alerts table.
    "plan_cache_mode": "force_custom_plan",
}
# A claim or a delete of inbox rows need not wait for its commit to be flushed: lost to a
# crash, the rows are taken again and applying them again is a no-op (engine/intake.py).
# The next durable commit flushes it anyway; the WAL keeps the order of commits.
NO_FLUSH = text("SET LOCAL synchronous_commit TO OFF")
# The inbox rows of a group commit in one statement, whatever their number: unnest pairs
# the arrays' elements in order. Sent through asyncpg itself: on ingest's hot path,
# SQLAlchemy's compiling and per-element bind processing cost more than the statement.
APPEND = (
    "INSERT INTO inbox (received_at, body) "
    "SELECT unnest($1::double precision[]), unnest($2::text[])"
)
# Applied rows leave in one statement with their ids as one array parameter: an IN list
# of a take's hundreds of ids cost SQLAlchemy more to render than the delete itself.
DELETE_INBOX = delete(t.inbox).where(
    t.inbox.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger)))
)
# Webhook bodies are a few kB, past the size PostgreSQL compresses at: lz4 (PostgreSQL 14
# and later, when built with it, as Debian's and the usual images are) costs a fraction
# of the CPU of the default pglz, on ingest's hot path.
LZ4_AVAILABLE = text(
    "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
)
INBOX_COMPRESSION = text(
    "SELECT attcompression FROM pg_attribute "
    "WHERE attrelid = 'inbox'::regclass AND attname = 'body'"
)
INBOX_LZ4 = text("ALTER TABLE inbox ALTER COLUMN body SET COMPRESSION lz4")
# unique_violation, serialization_failure, deadlock_detected: a replica wrote first;
# lock_not_available: a lock was held past lock_timeout (a busy or dead peer, pgsession.py).
CONFLICTS = frozenset({"23505", "40001", "40P01", "55P03"})


class PostgresStore:
    """Store on one PostgreSQL database; `where` names it in messages (no password)."""

    def __init__(self, url: URL, where: str, *, inbox_lease_s: float = INBOX_LEASE_S) -> None:
        self.url = url
        self.where = where
        self.inbox_lease_s = inbox_lease_s
        self.owner = f"store-{uuid.uuid4().hex[:12]}"  # claims inbox rows for this process
        self._write_lock = asyncio.Lock()
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine (after open)."""
        if self._engine is None:
            raise StoreError("store is not open")
        return self._engine

    @property
    def exclusive(self) -> bool:
        """Never: other replicas may share the database."""
        return False

    async def open(self) -> None:
        """Connect and migrate, under an advisory lock so concurrent replicas take turns."""
        # No pool_pre_ping (a round trip per transaction): after a PostgreSQL restart the
        # first transaction on a dead pooled connection fails (StoreUnavailable, as while
        # the server is down), SQLAlchemy then discards every connection the pool holds,
        # and the next transaction connects afresh.
        self._engine = create_async_engine(
            self.url,
            connect_args={
                "timeout": CONNECT_TIMEOUT_S,
                "command_timeout": COMMAND_TIMEOUT_S,
                "server_settings": {**SERVER_SETTINGS, **session_settings(self.inbox_lease_s)},
            },
        )
        try:
            async with self._guard(), self.engine.begin() as conn:
                # Another replica's migration may take longer than lock_timeout: wait.
                await conn.execute(text("SET LOCAL lock_timeout = 0"))
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
                )
                await conn.run_sync(migrate, time.time())
                await _compress_inbox_with_lz4(conn)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close every pooled connection."""
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""
        async with self.read() as tx:
            await tx.conn.execute(text("SELECT 1"))

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        # asyncpg's own errors and OSError can surface from connect before SQLAlchemy wraps
        # them, and from the statements sent to asyncpg itself (append_inbox).
        try:
            yield
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) in CONFLICTS:
                raise StoreConflict(f"store {self.where}: {exc.orig}") from exc
            raise StoreUnavailable(f"store {self.where}: {exc.orig}") from exc
        except (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,  # e.g. a connection the server ended while idle
            OSError,
            TimeoutError,
        ) as exc:
            raise StoreUnavailable(f"store {self.where}: {exc or type(exc).__name__}") from exc

    @asynccontextmanager
    async def _begin(self, *, snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
        async with self._guard(), self.engine.connect() as conn:
            if snapshot:  # as an SQLite read in WAL mode: one view of the store throughout
                conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SqlTx]:
        """A write transaction; writers in this process take turns, as on SQLite."""
        async with self._write_lock, self._begin() as conn:
            yield SqlTx(conn, lock_rows=True)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SqlTx]:
        """A read transaction on one snapshot; readers never wait for the writer."""
        async with self._begin(snapshot=True) as conn:
            yield SqlTx(conn)

    async def renew_claims(self, owner: str, work_ids: list[int], until: float) -> int:
        """Extend `owner`'s claims on these work rows to `until`, in a transaction of its
        own: never behind this process's writer, which may be waiting for a peer's lock."""
        async with self._begin() as conn:
            return await SqlTx(conn).renew_claims(owner, work_ids, until)

    async def append_inbox(self, rows: list[tuple[float, str]]) -> None:
        """Durably append (received_at, webhook body) rows in one transaction; the engine's
        writer is not waited for (ingest stays quick while the engine works)."""
        if not rows:
            return
        # One statement in autocommit (atomic by itself): no BEGIN and COMMIT round trips.
        # Bodies are valid JSON, which has no raw NUL; replaced anyway as LongText does.
        bodies = [body.replace("\x00", "\ufffd") for _, body in rows]
        async with self._guard(), self.engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None  # a checked-out connection has its asyncpg connection
            try:
                await driver.execute(APPEND, [at for at, _ in rows], bodies)
            except BaseException:
                # SQLAlchemy saw nothing of it: drop the connection as it would a broken one.
                await conn.invalidate()
                raise

    async def take_inbox(self, limit: int) -> list[InboxItem]:
        """The oldest rows no other replica holds, claimed for `inbox_lease_s` and left in
        place until `delete_inbox` (a replica that dies first: another takes them after the
        lease; this one takes its own again at once, as SQLite's spool does)."""
        i = t.inbox.c
        now = time.time()
        async with self._begin() as conn:
            await conn.execute(NO_FLUSH)
            rows = await leases.claim(
                conn,
                t.inbox,
                ready=[],
                order_by=[i.id],
                owner=self.owner,
                now=now,
                limit=limit,
                lease_s=self.inbox_lease_s,
                returning=[i.id, i.received_at, i.body],
                count_attempts=False,
                reclaim_own=True,
            )
        items = [InboxItem(int(r[0]), float(r[1]), str(r[2])) for r in rows]
        return sorted(items, key=lambda item: item.id)

    @asynccontextmanager
    async def consume_inbox(self, ids: list[int]) -> AsyncIterator[SqlTx]:
        """A write transaction applying inbox rows `ids` that deletes them: they go with its
        commit, in one flush, with no transaction of their own."""
        async with self.write() as tx:
            yield tx
            if ids:
                await tx.conn.execute(DELETE_INBOX, {"ids": ids})

    async def delete_inbox(self, ids: list[int]) -> None:
        """Drop rows once applied."""
        if ids:
            async with self._begin() as conn:
                await conn.execute(NO_FLUSH)
                await conn.execute(DELETE_INBOX, {"ids": ids})

    async def inbox_pending(self) -> int:
        """Rows the engine has not applied yet."""
        async with self._begin() as conn:
            res = await conn.execute(select(func.count()).select_from(t.inbox))
            return int(res.scalar_one())


async def _compress_inbox_with_lz4(conn: AsyncConnection) -> None:
    """Store webhook bodies lz4-compressed where the server can (once: a column setting)."""
    if not (await conn.execute(LZ4_AVAILABLE)).scalar():
        return  # before PostgreSQL 14, or built without lz4: pglz, as before
    if (await conn.execute(INBOX_COMPRESSION)).scalar() != "l":
        await conn.execute(INBOX_LZ4)
