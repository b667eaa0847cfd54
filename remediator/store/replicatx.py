"""The replicas table's queries: each daemon's heartbeat row (remediator/replicas.py).

Only its own process writes a row (its id is the engine's owner id), so the portable
update-then-insert below cannot race with another writer of the same row.
"""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from remediator.store import schema as t
from remediator.store.records import Replica


class ReplicaQueries:
    """Mixed into SqlTx: heartbeats in, replicas seen lately out."""

    conn: AsyncConnection

    async def heartbeat(self, replica: Replica) -> None:
        """Insert this replica's row, or refresh it (all but id and started_at)."""
        r = t.replicas.c
        fields = asdict(replica)
        changed = {k: v for k, v in fields.items() if k not in ("id", "started_at")}
        res = await self.conn.execute(update(t.replicas).where(r.id == replica.id).values(changed))
        if res.rowcount == 0:
            await self.conn.execute(insert(t.replicas).values(fields))

    async def replicas_seen_since(self, since: float) -> list[Replica]:
        """Replicas whose last heartbeat is at or after `since`, by name."""
        r = t.replicas.c
        q = select(t.replicas).where(r.last_seen_at >= since).order_by(r.name, r.id)
        return [Replica(**dict(row._mapping)) for row in await self.conn.execute(q)]

    async def delete_replicas(self, last_seen_before: float) -> int:
        """Forget replicas not seen since `last_seen_before` (retention)."""
        stmt = delete(t.replicas).where(t.replicas.c.last_seen_at < last_seen_before)
        return int((await self.conn.execute(stmt)).rowcount)
