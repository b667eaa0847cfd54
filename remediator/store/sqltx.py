"""Tx over an SQLAlchemy AsyncConnection; portable between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Row,
    Select,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from remediator.store import leases
from remediator.store import schema as t
from remediator.store.audittx import AuditQueries
from remediator.store.deadtx import DeadLetterQueries
from remediator.store.guardtx import GuardQueries
from remediator.store.humantx import HumanQueries
from remediator.store.prunetx import PruneQueries
from remediator.store.records import (
    OPEN_STATES,
    ClaimStatus,
    Incident,
    State,
    StepRecord,
    StepState,
    WorkItem,
    WorkKind,
)
from remediator.store.replicatx import ReplicaQueries
from remediator.store.upsert import insert_for, insert_new


def _incident(row: Row[Any]) -> Incident:
    m = row._mapping
    return Incident(
        id=m["id"],
        rule=m["rule"],
        fingerprint=m["fingerprint"],
        starts_at=m["starts_at"],
        target=m["target"],
        state=State(m["state"]),
        labels=m["labels"],
        annotations=m["annotations"],
        step_index=m["step_index"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        closed_at=m["closed_at"],
        silence_id=m["silence_id"],
    )


def _given(**values: object) -> dict[str, object]:
    """The columns a caller set: None means "unchanged" in the update_* methods."""
    return {k: v for k, v in values.items() if v is not None}


def _step(row: Row[Any]) -> StepRecord:
    m = dict(row._mapping)
    m["state"] = StepState(m["state"])
    return StepRecord(**m)


class SqlTx(
    AuditQueries, GuardQueries, HumanQueries, DeadLetterQueries, PruneQueries, ReplicaQueries
):
    """One open transaction; with `lock_rows` (a PostgreSQL write), the incidents it reads
    are locked until it ends, so replicas deciding on one incident take turns."""

    def __init__(self, conn: AsyncConnection, *, lock_rows: bool = False) -> None:
        self.conn = conn
        self.lock_rows = lock_rows

    # --- alerts -----------------------------------------------------------------------

    async def alert_statuses(self, fingerprints: list[str]) -> dict[tuple[str, str], str]:
        """Last status of every known instance of these fingerprints."""
        a = t.alerts.c
        out: dict[tuple[str, str], str] = {}
        unique = sorted(set(fingerprints))
        for i in range(0, len(unique), 500):
            q = select(a.fingerprint, a.starts_at, a.status).where(
                a.fingerprint.in_(unique[i : i + 500])
            )
            for fp, starts_at, status in await self.conn.execute(q):
                out[(fp, starts_at)] = status
        return out

    async def save_alerts(self, new: list[dict[str, Any]], changed: list[dict[str, Any]]) -> None:
        """Insert new alert instances and update the status of known ones, in bulk.

        Rows carry fingerprint, starts_at, status, labels, annotations, ends_at, at.
        """
        if new:
            rows = [{**r, "first_seen_at": r["at"], "updated_at": r["at"]} for r in new]
            for r in rows:
                del r["at"]
            await self.conn.execute(insert(t.alerts), rows)
        if changed:
            a = t.alerts.c
            stmt = (
                update(t.alerts)
                .where(a.fingerprint == bindparam("b_fp"), a.starts_at == bindparam("b_st"))
                .values(
                    status=bindparam("b_status"),
                    annotations=bindparam("b_annotations"),
                    ends_at=bindparam("b_ends_at"),
                    updated_at=bindparam("b_at"),
                )
            )
            params = [
                {
                    "b_fp": r["fingerprint"],
                    "b_st": r["starts_at"],
                    "b_status": r["status"],
                    "b_annotations": r["annotations"],
                    "b_ends_at": r["ends_at"],
                    "b_at": r["at"],
                }
                for r in changed
            ]
            await self.conn.execute(stmt, params)

    # --- incidents --------------------------------------------------------------------

    async def create_incident(
        self,
        rule: str,
        fingerprint: str,
        starts_at: str,
        labels: dict[str, str],
        annotations: dict[str, str],
        now: float,
    ) -> Incident | None:
        """A new incident, or None when this rule already has one for the alert."""
        res = await self.conn.execute(
            insert_for(self.conn, t.incidents)
            .values(
                rule=rule,
                fingerprint=fingerprint,
                starts_at=starts_at,
                state=State.PENDING.value,
                labels=labels,
                annotations=annotations,
                step_index=0,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["rule", "fingerprint", "starts_at"])
            .returning(*t.incidents.c)
        )
        row = res.first()
        return _incident(row) if row is not None else None

    async def incident(self, incident_id: int) -> Incident | None:
        """One incident by id (locked in a write: see `lock_rows`)."""
        q = select(t.incidents).where(t.incidents.c.id == incident_id)
        row = (await self.conn.execute(self._locked(q))).first()
        return _incident(row) if row else None

    async def open_incidents_for(self, fingerprint: str, starts_at: str) -> list[Incident]:
        """Open incidents of an alert instance, across rules, oldest first (PostgreSQL
        returns rows in no order an UPDATE keeps); locked in a write."""
        q = (
            select(t.incidents)
            .where(
                t.incidents.c.fingerprint == fingerprint,
                t.incidents.c.starts_at == starts_at,
                t.incidents.c.state.in_([s.value for s in OPEN_STATES]),
            )
            .order_by(t.incidents.c.id)
        )
        return [_incident(r) for r in await self.conn.execute(self._locked(q))]

    def _locked(self, q: Select[Any]) -> Select[Any]:
        # READ COMMITTED lets two replicas read one incident as pending and each write its
        # decision (a resolve, a step start): the later write silently undid the earlier.
        return q.with_for_update() if self.lock_rows else q

    async def update_incident(
        self,
        incident_id: int,
        now: float,
        *,
        state: State | None = None,
        step_index: int | None = None,
        target: str | None = None,
        closed_at: float | None = None,
    ) -> None:
        """Move an incident on; a field left None keeps its value (none is ever cleared)."""
        values = _given(
            state=state.value if state is not None else None,
            step_index=step_index,
            target=target,
            closed_at=closed_at,
        )
        await self.conn.execute(
            update(t.incidents)
            .where(t.incidents.c.id == incident_id)
            .values(updated_at=now, **values)
        )

    async def set_silence(self, incident_id: int, silence_id: str) -> None:
        """Record the Alertmanager silence kept for an incident."""
        await self.conn.execute(
            update(t.incidents).where(t.incidents.c.id == incident_id).values(silence_id=silence_id)
        )

    async def clear_silence(self, incident_id: int, silence_id: str) -> bool:
        """Forget an expired silence; False when it was no longer recorded (another
        replica cleared it, or a later step replaced it)."""
        i = t.incidents.c
        res = await self.conn.execute(
            update(t.incidents)
            .where(i.id == incident_id, i.silence_id == silence_id)
            .values(silence_id=None)
        )
        return bool(res.rowcount)

    async def silenced_incidents(self, limit: int) -> list[Incident]:
        """Incidents with a recorded silence, oldest first."""
        q = (
            select(t.incidents)
            .where(t.incidents.c.silence_id.is_not(None))
            .order_by(t.incidents.c.id)
            .limit(limit)
        )
        return [_incident(r) for r in await self.conn.execute(q)]

    async def incidents(self, states: list[State] | None, limit: int) -> list[Incident]:
        """Newest first, optionally only some states."""
        q = select(t.incidents).order_by(t.incidents.c.id.desc()).limit(limit)
        if states is not None:
            q = q.where(t.incidents.c.state.in_([s.value for s in states]))
        return [_incident(r) for r in await self.conn.execute(q)]

    async def incident_counts(self) -> dict[str, int]:
        """Number of incidents per state."""
        q = select(t.incidents.c.state, func.count()).group_by(t.incidents.c.state)
        return {row[0]: int(row[1]) for row in await self.conn.execute(q)}

    # --- steps ------------------------------------------------------------------------

    async def step(self, incident_id: int, step_index: int) -> StepRecord | None:
        """A step record, if the step was ever started."""
        q = select(t.steps).where(
            t.steps.c.incident_id == incident_id, t.steps.c.step_index == step_index
        )
        row = (await self.conn.execute(q)).first()
        return _step(row) if row else None

    async def orphan_steps(self, now: float | None = None) -> list[StepRecord]:
        """Steps dispatching or executing with no pending work to finish them: their
        incident was handed over or acknowledged mid-step and the daemon then stopped.
        With `now` (a store shared by replicas), only those whose work's claim has expired:
        a live replica may still be running the others."""
        s, w = t.steps.c, t.work.c
        mine = and_(
            w.incident_id == s.incident_id,
            w.step_index == s.step_index,
            w.kind == WorkKind.RUN_STEP.value,
        )
        pending = exists().where(mine, w.done_at.is_(None))
        in_flight = [StepState.DISPATCHING.value, StepState.EXECUTING.value]
        q = select(t.steps).where(s.state.in_(in_flight), ~pending).order_by(s.id)
        if now is not None:
            q = q.where(~exists().where(mine, w.claimed_until >= now))
        return [_step(r) for r in await self.conn.execute(q)]

    async def steps(self, incident_id: int) -> list[StepRecord]:
        """All steps of an incident in order."""
        q = (
            select(t.steps)
            .where(t.steps.c.incident_id == incident_id)
            .order_by(t.steps.c.step_index)
        )
        return [_step(r) for r in await self.conn.execute(q)]

    async def start_step(
        self, incident_id: int, step_index: int, action: str, command: Any, now: float
    ) -> StepRecord:
        """Record a step as dispatching (new, or a retry of a dispatch that never sent)."""
        values = {
            "incident_id": incident_id,
            "step_index": step_index,
            "action": action,
            "state": StepState.DISPATCHING.value,
            "command": command,
            "attempts": 1,
            "started_at": now,
        }
        if not await insert_new(self.conn, t.steps, ["incident_id", "step_index"], values):
            s = t.steps.c
            await self.conn.execute(
                update(t.steps)
                .where(s.incident_id == incident_id, s.step_index == step_index)
                .values(command=command, attempts=s.attempts + 1)
            )
        step = await self.step(incident_id, step_index)
        assert step is not None
        return step

    async def update_step(
        self,
        step_id: int,
        state: StepState,
        *,
        executing_at: float | None = None,
        finished_at: float | None = None,
        exit_status: int | None = None,
        output: str | None = None,
        error: str | None = None,
    ) -> None:
        """Move a step on; a field left None keeps its value (none is ever cleared)."""
        values = _given(
            executing_at=executing_at,
            finished_at=finished_at,
            exit_status=exit_status,
            output=output,
            error=error,
        )
        await self.conn.execute(
            update(t.steps).where(t.steps.c.id == step_id).values(state=state.value, **values)
        )

    # --- work -------------------------------------------------------------------------

    async def schedule(
        self, kind: WorkKind, incident_id: int, step_index: int, due_at: float
    ) -> int:
        """Add a durable timer/job."""
        res = await self.conn.execute(
            insert(t.work)
            .values(kind=kind.value, incident_id=incident_id, step_index=step_index, due_at=due_at)
            .returning(t.work.c.id)
        )
        return int(res.scalar_one())

    async def claim_due(self, now: float, owner: str, limit: int, lease_s: float) -> list[WorkItem]:
        """Claim due, unclaimed (or lease-expired) work for `owner`, oldest due first."""
        w = t.work.c
        rows = await leases.claim(
            self.conn,
            t.work,
            # A kind this version does not know (a newer replica's) is left for one that does.
            ready=[w.done_at.is_(None), w.due_at <= now, w.kind.in_([k.value for k in WorkKind])],
            order_by=[w.due_at, w.id],
            owner=owner,
            now=now,
            limit=limit,
            lease_s=lease_s,
            returning=[w.id, w.kind, w.incident_id, w.step_index, w.due_at, w.attempts],
        )
        items = [WorkItem(r[0], WorkKind(r[1]), r[2], r[3], r[4], r[5]) for r in rows]
        return sorted(items, key=lambda i: (i.due_at, i.id))

    async def renew_claims(self, owner: str, work_ids: list[int], until: float) -> int:
        """Extend `owner`'s claims on these work rows to `until` (a live replica's lease on
        what it runs); rows another replica took are left alone. A row cancelled while its
        step runs (a resolve, an acknowledgement) is renewed too: its command is still
        running, and no replica may settle the step as orphaned meanwhile."""
        w = t.work.c
        res = await self.conn.execute(
            update(t.work)
            .where(w.id.in_(work_ids), w.claimed_by == owner)
            .values(claimed_until=until)
        )
        return int(res.rowcount)

    async def claim_status(self, work_id: int, owner: str) -> ClaimStatus:
        """Whether `owner` still holds its claim on a work row, and the row is still to do
        (the row is locked until the transaction ends: a cancel waits for it)."""
        w = t.work.c
        q = select(w.claimed_by, w.done_at).where(w.id == work_id).with_for_update()
        row = (await self.conn.execute(q)).first()
        if row is None or row.claimed_by != owner:
            return ClaimStatus.TAKEN
        return ClaimStatus.HELD if row.done_at is None else ClaimStatus.CANCELLED

    async def finish_work(self, work_id: int, now: float, outcome: str) -> None:
        """Mark a work row done."""
        await self.conn.execute(
            update(t.work).where(t.work.c.id == work_id).values(done_at=now, outcome=outcome)
        )

    async def cancel_work(
        self, incident_id: int, now: float, kinds: list[WorkKind] | None = None
    ) -> int:
        """Cancel an incident's pending work (only `kinds` if given); returns how many rows."""
        q = update(t.work).where(t.work.c.incident_id == incident_id, t.work.c.done_at.is_(None))
        if kinds is not None:
            q = q.where(t.work.c.kind.in_([k.value for k in kinds]))
        res = await self.conn.execute(q.values(done_at=now, outcome="cancelled"))
        return int(res.rowcount)

    async def next_due(self) -> float | None:
        """The earliest due time of pending work."""
        q = select(func.min(t.work.c.due_at)).where(t.work.c.done_at.is_(None))
        value = (await self.conn.execute(q)).scalar_one_or_none()
        return float(value) if value is not None else None

    async def next_work_due(self) -> float | None:
        """When pending work can next be claimed: its due time, or its claim's lease end."""
        w = t.work.c
        ready = case((w.claimed_until > w.due_at, w.claimed_until), else_=w.due_at)
        q = select(func.min(ready)).where(
            w.done_at.is_(None), w.kind.in_([k.value for k in WorkKind])
        )
        value = (await self.conn.execute(q)).scalar_one_or_none()
        return float(value) if value is not None else None

    async def release_claims(self) -> int:
        """Free every work claim (only safe when no other worker runs: the SQLite case)."""
        return await leases.release(self.conn, t.work, t.work.c.done_at.is_(None))
