"""The one lease-claim query: work, outbox and inbox rows are taken by a replica this way.

A claim writes the row's owner and the end of its lease. Another claimer skips a row
while its lease runs (and, on PostgreSQL, while another transaction holds it: FOR UPDATE
SKIP LOCKED, so two replicas claiming at once never take one row; SQLite has one writer
and ignores the clause). A dead replica's claims come back once their lease is over.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection


async def claim(
    conn: AsyncConnection,
    table: Table,
    *,
    ready: Sequence[ColumnElement[bool]],
    order_by: Sequence[ColumnElement[Any]],
    owner: str,
    now: float,
    limit: int,
    lease_s: float,
    returning: Sequence[ColumnElement[Any]],
    count_attempts: bool = True,
    reclaim_own: bool = False,
) -> list[tuple[Any, ...]]:
    """Claim up to `limit` rows meeting `ready` whose lease is over (or never taken; or
    `owner`'s own with `reclaim_own`), in `order_by` order; returns `returning` of each.

    `count_attempts` adds one to the row's `attempts` column: a claim is an attempt.
    """
    c = table.c
    free = [c.claimed_until.is_(None), c.claimed_until < now]
    if reclaim_own:
        free.append(c.claimed_by == owner)
    due = (
        select(c.id)
        .where(*ready, or_(*free))
        .order_by(*order_by)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    values: dict[str, Any] = {"claimed_by": owner, "claimed_until": now + lease_s}
    if count_attempts:
        values["attempts"] = c.attempts + 1
    res = await conn.execute(
        update(table).where(c.id.in_(due.scalar_subquery())).values(**values).returning(*returning)
    )
    return [tuple(r) for r in res]


async def release(conn: AsyncConnection, table: Table, pending: ColumnElement[bool]) -> int:
    """Free every claim on pending rows; returns how many. Only for a store no other
    process uses (SQLite on start: the lock file proves the claimer dead); on a shared
    store a claim ends by its lease, its owner may be alive."""
    c = table.c
    q = update(table).where(pending, c.claimed_until.is_not(None))
    res = await conn.execute(q.values(claimed_by=None, claimed_until=None))
    return int(res.rowcount)
