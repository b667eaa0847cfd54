"""Approvals, escalations, the notification outbox and Slack message refs (SQLite or PG)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from remediator.store import leases
from remediator.store import schema as t
from remediator.store.payloads import OutboxPayload, read_payload, to_json
from remediator.store.records import (
    Approval,
    ApprovalState,
    Escalation,
    EscalationState,
    OutboxItem,
    OutboxKind,
    Vote,
)
from remediator.store.upsert import insert_for, insert_new, upsert

PENDING, SENT, FAILED = "pending", "sent", "failed"


def _approval(row: Row[Any]) -> Approval:
    m = dict(row._mapping)
    m["state"] = ApprovalState(m["state"])
    return Approval(**m)


def _escalation(row: Row[Any]) -> Escalation:
    m = dict(row._mapping)
    m["state"] = EscalationState(m["state"])
    return Escalation(**m)


class HumanQueries:
    """Mixed into SqlTx."""

    conn: AsyncConnection

    # --- approvals --------------------------------------------------------------------

    async def create_approval(
        self,
        incident_id: int,
        step_index: int,
        action: str,
        command: Any,
        required: int,
        now: float,
        expires_at: float,
    ) -> Approval:
        """A pending approval for a step (the existing one when it was already asked)."""
        values = {
            "incident_id": incident_id,
            "step_index": step_index,
            "action": action,
            "command": command,
            "state": ApprovalState.PENDING.value,
            "required": required,
            "created_at": now,
            "expires_at": expires_at,
        }
        await insert_new(self.conn, t.approvals, ["incident_id", "step_index"], values)
        created = await self.approval_for(incident_id, step_index)
        assert created is not None
        return created

    async def approval(self, approval_id: int) -> Approval | None:
        """One approval by id."""
        q = select(t.approvals).where(t.approvals.c.id == approval_id)
        row = (await self.conn.execute(q)).first()
        return _approval(row) if row else None

    async def approval_for(self, incident_id: int, step_index: int) -> Approval | None:
        """The approval asked for a step, if any."""
        a = t.approvals.c
        q = select(t.approvals).where(a.incident_id == incident_id, a.step_index == step_index)
        row = (await self.conn.execute(q)).first()
        return _approval(row) if row else None

    async def approvals_of(self, incident_id: int) -> list[Approval]:
        """Every approval of an incident, oldest first."""
        a = t.approvals.c
        q = select(t.approvals).where(a.incident_id == incident_id).order_by(a.id)
        return [_approval(r) for r in await self.conn.execute(q)]

    async def add_vote(
        self, approval_id: int, voter: str, decision: str, via: str, now: float
    ) -> bool:
        """Record a vote; False when this person already voted on this approval."""
        values = {"approval_id": approval_id, "voter": voter, "decision": decision}
        keys = ["approval_id", "voter"]
        return await insert_new(
            self.conn, t.approval_votes, keys, {**values, "via": via, "at": now}
        )

    async def votes(self, approval_id: int) -> list[Vote]:
        """The votes on an approval, in order."""
        v = t.approval_votes.c
        q = select(t.approval_votes).where(v.approval_id == approval_id).order_by(v.at, v.voter)
        return [Vote(**dict(r._mapping)) for r in await self.conn.execute(q)]

    async def decide_approval(
        self, approval_id: int, state: ApprovalState, by: str, reason: str | None, now: float
    ) -> bool:
        """Settle a pending approval; False when it was already decided (nothing changes)."""
        a = t.approvals.c
        res = await self.conn.execute(
            update(t.approvals)
            .where(a.id == approval_id, a.state == ApprovalState.PENDING.value)
            .values(state=state.value, decided_at=now, decided_by=by, reason=reason)
        )
        return bool(res.rowcount == 1)

    # --- escalations ------------------------------------------------------------------

    async def start_escalation(self, incident_id: int, chain: str, reason: str, now: float) -> bool:
        """Start an incident's chain; False when it already has one."""
        values = {
            "incident_id": incident_id,
            "chain": chain,
            "state": EscalationState.ACTIVE.value,
            "reason": reason,
            "started_at": now,
        }
        return await insert_new(self.conn, t.escalations, ["incident_id"], values)

    async def escalation(self, incident_id: int) -> Escalation | None:
        """An incident's chain, if one was started."""
        q = select(t.escalations).where(t.escalations.c.incident_id == incident_id)
        row = (await self.conn.execute(q)).first()
        return _escalation(row) if row else None

    async def stop_escalation(
        self, incident_id: int, state: EscalationState, by: str | None, now: float
    ) -> bool:
        """Stop an active chain; False when none was active."""
        e = t.escalations.c
        res = await self.conn.execute(
            update(t.escalations)
            .where(e.incident_id == incident_id, e.state == EscalationState.ACTIVE.value)
            .values(state=state.value, stopped_at=now, stopped_by=by)
        )
        return bool(res.rowcount == 1)

    # --- outbox -----------------------------------------------------------------------

    async def enqueue(
        self,
        target: str,
        payload: OutboxPayload,
        incident_id: int | None,
        now: float,
        dedup_key: str | None = None,
    ) -> int | None:
        """Queue a notification of the payload's kind; None when one with the same dedup
        key is queued already."""
        res = await self.conn.execute(
            insert_for(self.conn, t.outbox)
            .values(
                incident_id=incident_id,
                kind=payload.kind.value,
                target=target,
                payload=to_json(payload),
                dedup_key=dedup_key,
                state=PENDING,
                attempts=0,
                due_at=now,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["dedup_key"])
            .returning(t.outbox.c.id)
        )
        row = res.first()
        return int(row[0]) if row is not None else None

    async def claim_outbox(
        self, now: float, owner: str, limit: int, lease_s: float
    ) -> list[OutboxItem]:
        """Claim due notifications for `owner`, oldest first (as claim_due claims work)."""
        o = t.outbox.c
        rows = await leases.claim(
            self.conn,
            t.outbox,
            # A kind this version does not know (a newer replica's) is left for one that does.
            ready=[o.state == PENDING, o.due_at <= now, o.kind.in_([k.value for k in OutboxKind])],
            order_by=[o.due_at, o.id],
            owner=owner,
            now=now,
            limit=limit,
            lease_s=lease_s,
            returning=[o.id, o.incident_id, o.kind, o.target, o.payload, o.attempts, o.created_at],
        )
        items = []
        for id_, incident_id, kind, target, raw, attempts, created_at in rows:
            payload = read_payload(OutboxKind(kind), raw)
            items.append(
                OutboxItem(
                    id_, incident_id, OutboxKind(kind), target, payload, attempts, created_at
                )
            )
        return sorted(items, key=lambda i: i.id)

    async def outbox_sent(self, item_id: int, now: float) -> None:
        """Delivered: never again. A sync key is free for the next update."""
        await self.conn.execute(
            update(t.outbox)
            .where(t.outbox.c.id == item_id)
            .values(state=SENT, done_at=now, claimed_until=None, dedup_key=None, last_error=None)
        )

    async def outbox_retry(self, item_id: int, owner: str, due_at: float, error: str) -> bool:
        """Not delivered this time: try again at `due_at`. Only by the row's claimer: a
        replica whose lease ran out while it delivered leaves the row to the replica that
        took it (releasing that claim would let a third one post it); False then."""
        o = t.outbox.c
        res = await self.conn.execute(
            update(t.outbox)
            .where(o.id == item_id, o.claimed_by == owner)
            .values(due_at=due_at, claimed_until=None, last_error=error[:2000])
        )
        return bool(res.rowcount == 1)

    async def outbox_failed(self, item_id: int, now: float, error: str) -> None:
        """Given up: kept with its last error for the record."""
        await self.conn.execute(
            update(t.outbox)
            .where(t.outbox.c.id == item_id)
            .values(
                state=FAILED,
                done_at=now,
                claimed_until=None,
                dedup_key=None,
                last_error=error[:2000],
            )
        )

    async def outbox_pending(self) -> int:
        """Notifications not yet delivered."""
        q = select(func.count()).select_from(t.outbox).where(t.outbox.c.state == PENDING)
        return int((await self.conn.execute(q)).scalar_one())

    async def next_outbox_due(self) -> float | None:
        """When the next pending notification is due."""
        o = t.outbox.c
        # A claimed row is not due before its lease ends; a kind this version cannot
        # deliver is never due here (it is left for a replica that can).
        ready = case((o.claimed_until > o.due_at, o.claimed_until), else_=o.due_at)
        q = (
            select(func.min(ready))
            .where(o.state == PENDING)
            .where(o.kind.in_([k.value for k in OutboxKind]))
        )
        value = (await self.conn.execute(q)).scalar_one_or_none()
        return float(value) if value is not None else None

    async def release_outbox_claims(self) -> int:
        """Free every outbox claim (only safe when no other worker runs: the SQLite case)."""
        return await leases.release(self.conn, t.outbox, t.outbox.c.state == PENDING)

    # --- slack messages ---------------------------------------------------------------

    async def slack_message(self, key: str) -> tuple[str, str] | None:
        """(channel, ts) of the message kept for `key`."""
        m = t.slack_messages.c
        row = (await self.conn.execute(select(m.channel, m.ts).where(m.key == key))).first()
        return (row[0], row[1]) if row else None

    async def save_slack_message(self, key: str, channel: str, ts: str, now: float) -> None:
        """Remember where the message for `key` lives."""
        values = {"channel": channel, "ts": ts, "updated_at": now}
        await upsert(self.conn, t.slack_messages, {"key": key}, values)
