"""Stored webhook bodies -> alert status -> incidents: one transaction per body."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from remediator.alerts import Alert, parse_alerts
from remediator.config.durations import format_duration
from remediator.config.models import RuleSpec
from remediator.engine.context import EngineContext
from remediator.escalation import hand_over
from remediator.rules import alert_context, check_require, resolve_target
from remediator.store.base import Tx
from remediator.store.records import Incident, State, StepState, WorkKind

log = logging.getLogger(__name__)
BATCH = 50


class Intake:
    """Turns the inbox into incidents; a re-sent notification changes nothing."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    async def drain(self) -> int:
        """Process stored bodies until the inbox is empty; returns how many."""
        total = 0
        while True:
            async with self.ctx.store.write() as tx:
                items = await tx.take_inbox(BATCH)
                for item in items:
                    await self._apply(tx, item.id, item.body)
            if not items:
                return total
            total += len(items)

    async def _apply(self, tx: Tx, item_id: int, body: str) -> None:
        now = self.ctx.clock.now()
        try:
            alerts = parse_alerts(body)
        except ValidationError as exc:  # validated on receipt; only a schema change gets here
            await tx.audit(None, "inbox_unreadable", {"id": item_id, "error": str(exc)[:500]}, now)
            alerts = []
        for alert in alerts:
            await self._apply_alert(tx, alert, now)
        await tx.delete_inbox(item_id)

    async def _apply_alert(self, tx: Tx, alert: Alert, now: float) -> None:
        previous = await tx.alert_status(alert.fingerprint, alert.starts_at)
        await tx.save_alert(
            alert.fingerprint,
            alert.starts_at,
            alert.status,
            alert.labels,
            alert.annotations,
            alert.ends_at,
            now,
        )
        if alert.status == previous:
            return
        if alert.status == "resolved":
            for incident in await tx.open_incidents_for(alert.fingerprint, alert.starts_at):
                await self._close(tx, incident, now)
        elif previous is None:
            for rule in self.ctx.rules.match(alert.labels):
                await self._open(tx, rule, alert, now)

    async def _open(self, tx: Tx, rule: RuleSpec, alert: Alert, now: float) -> None:
        incident = await tx.create_incident(
            rule.name, alert.fingerprint, alert.starts_at, alert.labels, alert.annotations, now
        )
        if incident is None:
            return
        alertname = alert.labels.get("alertname", "")
        await tx.audit(incident.id, "matched", {"rule": rule.name, "alertname": alertname}, now)
        log.info("incident opened", extra={"incident": incident.id, "rule": rule.name})
        reason = check_require(rule, alert.labels)
        if reason is not None:
            await tx.audit(incident.id, "require_failed", {"reason": reason}, now)
            await hand_over(tx, incident, rule, reason, now)
            return
        if not rule.steps:
            await hand_over(tx, incident, rule, "rule has no steps: page only", now)
            return
        target = resolve_target(
            self.ctx.config, rule, alert_context(alert.labels, alert.annotations)
        )
        if target.error is not None:
            await tx.audit(incident.id, "target_refused", {"reason": target.error}, now)
            await hand_over(tx, incident, rule, target.error, now)
            return
        if target.host is not None:
            await tx.update_incident(incident.id, now, target=target.host.name)
            until = await tx.cooldown_until(rule.name, target.host.name)
            if until is not None and until > now:
                wait = format_duration(until - now)
                detail = {"guard": "cooldown", "until": until, "reason": f"cooldown for {wait}"}
                await tx.audit(incident.id, "guard_held", detail, now)
                await hand_over(tx, incident, rule, f"cooldown active for {wait}", now)
                return
        await tx.schedule(WorkKind.RUN_STEP, incident.id, 0, now)
        await tx.audit(
            incident.id, "step_scheduled", {"step": 0, "action": rule.steps[0].action}, now
        )
        self.ctx.work_ready.set()

    async def _close(self, tx: Tx, incident: Incident, now: float) -> None:
        cancelled = await tx.cancel_work(incident.id, now)
        ran = any(
            s.executing_at is not None or s.state is StepState.DRY_RUN
            for s in await tx.steps(incident.id)
        )
        state = State.REMEDIATED if ran else State.RESOLVED
        await tx.update_incident(incident.id, now, state=state, closed_at=now)
        detail = {
            "state": state.value,
            "previous": incident.state.value,
            "cancelled_work": cancelled,
        }
        await tx.audit(incident.id, "resolved", detail, now)
        log.info("incident closed", extra={"incident": incident.id, "state": state.value})
