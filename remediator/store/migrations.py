"""Versioned schema migrations: each runs once, in order, recorded in schema_migrations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, insert, inspect, select

from remediator.errors import StoreError
from remediator.store import schema


@dataclass(frozen=True)
class Migration:
    """One schema change."""

    version: int
    name: str
    apply: Callable[[Connection], None]


def _initial(conn: Connection) -> None:
    # Version 1 creates the tables as schema.py defines them today. When a version 2
    # alters a table, freeze this step to the version-1 definitions first.
    tables = [t for t in schema.metadata.sorted_tables if t.name != "schema_migrations"]
    schema.metadata.create_all(conn, tables=tables)


MIGRATIONS: tuple[Migration, ...] = (Migration(1, "initial", _initial),)
LATEST = MIGRATIONS[-1].version


def migrate(conn: Connection, now: float) -> list[int]:
    """Apply pending migrations inside the caller's transaction; return versions applied."""
    schema.schema_migrations.create(conn, checkfirst=True)
    applied = set(conn.execute(select(schema.schema_migrations.c.version)).scalars())
    newer = {v for v in applied if v > LATEST}
    if newer:
        raise StoreError(
            f"the store has schema version {max(newer)}, newer than this remediator "
            f"knows ({LATEST}); upgrade remediator or point it at another store"
        )
    done = []
    for m in MIGRATIONS:
        if m.version in applied:
            continue
        m.apply(conn)
        conn.execute(
            insert(schema.schema_migrations).values(version=m.version, name=m.name, applied_at=now)
        )
        done.append(m.version)
    return done


def table_names(conn: Connection) -> list[str]:
    """Tables present (for tests and diagnostics)."""
    return sorted(inspect(conn).get_table_names())
