"""What the guards read and write inside the engine's transaction (SQLite or PostgreSQL)."""

from __future__ import annotations

from hashlib import blake2b

import msgspec
from sqlalchemy import and_, delete, exists, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from remediator.store import schema as t
from remediator.store.payloads import Pause, to_json
from remediator.store.records import (
    ACTIVE_STATES,
    OPEN_STATES,
    RUNNING_A_STEP,
    ApprovalState,
    Hold,
    State,
    StepState,
    TargetHealth,
    WorkKind,
)
from remediator.store.upsert import upsert

PAUSE_KEY = "pause"  # the settings row of the global pause switch
IN_FLIGHT = (StepState.DISPATCHING.value, StepState.EXECUTING.value)


# The first key of pg_advisory_xact_lock(int, int) for guard scopes; the second is the
# scope's hash. The two-key space does not overlap the migrations' one-key lock.
GUARD_SCOPE_LOCKS = 0x72656D65  # "reme"


def scope_key(scope: str) -> int:
    """A guard scope's 32-bit lock key; two scopes sharing one only wait for each other."""
    return int.from_bytes(blake2b(scope.encode(), digest_size=4).digest(), "big", signed=True)


class GuardQueries:
    """Mixed into SqlTx: the pause switch, cooldowns, holds, activity counts, quarantine."""

    conn: AsyncConnection

    async def lock_scopes(self, scopes: list[str]) -> None:
        """Until this transaction ends, no other replica checks the guards of these scopes
        (a target, a group, the global limits) and starts a step: what it reads next
        includes every step another replica started in them (PostgreSQL advisory locks,
        taken in one order, so two replicas cannot deadlock). SQLite has one
        writer already: nothing to do."""
        if self.conn.dialect.name != "postgresql":
            return
        for key in sorted({scope_key(scope) for scope in scopes}):
            await self.conn.execute(
                text("SELECT pg_advisory_xact_lock(:space, :key)"),
                {"space": GUARD_SCOPE_LOCKS, "key": key},
            )

    # --- settings ---------------------------------------------------------------------

    async def pause(self) -> Pause:
        """The global pause switch (off when never set). A stored value that does not read
        as one is taken as paused, saying why: automation holds until an operator pauses
        or resumes again, which rewrites it."""
        q = select(t.settings.c.value).where(t.settings.c.key == PAUSE_KEY)
        value = (await self.conn.execute(q)).scalar_one_or_none()
        if value is None:
            return Pause()
        try:
            return msgspec.convert(value, Pause)
        except msgspec.ValidationError as exc:
            why = f"the stored pause switch is unreadable ({exc}); pause or resume to reset it"
            return Pause(paused=True, reason=why)

    async def set_pause(self, pause: Pause, now: float) -> None:
        """Store the pause switch durably."""
        value = to_json(pause)
        await upsert(self.conn, t.settings, {"key": PAUSE_KEY}, {"value": value, "updated_at": now})

    # --- cooldowns --------------------------------------------------------------------

    async def cooldown_until(self, rule: str, target: str) -> float | None:
        """When the (rule, target) cooldown ends, if one was set."""
        c = t.cooldowns.c
        q = select(c.until).where(and_(c.rule == rule, c.target == target))
        return (await self.conn.execute(q)).scalar_one_or_none()

    async def set_cooldown(self, rule: str, target: str, until: float) -> None:
        """Start or extend a (rule, target) cooldown."""
        await upsert(self.conn, t.cooldowns, {"rule": rule, "target": target}, {"until": until})

    # --- holds ------------------------------------------------------------------------

    async def hold(
        self, work_id: int, guard: str, reason: str, now: float, scope: str | None = None
    ) -> Hold:
        """Record that `guard` (of guard `scope`) holds this work item; returns the hold
        (new or continued), with the scope that held it before."""
        h = t.holds.c
        row = (await self.conn.execute(select(t.holds).where(h.work_id == work_id))).first()
        if row is None:
            await self.conn.execute(
                insert(t.holds).values(
                    work_id=work_id,
                    guard=guard,
                    reason=reason,
                    since=now,
                    guard_since=now,
                    scope=scope,
                )
            )
            return Hold(work_id, guard, reason, now, now, changed=True, scope=scope)
        was = row.scope
        if row.guard == guard:  # held on (by another group of its host, perhaps)
            if was != scope:
                await self.conn.execute(
                    update(t.holds).where(h.work_id == work_id).values(scope=scope)
                )
            return Hold(work_id, guard, row.reason, row.since, row.guard_since, False, scope, was)
        await self.conn.execute(
            update(t.holds)
            .where(h.work_id == work_id)
            .values(guard=guard, reason=reason, guard_since=now, scope=scope)
        )
        return Hold(work_id, guard, reason, row.since, now, True, scope, was)

    async def release_hold(self, work_id: int) -> Hold | None:
        """Drop a hold; returns what it was, if there was one."""
        row = (await self.conn.execute(select(t.holds).where(t.holds.c.work_id == work_id))).first()
        if row is None:
            return None
        await self.conn.execute(delete(t.holds).where(t.holds.c.work_id == work_id))
        return Hold(
            work_id, row.guard, row.reason, row.since, row.guard_since, True, row.scope, row.scope
        )

    async def reschedule(self, work_id: int, due_at: float) -> None:
        """Put a claimed item back, due again at `due_at`."""
        await self.conn.execute(
            update(t.work)
            .where(t.work.c.id == work_id)
            .values(due_at=due_at, claimed_by=None, claimed_until=None)
        )

    async def wake_held(
        self,
        guards: list[str] | None,
        now: float,
        *,
        scope: str | None = None,
        limit: int | None = None,
    ) -> int:
        """Make items held by one of `guards` (any guard: None) due now, of guard `scope`
        only if given, the oldest holds first, at most `limit` of them; an item already
        due (woken, not looked at yet) is not counted. Returns how many were woken."""
        h, w = t.holds.c, t.work.c
        q = (
            select(h.work_id, w.due_at)
            .join_from(t.holds, t.work, w.id == h.work_id)
            .where(w.done_at.is_(None), w.due_at > now)
            .order_by(h.since, h.work_id)
        )
        if guards is not None:
            q = q.where(h.guard.in_(guards))
        if scope is not None:
            q = q.where(h.scope == scope)
        if limit is None:  # all of them (a resume, a reload): claimed by id, their order
            ids = [int(r[0]) for r in await self.conn.execute(q)]
            for chunk in range(0, len(ids), 500):
                woken = ids[chunk : chunk + 500]
                await self.conn.execute(update(t.work).where(w.id.in_(woken)).values(due_at=now))
            return len(ids)
        woken_n = 0
        for _ in range(3):  # another replica woke the one read first: the next one
            rows = list(await self.conn.execute(q.limit(limit - woken_n)))
            raced = False
            for work_id, due_at in rows:
                # Only if no other transaction woke (or claimed and held) it meanwhile:
                # two replicas freeing two slots of one scope wake two steps.
                res = await self.conn.execute(
                    update(t.work)
                    .where(w.id == work_id, w.due_at == due_at, w.done_at.is_(None))
                    .values(due_at=now + woken_n * 1e-6)  # claimed oldest hold first
                )
                if res.rowcount:
                    woken_n += 1
                else:
                    raced = True
            if not raced or woken_n >= limit:
                break
        return woken_n

    async def held_scopes(self) -> list[str]:
        """The guard scopes holding at least one step (read from the scope index)."""
        h = t.holds.c
        rows = await self.conn.execute(select(h.scope).where(h.scope.is_not(None)).distinct())
        return sorted(str(r[0]) for r in rows)

    # --- activity ---------------------------------------------------------------------

    async def unavailable_targets(
        self, targets: list[str], exclude_incident: int
    ) -> dict[str, str]:
        """Which of these targets count as unavailable to their group, each with what its
        incident is doing: an open incident of any rule acted on it (running, verifying,
        awaiting approval, between steps, exhausted, escalating, acknowledged) until it
        closes, or a step still runs on it (resolved mid-command: the command runs on).
        A pending incident no step or approval ever reached does not count: members
        firing together would otherwise hold each other."""
        i, s, a = t.incidents.c, t.steps.c, t.approvals.c
        in_flight = exists().where(s.incident_id == i.id, s.state.in_(IN_FLIGHT))
        acted = or_(
            i.state != State.PENDING.value,
            exists().where(s.incident_id == i.id),
            exists().where(a.incident_id == i.id),
        )
        is_open = i.state.in_([st.value for st in OPEN_STATES])
        # One row per target, its oldest such incident: a storm leaves hundreds open.
        first = (
            select(func.min(i.id).label("id"))
            .where(
                i.target.in_(targets),
                or_(and_(is_open, acted), in_flight),
                i.id != exclude_incident,
            )
            .group_by(i.target)
            .subquery()
        )
        q = select(i.target, i.state, in_flight).where(i.id.in_(select(first.c.id)))
        out: dict[str, str] = {}
        for target, state, running in await self.conn.execute(q):
            out[str(target)] = RUNNING_A_STEP if running else str(state).replace("_", " ")
        return out

    async def lock_holder(
        self, target: str, exclude_incident: int, *, approvals_too: bool
    ) -> tuple[int, str] | None:
        """The open incident holding `target`'s lock, with what it is doing, or None.

        Running or verifying a step holds it; with `approvals_too`, so does waiting for
        approvers or being approved with the step not started yet.
        """
        i, a, s = t.incidents.c, t.approvals.c, t.steps.c
        # A step whose command may still be running holds it whatever the incident's state
        # (handed over or acknowledged mid-step); Engine.recover settles ones a crash left.
        in_flight = exists().where(s.incident_id == i.id, s.state.in_(IN_FLIGHT))
        holding: ColumnElement[bool] = or_(
            i.state.in_([st.value for st in ACTIVE_STATES]), in_flight
        )
        if approvals_too:
            started = exists().where(s.incident_id == a.incident_id, s.step_index == a.step_index)
            approved = (
                exists()
                .where(a.incident_id == i.id, a.state == ApprovalState.APPROVED.value)
                .where(~started)
            )
            holding = or_(
                holding,
                i.state == State.AWAITING_APPROVAL.value,
                and_(i.state == State.PENDING.value, approved),
            )
        q = (
            select(i.id, i.state)
            .where(i.target == target, i.id != exclude_incident, holding)
            .order_by(i.id)
            .limit(1)
        )
        row = (await self.conn.execute(q)).first()
        if row is None:
            return None
        state = State(row[1])
        doing = {
            State.PENDING: "approved, about to run",
            State.RUNNING: "running",
            State.VERIFYING: "verifying",
            State.AWAITING_APPROVAL: "awaiting approval",
        }.get(state, "still running a step")
        return int(row[0]), doing.replace("_", " ")

    async def verify_ends(self, targets: list[str]) -> list[float]:
        """When the verify windows of remediations on these targets end (pending timers)."""
        i, w = t.incidents.c, t.work.c
        q = (
            select(w.due_at)
            .join_from(t.work, t.incidents, w.incident_id == i.id)
            .where(
                i.target.in_(targets),
                i.state.in_([s.value for s in ACTIVE_STATES]),
                w.kind == WorkKind.VERIFY_TIMEOUT.value,
                w.done_at.is_(None),
            )
        )
        return [float(r[0]) for r in await self.conn.execute(q)]

    async def steps_in_flight(self, exclude_incident: int) -> int:
        """Steps dispatching or executing now, across incidents but `exclude_incident` (a
        step start retried after a lost race finds its own row still dispatching)."""
        s = t.steps.c
        q = select(func.count()).where(s.state.in_(IN_FLIGHT), s.incident_id != exclude_incident)
        return int((await self.conn.execute(q)).scalar_one())

    async def step_starts_since(self, since: float) -> list[float]:
        """Start times of steps started after `since`, oldest first."""
        s = t.steps.c
        q = select(s.started_at).where(s.started_at > since).order_by(s.started_at)
        return [float(r[0]) for r in await self.conn.execute(q)]

    async def run_starts_since(self, rule: str, target: str, since: float) -> list[float]:
        """Start times of first steps of (rule, target) incidents after `since`, oldest first."""
        s, i = t.steps.c, t.incidents.c
        q = (
            select(s.started_at)
            .join_from(t.steps, t.incidents, s.incident_id == i.id)
            .where(i.rule == rule, i.target == target, s.step_index == 0, s.started_at > since)
            .order_by(s.started_at)
        )
        return [float(r[0]) for r in await self.conn.execute(q)]

    async def rule_targets_since(self, rule: str, since: float) -> dict[str, float]:
        """The distinct targets of `rule`'s incidents whose first step started after
        `since`, each with its latest such start."""
        s, i = t.steps.c, t.incidents.c
        q = (
            select(i.target, func.max(s.started_at))
            .join_from(t.steps, t.incidents, s.incident_id == i.id)
            .where(i.rule == rule, i.target.is_not(None), s.step_index == 0, s.started_at > since)
            .group_by(i.target)
        )
        return {str(r[0]): float(r[1]) for r in await self.conn.execute(q)}

    # --- quarantine -------------------------------------------------------------------

    async def target_health(self, rule: str, target: str) -> TargetHealth | None:
        """The failure streak and quarantine of (rule, target)."""
        h = t.target_health.c
        row = (
            await self.conn.execute(
                select(t.target_health).where(h.rule == rule, h.target == target)
            )
        ).first()
        if row is None:
            return None
        return TargetHealth(
            row.rule, row.target, row.failures, row.quarantined_at, row.reason, row.updated_at
        )

    async def save_target_health(self, health: TargetHealth) -> None:
        """Write the streak and quarantine of (rule, target)."""
        values = {
            "failures": health.failures,
            "quarantined_at": health.quarantined_at,
            "reason": health.reason,
            "updated_at": health.updated_at,
        }
        keys = {"rule": health.rule, "target": health.target}
        await upsert(self.conn, t.target_health, keys, values)

    async def quarantined(self) -> list[TargetHealth]:
        """Every quarantined (rule, target)."""
        h = t.target_health.c
        q = select(t.target_health).where(h.quarantined_at.is_not(None)).order_by(h.rule, h.target)
        return [
            TargetHealth(r.rule, r.target, r.failures, r.quarantined_at, r.reason, r.updated_at)
            for r in await self.conn.execute(q)
        ]
