"""The webhook spool: a small SQLite file of its own, so ingest never waits on the engine.

The receiver appends (group commit, one fsync per batch, in a writer process: see
spoolwriter.py) and answers 200; the engine takes rows, applies them in a transaction on
the main store, then deletes them. A crash between the two re-applies the rows, which
changes nothing: alert status is deduplicated in the main store and incidents are unique
per (rule, fingerprint, startsAt).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from remediator.errors import StoreUnavailable
from remediator.private import private_file, sqlite_files, tighten
from remediator.store import spoolwriter
from remediator.store.records import InboxItem
from remediator.store.spoolpipe import WriterProcess

log = logging.getLogger(__name__)
T = TypeVar("T")
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    body TEXT NOT NULL
)
"""


class Spool:
    """Reads and deletes on one dedicated thread; appends in a writer process.

    Both keep the receiver's event loop free: see spoolwriter.py for why appends are
    not on the thread.
    """

    def __init__(self, path: Path, busy_timeout_ms: int) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._writer: WriterProcess | None = None
        self._writer_lock = asyncio.Lock()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn, *args)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"spool {self.path}: {exc}") from exc

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable(f"spool {self.path} is not open")
        return self._conn

    def _open(self) -> None:
        private_file(self.path)  # before SQLite: its -wal and -shm take the file's mode
        tighten(*sqlite_files(self.path))
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # This connection only deletes applied rows (appends are the writer process's, with
        # synchronous=FULL): a delete lost to a power cut re-applies its rows, a no-op, and
        # the next append's flush of the log carries it anyway. Not one fsync per take.
        conn.execute("PRAGMA synchronous=NORMAL")
        # Debian builds SQLite with secure_delete on: each applied body's page was zeroed and
        # written out again, four times the cost of the delete itself. FAST still zeroes
        # what is deleted within pages written anyway; freed pages keep their bytes in this
        # private (0600) file until the next appends reuse them.
        conn.execute("PRAGMA secure_delete=FAST")
        conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            conn.close()
            raise StoreUnavailable(
                f"spool {self.path} has schema version {version}, newer than this remediator knows"
            )
        conn.execute(_SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._conn = conn

    async def open(self) -> None:
        """Create or open the spool file."""
        await self._call(self._open)

    @property
    def writer_pid(self) -> int | None:
        """The writer process, once the first append started it."""
        return self._writer.proc.pid if self._writer is not None else None

    async def append(self, rows: list[tuple[float, str]]) -> None:
        """Durably append rows in one transaction (raises StoreUnavailable)."""
        async with self._writer_lock:
            if self._closed or self._conn is None:
                raise StoreUnavailable(f"spool {self.path} is not open")
            if self._writer is not None and not self._writer.alive:
                dead, self._writer = self._writer, None
                code = dead.proc.returncode
                log.error("spool writer died; starting another", extra={"exit_code": code})
                await dead.close()
            if self._writer is None:
                self._writer = await WriterProcess.start(self.path, self._busy_timeout_ms)
            writer = self._writer
        await writer.append(rows)

    def _take(self, limit: int) -> list[InboxItem]:
        cur = self._db().execute(
            "SELECT id, received_at, body FROM inbox ORDER BY id LIMIT ?", (limit,)
        )
        return [InboxItem(r[0], r[1], r[2]) for r in cur]

    async def take(self, limit: int) -> list[InboxItem]:
        """The oldest rows (not removed)."""
        return await self._call(self._take, limit)

    def _delete(self, ids: list[int]) -> None:
        if not ids:
            return
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        db.executemany("DELETE FROM inbox WHERE id = ?", [(i,) for i in ids])
        db.execute("COMMIT")

    async def delete(self, ids: list[int]) -> None:
        """Remove rows once applied."""
        await self._call(self._delete, ids)

    def _count(self) -> int:
        # Rows are appended in id order (AUTOINCREMENT: a rolled-back append takes no id)
        # and leave from the head, as the engine applies them: the rows are the ids between
        # the oldest and the newest, read from the primary key's two ends. count(*) read
        # every row, bodies included (30 ms at a backlog of 60,000), on the one thread the
        # engine's takes and deletes wait for.
        row = (
            self._db()
            .execute("SELECT (SELECT max(id) FROM inbox) - (SELECT min(id) FROM inbox) + 1")
            .fetchone()
        )
        return int(row[0] or 0)

    async def count(self) -> int:
        """Rows not yet applied by the engine."""
        return await self._call(self._count)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        """Close the connection and the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        async with self._writer_lock:
            writer, self._writer = self._writer, None
            if writer is not None:
                await writer.close()
        await self._call(self._close)
        self._pool.shutdown(wait=True)


class InlineSpool(Spool):
    """A spool that appends on its own connection and thread: no writer process.

    For the offline tools (`remediator test`, `remediator replay`), where no receiver's
    event loop waits on the append. The same transaction as the writer's (BEGIN
    IMMEDIATE, one INSERT per row, COMMIT), so take and delete see the same rows.
    """

    def _append(self, rows: list[tuple[float, str]]) -> None:
        spoolwriter.append_rows(self._db(), rows)

    async def append(self, rows: list[tuple[float, str]]) -> None:
        """Durably append rows in one transaction (raises StoreUnavailable)."""
        if self._closed or self._conn is None:
            raise StoreUnavailable(f"spool {self.path} is not open")
        await self._call(self._append, rows)
