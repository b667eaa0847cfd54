"""Read the daemon's SQLite store directly (stdlib sqlite3), as evidence in tests."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _rows(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args)]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


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


def incidents(db: Path) -> list[dict[str, Any]]:
    """All incidents, oldest first, labels decoded."""
    rows = _rows(db, "SELECT * FROM incidents ORDER BY id")
    for r in rows:
        r["labels"] = json.loads(r["labels"])
    return rows


def audit(db: Path, incident_id: int) -> list[tuple[str, dict[str, Any]]]:
    """(event, detail) of an incident, in order."""
    rows = _rows(
        db, "SELECT event, detail FROM audit WHERE incident_id=? ORDER BY id", (incident_id,)
    )
    return [(r["event"], json.loads(r["detail"])) for r in rows]


def events(db: Path, incident_id: int) -> list[str]:
    """Just the event names of an incident's audit trail."""
    return [e for e, _ in audit(db, incident_id)]


def steps(db: Path, incident_id: int) -> list[dict[str, Any]]:
    """Step rows of an incident."""
    return _rows(db, "SELECT * FROM steps WHERE incident_id=? ORDER BY step_index", (incident_id,))


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


def all_audit(db: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every audit row's (event, detail), incidents or not."""
    rows = _rows(db, "SELECT event, detail FROM audit ORDER BY id")
    return [(r["event"], json.loads(r["detail"])) for r in rows]


def query(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows of any read-only query (an absent table reads as no rows)."""
    return _rows(db, sql, args)
