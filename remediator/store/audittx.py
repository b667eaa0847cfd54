"""The audit trail: written by every transition and decision, read per incident, by the
replay (after an id) and by GET /api/audit (a gapless cursor in commit order)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, insert, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from remediator.store import schema as t
from remediator.store.events import AuditEntry, entry_row
from remediator.store.records import AuditRow

# The oldest transaction still running: rows of transactions below it are all committed.
PG_XMIN = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


class AuditQueries:
    """Mixed into SqlTx."""

    conn: AsyncConnection

    async def audit(self, incident_id: int | None, entry: AuditEntry, now: float) -> None:
        """Record one transition or decision."""
        event, detail = entry_row(entry)
        await self.conn.execute(
            insert(t.audit).values(incident_id=incident_id, at=now, event=event, detail=detail)
        )

    async def audit_for(self, incident_id: int) -> list[AuditRow]:
        """An incident's audit trail in order."""
        return await self._audit(
            select(t.audit).where(t.audit.c.incident_id == incident_id).order_by(t.audit.c.id)
        )

    async def audit_since(self, after_id: int) -> list[AuditRow]:
        """Every audit row (all incidents and global events) after `after_id`, in order."""
        return await self._audit(
            select(t.audit).where(t.audit.c.id > after_id).order_by(t.audit.c.id)
        )

    async def audit_page(
        self,
        after: tuple[int, int],
        limit: int,
        *,
        incident_id: int | None = None,
        since: float | None = None,
    ) -> list[AuditRow]:
        """Up to `limit` audit rows after the cursor `after` (xact, id), in commit order.

        Followed page by page it misses no row and repeats none: on PostgreSQL a row is
        only returned once no transaction that could still commit a row before it is
        running (its xact below the snapshot's xmin); SQLite has one writer, so ids are
        already in commit order (xact 0).
        """
        a = t.audit.c
        x, i = after
        q = select(t.audit).where(or_(a.xact > x, and_(a.xact == x, a.id > i)))
        if self.conn.dialect.name == "postgresql":
            q = q.where(a.xact < literal_column(PG_XMIN))
        if incident_id is not None:
            q = q.where(a.incident_id == incident_id)
        if since is not None:
            q = q.where(a.at >= since)
        return await self._audit(q.order_by(a.xact, a.id).limit(limit))

    async def _audit(self, q: Select[Any]) -> list[AuditRow]:
        return [
            AuditRow(r.id, r.incident_id, r.at, r.event, r.detail, r.xact)
            for r in await self.conn.execute(q)
        ]
