"""The embedded SQLite store: WAL, synchronous=FULL, one writer at a time, a lock file."""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from remediator.errors import StoreError, StoreGone, StoreLocked, StoreUnavailable
from remediator.private import FILE_MODE, private_dir, private_file, sqlite_files, tighten
from remediator.store import sqlitetrips
from remediator.store.migrations import migrate
from remediator.store.records import InboxItem
from remediator.store.spool import InlineSpool, Spool
from remediator.store.sqltx import SqlTx

BUSY_TIMEOUT_MS = 2000


def _on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite's own is deferred and late).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # a 200 means the alert survives power loss too
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def _on_begin(conn: Any) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    sqlitetrips.begin(conn.connection.dbapi_connection, f"BEGIN {mode}")


class SqliteStore:
    """Store on one SQLite file; `lock=True` (the daemon) claims it exclusively;
    `inline_spool=True` (the offline tools) appends to the spool without a writer process."""

    def __init__(self, path: Path, *, lock: bool = True, inline_spool: bool = False) -> None:
        self.path = path
        self._lock = lock
        self._lock_file: IO[str] | None = None
        self._write_lock = asyncio.Lock()
        self._engine: AsyncEngine | None = None
        self._identity: dict[Path, tuple[int, int]] = {}
        spool = InlineSpool if inline_spool else Spool
        self.spool = spool(path.with_name(path.stem + ".spool.db"), BUSY_TIMEOUT_MS)

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine (after open)."""
        if self._engine is None:
            raise StoreError("store is not open")
        return self._engine

    @property
    def exclusive(self) -> bool:
        """Whether this store's user is its only one: the lock file says so."""
        return self._lock

    async def open(self) -> None:
        """Take the lock file, connect and migrate; every file private (0600)."""
        try:
            private_dir(self.path.parent)
            private_file(self.path)
            tighten(*sqlite_files(self.path))
        except OSError as exc:
            raise StoreUnavailable(
                f"store {self.path}: cannot create it or make it private (mode 0600): {exc}; "
                "run remediator as the owner of its files"
            ) from exc
        if self._lock:
            self._take_lock()
        self._engine = self._create_engine()
        try:
            async with self._guard(), self._begin(immediate=True) as conn:
                await conn.run_sync(migrate, time.time())
            await self.spool.open()
            self._identity = {p: _identity(p) for p in (self.path, self.spool.path)}
        except BaseException:
            await self.close()
            raise

    def _create_engine(self) -> AsyncEngine:
        """The SQLAlchemy engine on this store's file, each connection set up as above."""
        # One trip to aiosqlite's thread per statement (sqlitetrips.py).
        engine = create_async_engine(f"sqlite+aiosqlite:///{self.path}", module=sqlitetrips.dbapi())
        event.listen(engine.sync_engine, "connect", _on_connect)
        event.listen(engine.sync_engine, "begin", _on_begin)
        return engine

    def _take_lock(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        os.fchmod(fd, FILE_MODE)
        f = os.fdopen(fd, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise StoreLocked(
                f"another remediator is running on {self.path} (lock {lock_path} is held); "
                "stop it, or give this one its own store"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lock_file = f

    async def close(self) -> None:
        """Close connections and release the lock file."""
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
        await self.spool.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    async def ping(self) -> None:
        """Raise StoreUnavailable if the file cannot be read, StoreGone if it was deleted
        or replaced (SQLite would go on writing to the unlinked file: acks into nowhere)."""
        self._check_identity()
        async with self.read() as tx:
            await tx.conn.execute(text("SELECT 1"))

    def _check_identity(self) -> None:
        for path, known in self._identity.items():
            try:
                same = _identity(path) == known
            except FileNotFoundError:
                same = False
            except OSError as exc:
                raise StoreUnavailable(f"store {path}: {exc}") from exc
            if not same:
                raise StoreGone(
                    f"store file {path} was deleted or replaced while remediator ran; "
                    "restore it (or start on a new store) and start remediator again"
                )

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        try:
            yield
        except DBAPIError as exc:
            raise StoreUnavailable(f"store {self.path}: {exc.orig}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"store {self.path}: {exc}") from exc

    @asynccontextmanager
    async def _begin(self, *, immediate: bool) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            if immediate:
                conn = await conn.execution_options(sqlite_begin="IMMEDIATE")
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SqlTx]:
        """A write transaction; writers in this process take turns (SQLite has one writer)."""
        async with self._write_lock, self._guard(), self._begin(immediate=True) as conn:
            yield SqlTx(conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SqlTx]:
        """A read transaction; readers never wait for the writer (WAL)."""
        async with self._guard(), self._begin(immediate=False) as conn:
            yield SqlTx(conn)

    async def renew_claims(self, owner: str, work_ids: list[int], until: float) -> int:
        """Extend `owner`'s claims on these work rows to `until` (one writer: in turn)."""
        async with self.write() as tx:
            return await tx.renew_claims(owner, work_ids, until)

    async def append_inbox(self, rows: list[tuple[float, str]]) -> None:
        """Durably append (received_at, webhook body) rows: one fsync for the batch; never
        into a file deleted or replaced under us (StoreGone: the webhook gets a 503)."""
        self._check_identity()
        await self.spool.append(rows)

    async def take_inbox(self, limit: int) -> list[InboxItem]:
        """The oldest spooled rows, left in place until `delete_inbox`."""
        return await self.spool.take(limit)

    @asynccontextmanager
    async def consume_inbox(self, ids: list[int]) -> AsyncIterator[SqlTx]:
        """A write transaction applying spooled rows `ids`, deleted from the spool (another
        file) once it has committed."""
        async with self.write() as tx:
            yield tx
        await self.delete_inbox(ids)

    async def inbox_pending(self) -> int:
        """Spooled notifications the engine has not applied yet."""
        return await self.spool.count()

    async def delete_inbox(self, ids: list[int]) -> None:
        """Drop spooled rows once applied."""
        await self.spool.delete(ids)
