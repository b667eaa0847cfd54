"""Runs due work: steps (at most once each, crash-safe) and verify-window expiries."""

from __future__ import annotations

import json
import logging
from typing import Any

from remediator.actions.approval import parts_approval_policy, plan_approval_policy
from remediator.actions.base import Plan
from remediator.config.durations import format_duration
from remediator.config.models import Host, RuleSpec, StepSpec
from remediator.config.steps import ActionCall
from remediator.engine import approvals, escalation
from remediator.engine.context import EngineContext
from remediator.engine.escalation import hand_over, page_now, pass_on
from remediator.engine.guards import (
    CONCURRENCY_RECHECK_S,
    NOTIFY_AT_ONCE,
    RECHECK_S,
    WOKEN,
    Verdict,
)
from remediator.engine.notices import sync_incident, thread_note
from remediator.engine.quarantine import record_failure
from remediator.engine.stepoutcome import Dispatch, StepOutcomes
from remediator.errors import ActionError, TemplateError
from remediator.rules import alert_context, host_context
from remediator.silences.create import silence_dry_run, silence_step, silence_unavailable
from remediator.store.base import Tx
from remediator.store.events import (
    Event,
    GuardRefused,
    GuardReleased,
    HoldTimeout,
    RuleGone,
    StepRefused,
    StepScheduled,
)
from remediator.store.records import (
    Approval,
    ApprovalState,
    Incident,
    State,
    StepState,
    WorkItem,
    WorkKind,
)

log = logging.getLogger(__name__)
FINISHED = frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.UNKNOWN, StepState.DRY_RUN})


class Runner(StepOutcomes):
    """Executes claimed work items."""

    def __init__(self, ctx: EngineContext, owner: str) -> None:
        self.ctx = ctx
        self.owner = owner  # whose claims this runner's work items are

    async def run(self, item: WorkItem) -> None:
        """Carry out one claimed work item."""
        if item.kind is WorkKind.RUN_STEP:
            dispatch = await self._prepare(item)
            if dispatch is not None:
                await self._silence(dispatch, item.step_index)
                await self._execute(item, dispatch)
        elif item.kind is WorkKind.VERIFY_TIMEOUT:
            await self._verify_expired(item)
        else:
            handler = (
                approvals.expire if item.kind is WorkKind.APPROVAL_TIMEOUT else escalation.run_step
            )
            async with self.ctx.store.write() as tx:
                await handler(self.ctx, tx, item, self.ctx.clock.now())

    async def _silence(self, d: Dispatch, step_index: int) -> None:
        """A `silence:` rule's step silences its alert first (bounded by the API timeout;
        a failure is audited and the step runs regardless). A dry run only says how long
        the silence would last: muting the other receivers while nothing is done would
        hide the alert from everyone."""
        client = self.ctx.silencer
        if d.rule.silence is None:
            return
        try:
            if self.ctx.dry_run(d.rule.dry_run):
                await silence_dry_run(self.ctx, d.incident, d.rule, step_index)
            elif client is None:
                await silence_unavailable(self.ctx, d.incident)
            else:
                await silence_step(self.ctx, client, d.incident, d.rule, step_index)
        except Exception:  # a bug: the silence fails, on record; the step still runs
            self.ctx.metrics.silences.labels(result="failed").inc()
            log.exception("silence failed", extra={"incident": d.incident.id})

    async def _load(
        self, tx: Tx, item: WorkItem, incident: Incident | None
    ) -> tuple[Incident, RuleSpec] | None:
        """The item's incident (read by the caller, locked) and rule, if it is still to do."""
        now = self.ctx.clock.now()
        rule = self.ctx.rules.by_name.get(incident.rule) if incident else None
        if incident is None or not incident.is_open:
            await tx.finish_work(item.id, now, "incident_closed")
            return None
        if incident.state is State.ACKNOWLEDGED:
            await tx.finish_work(item.id, now, "acknowledged")
            return None
        if rule is None or item.step_index >= len(rule.steps):
            await tx.finish_work(item.id, now, "rule_gone")
            await tx.audit(incident.id, RuleGone(incident.rule), now)
            await tx.update_incident(incident.id, now, state=State.EXHAUSTED)
            return None
        return incident, rule

    def _approval_policy(self, rule: RuleSpec, spec: StepSpec, plan: Plan) -> str | None:
        """Decided on the rendered plan: what will run, not what the rule's template says."""
        approvals = self.ctx.config.policies.approvals
        always = approvals.always_for if approvals else []
        if not spec.is_all:
            return plan_approval_policy(plan, rule.approval_of(spec), always)
        pairs = zip(plan.parts, spec.parts, strict=True)
        asked = [(p, rule.approval_of(spec, part)) for p, part in pairs]
        return parts_approval_policy(asked, always)  # one request for every part

    def _plan(self, incident: Incident, rule: RuleSpec, spec: StepSpec) -> Plan:
        """The step's plan; an `all:` step's holds each part's, each checked as a step's."""
        host = self.ctx.config.hosts.get(incident.target) if incident.target else None
        context: dict[str, Any] = alert_context(incident.labels, incident.annotations)
        if host is not None:
            context["target"] = host_context(host)
        plans = tuple(self._plan_part(incident, part, context, host) for part in spec.parts)
        return Plan.together(spec.action, plans) if spec.is_all else plans[0]

    def _plan_part(
        self, incident: Incident, part: ActionCall, context: dict[str, Any], host: Host | None
    ) -> Plan:
        action = self.ctx.actions.get(part.action)
        if action is None:
            raise ActionError(f"action {part.action} is not available (is `ssh:` configured?)")
        if action.needs_ssh and host is None:
            raise ActionError(f"target {incident.target!r} is no longer in the inventory")
        plan = action.plan(part.params, context, host)
        self.ctx.protected.check(plan.blocks)  # of the config in force now, reloads included
        return plan

    async def _prepare(self, item: WorkItem) -> Dispatch | None:
        async with self.ctx.store.write() as tx:
            # The incident's row is locked as it is read (PostgreSQL), then replicas take
            # turns per guard scope to the commit: what the guards read next has every
            # start in the step's scopes.
            known = await tx.incident(item.incident_id)
            if known is not None:
                await tx.lock_scopes(self.ctx.guards.scopes(known))
            now = self.ctx.clock.now()
            loaded = await self._load(tx, item, known)
            if loaded is None:
                return None
            incident, rule = loaded
            spec = rule.steps[item.step_index]
            existing = await tx.step(incident.id, item.step_index)
            if existing is not None and existing.state is StepState.EXECUTING:
                await self._recover_executing(tx, item, incident, rule, existing, now)
                return None
            if existing is not None and existing.state in FINISHED:
                await tx.finish_work(item.id, now, "duplicate")
                return None
            first_run = item.step_index == 0 and existing is None
            approval = await tx.approval_for(incident.id, item.step_index)
            approved = approval is not None and approval.state is ApprovalState.APPROVED
            if not await self._guards_pass(tx, item, incident, rule, first_run, approved, now):
                return None
            try:
                plan = self._plan(incident, rule, spec)
                policy = self._approval_policy(rule, spec, plan)
            except (TemplateError, ActionError) as exc:
                await tx.finish_work(item.id, now, "refused")
                await tx.audit(incident.id, StepRefused(item.step_index, str(exc)), now)
                await hand_over(
                    self.ctx, tx, incident, rule, f"step {item.step_index + 1} refused: {exc}", now
                )
                return None
            if policy is not None and not await self._approved(
                tx, item, incident, rule, approvals.Asked(plan, policy), approval, now
            ):
                return None
            step = await tx.start_step(
                incident.id, item.step_index, spec.action, plan.describe(), now
            )
            await tx.update_incident(
                incident.id, now, state=State.RUNNING, step_index=item.step_index
            )
            if incident.target is not None:
                await tx.set_cooldown(rule.name, incident.target, now + rule.cooldown)
            detail = {"step": item.step_index, "attempt": step.attempts, **plan.describe()}
            await tx.audit(incident.id, Event("step_dispatching", detail), now)
            await sync_incident(self.ctx, tx, incident.id, now)
            await thread_note(
                self.ctx,
                tx,
                incident.id,
                f"step {item.step_index + 1} `{spec.action}`: running",
                now,
            )
        return Dispatch(incident, rule, spec, step, plan)

    async def _approved(
        self,
        tx: Tx,
        item: WorkItem,
        incident: Incident,
        rule: RuleSpec,
        asked: approvals.Asked,
        approval: Approval | None,
        now: float,
    ) -> bool:
        """Whether humans approved this step (`approval`, the step's, read under the
        incident's lock); asks them when nobody has yet."""
        plan = asked.plan
        if approval is not None and approval.state is ApprovalState.APPROVED:
            # Humans approved one exact command under one policy; a reload may have changed
            # the step, the host or the policy.
            if approval.command == json.loads(json.dumps(asked.command)):
                return True
            reason = (
                f"step {item.step_index + 1} ({plan.action}) changed after it was approved "
                "(rules, policies or inventory reloaded): not run; approve it again in a new "
                "incident"
            )
        elif approval is None:
            requested = await approvals.request(self.ctx, tx, item, incident, asked, now)
            if requested is not None:
                return False
            reason = (
                f"step {item.step_index + 1} ({plan.action}) needs approval, "
                f"but policies define no approval policy {asked.policy!r}"
            )
        elif approval.state is ApprovalState.PENDING:
            await tx.finish_work(item.id, now, "awaiting_approval")
            return False
        else:
            reason = f"approval of step {item.step_index + 1} is {approval.state.value}"
        await tx.finish_work(item.id, now, "refused")
        await tx.audit(incident.id, StepRefused(item.step_index, reason), now)
        await hand_over(self.ctx, tx, incident, rule, reason, now)
        return False

    async def _guards_pass(
        self,
        tx: Tx,
        item: WorkItem,
        incident: Incident,
        rule: RuleSpec,
        first_run: bool,
        approved: bool,
        now: float,
    ) -> bool:
        verdict = await self.ctx.guards.check(
            tx, incident, rule, first_run=first_run, now=now, approved=approved
        )
        if verdict is None:
            released = await tx.release_hold(item.id)
            if released is not None:
                done = GuardReleased(item.step_index, released.guard, now - released.since)
                await tx.audit(incident.id, done, now)
                # Its scope may have more than one slot free (a wake missed, a limit
                # raised): the next step it holds looks too, and stops the chain when held.
                await pass_on(self.ctx, tx, released.scope, now)
            return True
        self.ctx.metrics.guard_holds.labels(guard=verdict.guard).inc()
        if verdict.final:
            released = await tx.release_hold(item.id)
            if released is not None:  # woken for a slot it will never take: the next one's
                await pass_on(self.ctx, tx, released.scope, now)
            await tx.finish_work(item.id, now, "refused")
            refused = GuardRefused(
                item.step_index,
                verdict.guard,
                verdict.reason,
                verdict.until,
                list(verdict.targets) or None,
            )
            await tx.audit(incident.id, refused, now)
            await hand_over(self.ctx, tx, incident, rule, verdict.reason, now)
            return False
        await self._hold(tx, item, incident, rule, verdict, now)
        return False

    async def _hold(
        self,
        tx: Tx,
        item: WorkItem,
        incident: Incident,
        rule: RuleSpec,
        verdict: Verdict,
        now: float,
    ) -> None:
        hold = await tx.hold(item.id, verdict.guard, verdict.reason, now, verdict.scope)
        if hold.was_scope != hold.scope:
            # Woken for a slot of the scope that held it, now held by another: the slot
            # goes to the next step that scope holds.
            await pass_on(self.ctx, tx, hold.was_scope, now)
        deadline = hold.since + rule.hold_timeout
        if now >= deadline:
            await tx.release_hold(item.id)
            await pass_on(self.ctx, tx, hold.scope, now)
            await tx.finish_work(item.id, now, "hold_timeout")
            reason = (
                f"held by {verdict.guard} for longer than hold_timeout "
                f"({format_duration(rule.hold_timeout)}): {verdict.reason}"
            )
            await tx.audit(incident.id, HoldTimeout(item.step_index, verdict.guard, reason), now)
            await hand_over(self.ctx, tx, incident, rule, reason, now)
            return
        if hold.changed:
            detail = {"step": item.step_index, **verdict.detail()}
            await tx.audit(incident.id, Event("guard_held", detail), now)
            if incident.state is not State.PENDING:
                await tx.update_incident(incident.id, now, state=State.PENDING)
            if verdict.guard in NOTIFY_AT_ONCE:
                await page_now(self.ctx, tx, incident, rule, verdict.reason, now)
        await tx.reschedule(item.id, max(min(_recheck_at(verdict, now), deadline), now + 0.01))

    async def _verify_expired(self, item: WorkItem) -> None:
        async with self.ctx.store.write() as tx:
            now = self.ctx.clock.now()
            loaded = await self._load(tx, item, await tx.incident(item.incident_id))
            if loaded is None:
                return
            incident, rule = loaded
            await tx.lock_scopes(self.ctx.guards.scopes(incident))  # a quarantine may follow
            await tx.finish_work(item.id, now, "expired")
            if incident.state is not State.VERIFYING or incident.step_index != item.step_index:
                return
            nxt = item.step_index + 1
            if nxt >= len(rule.steps):
                why = "alert still firing after the last step"
                await hand_over(self.ctx, tx, incident, rule, why, now)
                await record_failure(self.ctx, tx, incident, rule, why, now)
                return
            await tx.update_incident(incident.id, now, state=State.PENDING)
            await tx.schedule(WorkKind.RUN_STEP, incident.id, nxt, now)
            why = "alert still firing after the verify window"
            await tx.audit(incident.id, StepScheduled(nxt, rule.steps[nxt].action, why), now)
            self.ctx.work_ready.set()


def _recheck_at(verdict: Verdict, now: float) -> float:
    """When a held step is looked at again if nothing wakes it first (its hold_timeout
    caps this): a guard whose scope wakes its holds when a slot frees, never before;
    others at their known end (a target lock: its holder's verify window), or every
    RECHECK_S."""
    if verdict.guard == "max_concurrent_actions":
        return now + CONCURRENCY_RECHECK_S
    if verdict.guard in WOKEN:
        return float("inf")
    return verdict.until if verdict.until is not None else now + RECHECK_S
