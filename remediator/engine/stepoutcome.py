"""A dispatched step's outcome: marked executing right before its command, run (at
most once), recorded, then verified or handed over; a step found executing after a
crash is recorded unknown, never re-sent."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from remediator.actions.base import Outcome, Plan
from remediator.config.models import RuleSpec, StepSpec
from remediator.engine.context import EngineContext
from remediator.engine.escalation import hand_over, step_ended
from remediator.engine.notices import thread_note
from remediator.engine.quarantine import record_failure
from remediator.engine.together import PartResult, combined, dry, run_part, run_together
from remediator.errors import ClaimLost, StepCancelled
from remediator.store.base import Tx
from remediator.store.conflict import retry_conflict
from remediator.store.events import (
    Event,
    StepExecuting,
    StepNotSent,
    StepOutcomeUnknown,
    StepPart,
    Verifying,
)
from remediator.store.records import (
    ClaimStatus,
    Incident,
    State,
    StepRecord,
    StepState,
    WorkItem,
    WorkKind,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dispatch:
    """A step recorded as dispatching, with its plan, ready to execute."""

    incident: Incident
    rule: RuleSpec
    spec: StepSpec
    step: StepRecord
    plan: Plan


def part_entry(step_index: int, n: int, part: PartResult) -> StepPart:
    """The audit entry of one part of an `all:` step."""
    o = part.outcome
    output = o.output[:2000] if o.output else None
    return StepPart(step_index, n, part.action, part.state.value, o.exit_status, o.error, output)


class StepOutcomes:
    """The runner's half that executes a dispatched step and records what came of it."""

    ctx: EngineContext
    owner: str  # whose claims the work items are

    async def _recover_executing(
        self,
        tx: Tx,
        item: WorkItem,
        incident: Incident,
        rule: RuleSpec,
        step: StepRecord,
        now: float,
    ) -> None:
        # The command may have been sent before a crash: never send it again.
        reason = "the daemon stopped after sending the command; not re-sent"
        await tx.update_step(step.id, StepState.UNKNOWN, finished_at=now, error=reason)
        await tx.audit(incident.id, StepOutcomeUnknown(step.step_index, reason), now)
        parts = step.command.get("parts") if isinstance(step.command, dict) else None
        if not isinstance(parts, list):  # a step of one action
            self.ctx.metrics.actions.labels(action=step.action, result="unknown").inc()
        for n, part in enumerate(parts or []):
            action = str(part.get("action", "?")) if isinstance(part, dict) else "?"
            unknown = StepPart(step.step_index, n, action, "unknown", error=reason)
            await tx.audit(incident.id, unknown, now)
            self.ctx.metrics.actions.labels(action=action, result="unknown").inc()
        await self._after_step(tx, item, incident, rule, ok=True, now=now)

    async def _execute(self, item: WorkItem, d: Dispatch) -> None:
        plans = d.plan.parts or (d.plan,)

        async def mark() -> None:
            await self._mark_executing(item, d)

        if self.ctx.dry_run(d.rule.dry_run):
            results = [dry(plan) for plan in plans]
        elif d.plan.parts:
            actions = [self.ctx.actions[part.action] for part in d.spec.parts]
            results = await run_together(list(zip(actions, plans, strict=True)), mark)
        else:
            results = [await run_part(self.ctx.actions[d.spec.action], d.plan, mark)]
        for r in results:
            self.ctx.metrics.action_duration.labels(action=r.action).observe(r.elapsed_s)
            self.ctx.metrics.actions.labels(action=r.action, result=r.state.value).inc()
        if d.plan.parts:
            (state, outcome), parts = combined(results), results
        else:
            state, outcome, parts = results[0].state, results[0].outcome, []
        # The command ran: its outcome is recorded even if another replica wrote first.
        await retry_conflict(partial(self._finish, item, d, state, outcome, parts))

    async def _mark_executing(self, item: WorkItem, d: Dispatch) -> None:
        """Right before the command: still ours and still to do, or nothing is sent."""
        async with self.ctx.store.write() as tx:
            now = self.ctx.clock.now()
            # The incident before the work row, as an ack (which cancels that row) takes
            # them; the audit row below would wait for the incident's lock anyway.
            current = await tx.incident(d.incident.id)
            claim = await tx.claim_status(item.id, self.owner)
            if claim is ClaimStatus.TAKEN:
                # Our lease ran out unrenewed and another replica took the step: it runs
                # it (or records it unknown); sending it here too would run it twice.
                raise ClaimLost(f"work item {item.id} (step {d.step.step_index + 1}) was taken")
            if claim is ClaimStatus.CANCELLED:
                # Resolved, acknowledged or handed over while the step was being started
                # (an SSH connect can take a while): humans or the resolve decide now.
                why = "cancelled before its command was sent (the incident moved on)"
                await tx.update_step(d.step.id, StepState.FAILED, finished_at=now, error=why)
                await tx.audit(d.incident.id, StepNotSent(d.step.step_index, why), now)
                if current is not None:
                    await step_ended(self.ctx, tx, current, now)
            else:
                await tx.update_step(d.step.id, StepState.EXECUTING, executing_at=now)
                await tx.audit(d.incident.id, StepExecuting(d.step.step_index), now)
        if claim is ClaimStatus.CANCELLED:
            raise StepCancelled(f"work item {item.id} (step {d.step.step_index + 1}) cancelled")

    async def _finish(
        self,
        item: WorkItem,
        d: Dispatch,
        state: StepState,
        outcome: Outcome,
        parts: Sequence[PartResult] = (),
    ) -> None:
        async with self.ctx.store.write() as tx:
            now = self.ctx.clock.now()
            # The incident's row, then its guard scopes, as a step start takes them: a
            # failure streak's quarantine is written in the scopes' turn.
            current = await tx.incident(d.incident.id)
            if current is not None:
                await tx.lock_scopes(self.ctx.guards.scopes(current))
            await tx.update_step(
                d.step.id,
                state,
                finished_at=now,
                exit_status=outcome.exit_status,
                output=outcome.output,
                error=outcome.error,
            )
            if current is not None:
                await step_ended(self.ctx, tx, current, now)
            for n, part in enumerate(parts):
                await tx.audit(d.incident.id, part_entry(d.step.step_index, n, part), now)
            detail: dict[str, Any] = {"step": d.step.step_index, "exit_status": outcome.exit_status}
            if outcome.error:
                detail["error"] = outcome.error
            if outcome.output:
                detail["output"] = outcome.output[:2000]
            if state is StepState.DRY_RUN:
                detail["would_run"] = d.plan.describe()
            await tx.audit(d.incident.id, Event(f"step_{state.value}", detail), now)
            note = f"step {d.step.step_index + 1} `{d.spec.action}`: {state.value}"
            if outcome.exit_status is not None:
                note += f" (exit {outcome.exit_status})"
            if parts:
                note += " (" + ", ".join(f"`{p.action}` {p.state.value}" for p in parts) + ")"
            await thread_note(self.ctx, tx, d.incident.id, note, now)
            log.info(
                "step finished",
                extra={"incident": d.incident.id, "step": d.step.step_index, "state": state.value},
            )
            if current is None or current.state is not State.RUNNING:
                # Closed, acknowledged or handed over while the command ran: recorded, and
                # humans (or the resolve) decide what comes next, not the verify window.
                await tx.finish_work(item.id, now, state.value)
                return
            reason = None if outcome.ok else f"step {d.step.step_index + 1} failed: {outcome.error}"
            await self._after_step(tx, item, current, d.rule, ok=outcome.ok, now=now, reason=reason)

    async def _after_step(
        self,
        tx: Tx,
        item: WorkItem,
        incident: Incident,
        rule: RuleSpec,
        *,
        ok: bool,
        now: float,
        reason: str | None = None,
    ) -> None:
        await tx.finish_work(item.id, now, "done")
        if not ok:
            why = reason or "step failed"
            await hand_over(self.ctx, tx, incident, rule, why, now)
            await record_failure(self.ctx, tx, incident, rule, why, now)
            return
        verify = rule.steps[item.step_index].verify
        await tx.update_incident(incident.id, now, state=State.VERIFYING)
        await tx.schedule(WorkKind.VERIFY_TIMEOUT, incident.id, item.step_index, now + verify)
        await tx.audit(incident.id, Verifying(item.step_index, now + verify), now)
