"""The retention pass's queries (store/retention.py): find aged rows, delete a few at a time.

Portable SQL for SQLite and PostgreSQL: `DELETE ... WHERE id IN (SELECT id ... LIMIT n)`,
or keys selected first and deleted by key where a table has no id column.
"""

from __future__ import annotations

from sqlalchemy import Delete, Table, bindparam, delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from remediator.store import schema as t
from remediator.store.records import CLOSED_STATES, OPEN_STATES

_CLOSED = [s.value for s in CLOSED_STATES]
_OPEN = [s.value for s in OPEN_STATES]
PENDING = "pending"  # an outbox row still to deliver (humantx.py)

# An incident's rows, children before their parents. Each table's rows of a batch of
# incidents are deleted `limit` at a time, except the last three: holds, votes and Slack
# message refs are a few per work item or approval, escalations one per incident.
INCIDENT_TABLES = (
    "dead_letters",
    "holds",
    "work",
    "audit",
    "outbox",
    "steps",
    "approval_votes",
    "slack_messages",
    "approvals",
    "escalations",
)


def _by_id(table: Table, where: ColumnElement[bool], limit: int | None) -> Delete:
    """DELETE FROM table WHERE id IN (SELECT id FROM table WHERE ... LIMIT n)."""
    ids = select(table.c.id).where(where)
    if limit is not None:
        ids = ids.limit(limit)
    return delete(table).where(table.c.id.in_(ids.scalar_subquery()))


class PruneQueries:
    """Mixed into SqlTx: deletes for the retention pass, each bounded by `limit`."""

    conn: AsyncConnection

    async def prunable_incidents(self, closed_before: float, limit: int) -> list[int]:
        """Closed before `closed_before`, with no pending work or undelivered notification."""
        i, w, o = t.incidents.c, t.work.c, t.outbox.c
        busy_work = exists().where(w.incident_id == i.id, w.done_at.is_(None))
        busy_outbox = exists().where(o.incident_id == i.id, o.state == PENDING)
        q = (
            select(i.id)
            .where(i.state.in_(_CLOSED), i.closed_at < closed_before, ~busy_work, ~busy_outbox)
            .order_by(i.id)
            .limit(limit)
        )
        return [int(x) for x in (await self.conn.execute(q)).scalars()]

    async def delete_incident_rows(self, table: str, ids: list[int], limit: int | None) -> int:
        """Delete up to `limit` rows (None: all) of `table` that belong to these incidents."""
        stmt = await self._incident_rows(table, ids, limit)
        return int((await self.conn.execute(stmt)).rowcount)

    async def _incident_rows(self, table: str, ids: list[int], limit: int | None) -> Delete:
        if table == "holds":
            work = select(t.work.c.id).where(t.work.c.incident_id.in_(ids))
            held = select(t.holds.c.work_id).where(t.holds.c.work_id.in_(work))
            held = held.limit(limit) if limit is not None else held
            return delete(t.holds).where(t.holds.c.work_id.in_(held.scalar_subquery()))
        if table == "approval_votes":
            approvals = select(t.approvals.c.id).where(t.approvals.c.incident_id.in_(ids))
            return delete(t.approval_votes).where(t.approval_votes.c.approval_id.in_(approvals))
        if table == "slack_messages":
            refs = [f"incident:{i}" for i in ids]
            refs += [f"approval:{a}" for a in await self._approval_ids(ids)]
            return delete(t.slack_messages).where(t.slack_messages.c.key.in_(refs))
        if table == "escalations":
            return delete(t.escalations).where(t.escalations.c.incident_id.in_(ids))
        rows = t.metadata.tables[table]
        return _by_id(rows, rows.c.incident_id.in_(ids), limit)

    async def _approval_ids(self, ids: list[int]) -> list[int]:
        q = select(t.approvals.c.id).where(t.approvals.c.incident_id.in_(ids))
        return [int(x) for x in (await self.conn.execute(q)).scalars()]

    async def delete_incidents(self, ids: list[int], closed_before: float) -> int:
        """Delete these incidents (still closed before `closed_before`) and any row left of them."""
        for table in INCIDENT_TABLES:  # rows added since their table was pruned: a few
            await self.delete_incident_rows(table, ids, None)
        i = t.incidents.c
        res = await self.conn.execute(
            delete(t.incidents).where(
                i.id.in_(ids), i.state.in_(_CLOSED), i.closed_at < closed_before
            )
        )
        return int(res.rowcount)

    async def delete_alerts(self, status: str, updated_before: float, limit: int) -> int:
        """Delete up to `limit` alert instances in `status`, unchanged since `updated_before`,
        that no open incident belongs to."""
        a, i = t.alerts.c, t.incidents.c
        needed = exists().where(
            i.fingerprint == a.fingerprint, i.starts_at == a.starts_at, i.state.in_(_OPEN)
        )
        q = (
            select(a.fingerprint, a.starts_at)
            .where(a.status == status, a.updated_at < updated_before, ~needed)
            .limit(limit)
        )
        keys = [{"b_fp": fp, "b_st": st} for fp, st in await self.conn.execute(q)]
        if not keys:
            return 0
        stmt = delete(t.alerts).where(
            a.fingerprint == bindparam("b_fp"), a.starts_at == bindparam("b_st")
        )
        await self.conn.execute(stmt, keys)
        return len(keys)

    async def delete_global_audit(self, before: float, limit: int) -> int:
        """Delete up to `limit` audit rows of no incident (pause, reload...) older than `before`."""
        a = t.audit.c
        stmt = _by_id(t.audit, a.incident_id.is_(None) & (a.at < before), limit)
        return int((await self.conn.execute(stmt)).rowcount)

    async def delete_global_outbox(self, before: float, limit: int) -> int:
        """Delete up to `limit` delivered (or given up) notifications of no incident."""
        o = t.outbox.c
        old = o.incident_id.is_(None) & (o.state != PENDING) & (o.done_at < before)
        return int((await self.conn.execute(_by_id(t.outbox, old, limit))).rowcount)

    async def delete_global_dead_letters(self, before: float, limit: int) -> int:
        """Delete up to `limit` dead letters of no incident (webhook bodies) older than `before`."""
        d = t.dead_letters.c
        stmt = _by_id(t.dead_letters, d.incident_id.is_(None) & (d.at < before), limit)
        return int((await self.conn.execute(stmt)).rowcount)

    async def delete_cooldowns(self, before: float) -> int:
        """Delete cooldowns that ended before `before` (one row per rule and target at most)."""
        res = await self.conn.execute(delete(t.cooldowns).where(t.cooldowns.c.until < before))
        return int(res.rowcount)

    async def table_sizes(self) -> dict[str, int]:
        """Rows per table (one count query each)."""
        sizes = {}
        for table in t.metadata.sorted_tables:
            if table.name != "schema_migrations":
                q = select(func.count()).select_from(table)
                sizes[table.name] = int((await self.conn.execute(q)).scalar_one())
        return sizes
