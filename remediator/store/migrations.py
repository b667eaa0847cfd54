"""Versioned schema migrations: each runs once, in order, recorded in schema_migrations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Table, insert, inspect, select, text

from remediator.errors import StoreError
from remediator.store import schema


@dataclass(frozen=True)
class Migration:
    """One schema change."""

    version: int
    name: str
    apply: Callable[[Connection], None]


def _tables(names: tuple[str, ...]) -> list[Table]:
    return [t for t in schema.metadata.sorted_tables if t.name in names]


def _initial(conn: Connection) -> None:
    # Later versions only add tables and indexes, so version 1's tables are still
    # schema.py's; a version that alters a table must freeze the old definition here.
    schema.metadata.create_all(conn, tables=_tables(schema.V1_TABLES))


def _guards(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=_tables(schema.V2_TABLES))
    # On a fresh store version 1 already made them along with their tables.
    schema.ix_steps_started.create(conn, checkfirst=True)
    schema.ix_incidents_target.create(conn, checkfirst=True)


def _humans(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=_tables(schema.V3_TABLES))


def _dead_letters(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=_tables(schema.V4_TABLES))


def _retention(conn: Connection) -> None:
    # On a fresh store versions 1 and 3 already made them along with their tables.
    for index in schema.V5_INDEXES:
        index.create(conn, checkfirst=True)


def _inbox(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=_tables(schema.V6_TABLES))


def _add_columns(conn: Connection, table: str, columns: tuple[tuple[str, str], ...]) -> None:
    # On a fresh store the table's own version already made them along with the table.
    have = {c["name"] for c in inspect(conn).get_columns(table)}
    for name, kind in columns:
        if name not in have:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))


def _inbox_lease(conn: Connection) -> None:
    _add_columns(conn, "inbox", (("claimed_by", "VARCHAR(64)"), ("claimed_until", "FLOAT")))


def _replicas(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=_tables(schema.V8_TABLES))


def _outbox_owner(conn: Connection) -> None:
    _add_columns(conn, "outbox", (("claimed_by", "VARCHAR(64)"),))


def _audit_order(conn: Connection) -> None:
    _add_columns(conn, "audit", (("xact", "BIGINT NOT NULL DEFAULT 0"),))
    next(i for i in schema.audit.indexes if i.name == "ix_audit_xact").create(conn, checkfirst=True)
    if conn.dialect.name == "postgresql":
        # Rows committed by different transactions can carry ids out of commit order (a
        # sequence hands them out before commit); the transaction id, with the snapshot's
        # xmin, lets a reader follow the trail without gaps (sqltx.audit_page).
        conn.execute(
            text(
                "ALTER TABLE audit ALTER COLUMN xact "
                "SET DEFAULT (pg_current_xact_id()::text::bigint)"
            )
        )


def _silences(conn: Connection) -> None:
    _add_columns(conn, "incidents", (("silence_id", "VARCHAR(64)"),))
    index = next(i for i in schema.incidents.indexes if i.name == "ix_incidents_silence")
    index.create(conn, checkfirst=True)


def _audit_ids_never_reused(conn: Connection) -> None:
    """SQLite gives a new row max(id) + 1: once retention deleted the newest rows, ids
    would come again and a reader following GET /api/audit past them would skip the new
    rows. AUTOINCREMENT never hands an id out twice (PostgreSQL's sequence never does)."""
    if conn.dialect.name != "sqlite":
        return
    sql = conn.execute(
        text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'audit'")
    ).scalar_one()
    if "AUTOINCREMENT" in str(sql).upper():
        return  # a store schema.py made (its table says so)
    conn.execute(text("ALTER TABLE audit RENAME TO audit_v11"))
    for index in ("ix_audit_incident", "ix_audit_xact"):
        conn.execute(text(f"DROP INDEX IF EXISTS {index}"))
    schema.audit.create(conn)
    conn.execute(
        text(
            "INSERT INTO audit (id, incident_id, at, event, detail, xact) "
            "SELECT id, incident_id, at, event, detail, xact FROM audit_v11"
        )
    )
    conn.execute(text("DROP TABLE audit_v11"))


def _hold_scopes(conn: Connection) -> None:
    """Holds record the guard scope holding them: a freed slot wakes that scope's oldest
    holds, not every held step. Holds written before have none and are looked at again
    when their time comes, then record theirs."""
    _add_columns(conn, "holds", (("scope", "VARCHAR(300)"),))
    index = next(i for i in schema.holds.indexes if i.name == "ix_holds_scope")
    index.create(conn, checkfirst=True)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial", _initial),
    Migration(2, "guards: settings, holds, target health", _guards),
    Migration(3, "approvals, escalations, outbox, slack messages", _humans),
    Migration(4, "dead letters", _dead_letters),
    Migration(5, "retention indexes", _retention),
    Migration(6, "inbox (PostgreSQL's; SQLite keeps its spool file)", _inbox),
    Migration(7, "inbox lease (replicas share the inbox)", _inbox_lease),
    Migration(8, "replicas (heartbeats)", _replicas),
    Migration(9, "outbox claim owner (as work rows have)", _outbox_owner),
    Migration(10, "audit commit order (a gapless cursor for GET /api/audit)", _audit_order),
    Migration(11, "incident silences (Alertmanager silence ids)", _silences),
    Migration(12, "audit ids never reused (SQLite AUTOINCREMENT)", _audit_ids_never_reused),
    Migration(13, "hold scopes (a freed slot wakes its own holds, oldest first)", _hold_scopes),
)
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
