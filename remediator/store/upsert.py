"""Inserts that another replica may race: `INSERT ... ON CONFLICT` on both backends.

A select-then-insert lets two replicas both see no row and both insert; on PostgreSQL the
second then fails on the unique index (StoreConflict) and its whole transaction with it,
a step's recorded outcome included. ON CONFLICT waits for the first writer's commit and
then does nothing (or updates), in one statement.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection


def insert_for(conn: AsyncConnection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT of this connection's dialect, which has `on_conflict_do_*`."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def insert_new(
    conn: AsyncConnection, table: Table, keys: list[str], values: dict[str, Any]
) -> bool:
    """Insert unless a row with the same `keys` (a unique index) exists; True if inserted."""
    stmt = insert_for(conn, table).values(**values).on_conflict_do_nothing(index_elements=keys)
    res: CursorResult[Any] = await conn.execute(stmt)
    return bool(res.rowcount == 1)


async def upsert(
    conn: AsyncConnection, table: Table, keys: dict[str, Any], values: dict[str, Any]
) -> None:
    """Insert the row of `keys`, or update its `values` when it exists."""
    stmt = insert_for(conn, table).values(**keys, **values)
    await conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=values))
