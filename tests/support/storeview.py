"""Read a store directly as evidence in tests: an SQLite file or a PostgreSQL database.

`Source` is a Path to the SQLite file (the daemon tests' `d.db`) or a store URL
(`sqlite:///PATH`, `postgresql://...`): one SQL text for both, named parameters
(`:id`), through SQLAlchemy's synchronous engines (stdlib sqlite3 read-only; psycopg for
PostgreSQL, as the tests' own event loop must not be blocked by, or share, asyncpg's).
JSON columns come back as their text on both backends, decoded by the helpers here.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from remediator.config.pgurl import is_postgres, parse_pg_url

T = TypeVar("T")
Source = Path | str
UNDEFINED_TABLE = "42P01"


def _sqlite_path(source: Source) -> Path | None:
    if isinstance(source, Path):
        return source
    return Path(source.removeprefix("sqlite:///")) if source.startswith("sqlite:///") else None


def _json_as_text(dbapi_conn: Any, _record: Any) -> None:
    # psycopg decodes json columns; SQLite hands their text: make PostgreSQL hand it too.
    from psycopg.types.string import TextLoader

    dbapi_conn.adapters.register_loader("json", TextLoader)


@cache
def _engine(source: Source) -> Engine:
    path = _sqlite_path(source)
    if path is not None:
        return create_engine(
            f"sqlite:///file:{path}?mode=ro&uri=true",
            connect_args={"timeout": 5},
            poolclass=NullPool,
        )
    if not is_postgres(source):
        raise ValueError(f"storeview: {source!r} is neither an SQLite path nor a store URL")
    url = parse_pg_url(source).sqlalchemy(None).set(drivername="postgresql+psycopg")
    engine = create_engine(url, poolclass=NullPool)
    event.listen(engine, "connect", _json_as_text)
    return engine


def _missing_table(exc: DBAPIError) -> bool:
    orig = exc.orig
    if isinstance(orig, sqlite3.OperationalError):
        return "no such table" in str(orig)
    return getattr(orig, "sqlstate", None) == UNDEFINED_TABLE


def _rows(
    source: Source, sql: str, params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    path = _sqlite_path(source)
    if path is not None and not path.exists():
        return []
    try:
        with _engine(source).connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), dict(params or {}))]
    except DBAPIError as exc:
        if _missing_table(exc):
            return []
        raise


def _json(value: str | None) -> Any:
    return None if value is None else json.loads(value)


@contextmanager
def exclusive_lock(db: Path) -> Iterator[None]:
    """Hold SQLite's exclusive lock on `db`: its writers wait, then time out."""
    blocker = sqlite3.connect(db, timeout=0, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def incidents(db: Source) -> list[dict[str, Any]]:
    """All incidents, oldest first, labels and annotations decoded."""
    rows = _rows(db, "SELECT * FROM incidents ORDER BY id")
    for r in rows:
        r["labels"], r["annotations"] = _json(r["labels"]), _json(r["annotations"])
    return rows


def audit(db: Source, incident_id: int) -> list[tuple[str, dict[str, Any]]]:
    """(event, detail) of an incident, in order."""
    rows = _rows(
        db,
        "SELECT event, detail FROM audit WHERE incident_id = :id ORDER BY id",
        {"id": incident_id},
    )
    return [(r["event"], _json(r["detail"])) for r in rows]


def events(db: Source, incident_id: int) -> list[str]:
    """Just the event names of an incident's audit trail."""
    return [e for e, _ in audit(db, incident_id)]


def steps(db: Source, incident_id: int) -> list[dict[str, Any]]:
    """Step rows of an incident, the command decoded."""
    rows = _rows(
        db, "SELECT * FROM steps WHERE incident_id = :id ORDER BY step_index", {"id": incident_id}
    )
    for r in rows:
        r["command"] = _json(r["command"])
    return rows


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = 15.0) -> T:
    """Poll `probe` until it returns something truthy; fail saying what was awaited."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


def all_audit(db: Source) -> list[tuple[str, dict[str, Any]]]:
    """Every audit row's (event, detail), incidents or not."""
    rows = _rows(db, "SELECT event, detail FROM audit ORDER BY id")
    return [(r["event"], _json(r["detail"])) for r in rows]


def query(db: Source, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows of any read-only query, `:name` parameters (an absent table reads as no rows)."""
    return _rows(db, sql, params)
