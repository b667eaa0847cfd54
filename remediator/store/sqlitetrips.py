"""SQLite statements in one trip to aiosqlite's thread, not three or four.

SQLAlchemy's aiosqlite adapter makes each statement several trips between the event
loop and aiosqlite's thread: one to open a cursor, one to execute, one to fetch the rows
when there are any, one to close the cursor; and each transaction one more after its
commit, for the pool's rollback of a connection it takes back. Each trip is a hand-over
to the thread and a wake-up of the loop, and on a small VM one trip costs more than
SQLite's own work for most statements here (measured: about 0.4 ms a statement, 13
statements to start a step).

The cursor below runs all four in one function on the thread and keeps what SQLAlchemy
reads afterwards (the rows, the description, the row count, the last row id). A
transaction's BEGIN goes in its first statement's trip (`begin`), and a commit or
rollback with no statement sent since the last one makes no trip.

It plugs into SQLAlchemy's own aiosqlite dialect as its DBAPI module (`dbapi()`, given to
`create_async_engine` as `module=`): the dialect, its error mapping and its server-side
cursor are SQLAlchemy's. It relies on what that adapter itself relies on in aiosqlite
(its connection's `_execute` and `_conn`) and on the adapter's `_cursor_cls` and
constructor (SQLAlchemy 2.1); pyproject.toml bounds both versions, and
`tests/test_sqlite_trips.py` fails if a statement takes more than one trip.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util.concurrency import await_

# What one trip brings back: the cursor's description, row count, last row id, rows.
Outcome = tuple[Any, int, int | None, list[Any]]


class OneTripCursor:
    """A DBAPI cursor whose execute is one trip to the connection's thread; the rows are
    then read here (what SQLAlchemy's cursor did after its trips)."""

    server_side = False
    __slots__ = (
        "_adapt_connection",
        "_connection",
        "_rows",
        "arraysize",
        "description",
        "lastrowid",
        "rowcount",
    )

    def __init__(self, adapt_connection: _Connection) -> None:
        self._adapt_connection = adapt_connection
        # aiosqlite's connection: its `_execute` (untyped) runs a function on its thread.
        self._connection: Any = adapt_connection._connection
        self._rows: collections.deque[Any] = collections.deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    def _trip(self, work: Callable[[sqlite3.Cursor], list[Any]]) -> None:
        connection = self._connection
        adapted = self._adapt_connection
        begin = adapted.begin_with
        adapted.sent = True  # queued: it runs, even if its caller is cancelled

        def run() -> Outcome:
            cursor = connection._conn.cursor()  # ValueError once closed: mapped below
            try:
                if begin is not None:  # the transaction's BEGIN, in its first statement's trip
                    cursor.execute(begin)
                    adapted.begin_with = None
                rows = work(cursor)
                return cursor.description, cursor.rowcount, cursor.lastrowid, rows
            finally:
                cursor.close()

        try:
            outcome: Outcome = await_(connection._execute(run))
        except Exception as error:  # as SQLAlchemy's cursor: a closed one is a disconnect
            adapted._handle_exception(error)
        self.description, self.rowcount, self.lastrowid, rows = outcome
        self._rows = collections.deque(rows)

    def execute(self, operation: str, parameters: Sequence[Any] | None = None) -> None:
        """Execute and fetch every row, in one trip."""

        def work(cursor: sqlite3.Cursor) -> list[Any]:
            if parameters is None:
                cursor.execute(operation)
            else:
                cursor.execute(operation, parameters)
            return cursor.fetchall() if cursor.description else []

        self._trip(work)

    def executemany(self, operation: str, seq_of_parameters: Sequence[Sequence[Any]]) -> None:
        """Execute for each parameter set, in one trip."""

        def work(cursor: sqlite3.Cursor) -> list[Any]:
            cursor.executemany(operation, seq_of_parameters)
            return []

        self._trip(work)

    async def _async_soft_close(self) -> None:
        """Nothing to close on the thread: the cursor there closed with its trip."""

    def close(self) -> None:
        """Drop the rows not read."""
        self._rows.clear()

    def nextset(self) -> None:
        """One result set per statement in SQLite."""
        return None

    def setinputsizes(self, *inputsizes: Any) -> None:
        """Ignored, as sqlite3 does."""

    def __enter__(self) -> OneTripCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Any]:
        while self._rows:
            yield self._rows.popleft()

    def fetchone(self) -> Any:
        """The next row, or None."""
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        """Up to `size` (default `arraysize`) next rows."""
        rows = self._rows
        return [rows.popleft() for _ in range(min(size or self.arraysize, len(rows)))]

    def fetchall(self) -> list[Any]:
        """The rows not read yet."""
        rows = list(self._rows)
        self._rows.clear()
        return rows


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("begin_with", "sent")
    _cursor_cls = OneTripCursor  # type: ignore[assignment]

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.begin_with: str | None = None  # a BEGIN not sent yet (`begin`)
        # A statement went to the thread since the last commit or rollback. Known here,
        # not read off sqlite3: a trip still queued (its caller cancelled) may yet open
        # a transaction, and the commit or rollback queued behind it must end it.
        self.sent = False

    def cursor(self, server_side: bool = False) -> Any:
        """A server-side cursor (SQLAlchemy's own, for streamed results) takes its trips
        itself: the transaction's BEGIN, if not sent yet, goes first on its own."""
        if server_side and self.begin_with is not None:
            OneTripCursor(self)._trip(lambda _: [])
        return super().cursor(server_side)

    def commit(self) -> None:
        """No trip when no statement was sent: nothing to commit."""
        self.begin_with = None
        if self.sent:
            super().commit()
            self.sent = False  # not when it failed: the rollback that follows must trip

    def rollback(self) -> None:
        """No trip when no statement was sent since the last commit or rollback: the pool
        rolls back every connection it takes back, after each commit too."""
        self.begin_with = None
        if self.sent:
            super().rollback()
            self.sent = False


def begin(connection: Any, statement: str) -> None:
    """Send `statement` (a BEGIN) with the transaction's first statement, in its trip, on
    a connection of `dbapi()` (TypeError on any other). Nothing comes between them on
    this connection: the BEGIN takes its locks just before the statement would. (What the
    transaction's code did before its first statement, such as reading the clock, now
    comes before SQLite's lock is held; in the daemon its own writers take turns before
    they begin anyway.) A BEGIN that fails (the lock not had within the busy timeout) is
    raised with the first statement."""
    if not isinstance(connection, _Connection):
        raise TypeError(f"not a connection of sqlitetrips.dbapi(): {type(connection).__name__}")
    connection.begin_with = statement


class _Dbapi(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        adapted = super().connect(*arg, **kw)
        return _Connection(self, adapted._connection)


def dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The DBAPI module for `create_async_engine("sqlite+aiosqlite://...", module=...)`."""
    return _Dbapi(aiosqlite, sqlite3)
