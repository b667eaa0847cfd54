"""Stored webhook bodies -> alert status -> incidents: one transaction per body."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from functools import partial
from typing import Any

from remediator.alerts import Alert, parse_alerts
from remediator.config.models import RuleSpec
from remediator.deadletters import DeadLetters, describe
from remediator.engine.context import EngineContext
from remediator.engine.escalation import (
    cancel_approvals,
    free_target,
    hand_over,
    start_chain,
    stop_chain,
)
from remediator.engine.notices import sync_incident
from remediator.engine.quarantine import record_success
from remediator.errors import StoreError
from remediator.rules import alert_context, check_require, resolve_target
from remediator.store.base import AuditTx, Tx
from remediator.store.conflict import retry_conflict
from remediator.store.events import (
    InboxUnreadable,
    Matched,
    NotEscalated,
    RequireFailed,
    Resolved,
    StepScheduled,
    TargetRefused,
)
from remediator.store.records import (
    HANDED_OVER,
    EscalationState,
    InboxItem,
    Incident,
    State,
    StepState,
    WorkKind,
)

log = logging.getLogger(__name__)
BATCH = 20  # notifications per transaction: short stalls of the event loop
PAGE_AT_START = "page_at_start: paged when the incident opened, while its steps run"


class Intake:
    """Turns the inbox into incidents; a re-sent notification changes nothing."""

    def __init__(self, ctx: EngineContext, dead: DeadLetters) -> None:
        self.ctx = ctx
        self.dead = dead

    async def drain(self, before_batch: Callable[[], Awaitable[None]] | None = None) -> int:
        """Apply spooled notifications until the spool is empty; returns how many."""
        total = 0
        while True:
            if before_batch is not None:
                await before_batch()
            items = await self.ctx.store.take_inbox(BATCH)
            if not items:
                return total
            try:
                # A replica applying the same notification at once: one of the two
                # transactions loses on a unique key and runs again, finding it applied.
                await retry_conflict(partial(self._apply_batch, items))
            except StoreError:
                raise
            except Exception:
                # Something in the batch is poison: find it, and let the rest through.
                for item in items:
                    await self._apply_alone(item)
                # Deleted only after the commits: a crash in between re-applies, a no-op.
                await self.ctx.store.delete_inbox([item.id for item in items])
            total += len(items)
            if len(items) < BATCH:
                # The inbox had no more: what arrives from now on sets inbox_ready again
                # (the engine cleared it before this drain), so no empty take is needed.
                return total

    async def _apply_batch(self, items: list[InboxItem]) -> None:
        async with self.ctx.store.consume_inbox([item.id for item in items]) as tx:
            await self._apply(tx, await self._read(tx, items))

    async def _apply_one(self, alert: Alert) -> None:
        async with self.ctx.store.write() as tx:
            await self._apply(tx, [alert])

    async def _read(self, tx: AuditTx, items: list[InboxItem]) -> list[Alert]:
        now = self.ctx.clock.now()
        alerts: list[Alert] = []
        for item in items:
            try:
                alerts.extend(parse_alerts(item.body))
            except (ValueError, OverflowError) as exc:  # PayloadError is a ValueError
                # Validated on receipt; only corruption or an older receiver's gap gets
                # here. Audited and dropped: one bad row must not stop the rows behind it.
                await tx.audit(None, InboxUnreadable(item.id, str(exc)[:500]), now)
        return alerts

    async def _apply_alone(self, item: InboxItem) -> None:
        """One notification in its own transactions: each alert that fails is a dead letter."""
        try:
            async with self.ctx.store.write() as tx:
                alerts = await self._read(tx, [item])
        except StoreError:
            raise
        except Exception as exc:
            body = {"received_at": item.received_at, "body": item.body}
            await self.dead.bury("intake", f"inbox:{item.id}", exc, payload=body)
            return
        for alert in alerts:
            try:
                await retry_conflict(partial(self._apply_one, alert))
            except StoreError:
                raise
            except Exception as exc:
                payload = {"received_at": item.received_at, "alert": asdict(alert)}
                await self.dead.bury("intake", f"inbox:{item.id}", exc, payload=payload)
                await self._hand_over_alert(alert, describe(exc))

    async def _hand_over_alert(self, alert: Alert, error: str) -> None:
        """An alert intake failed on goes to humans: its open incidents, or new ones."""
        reason = f"internal error while taking in the alert: {error}"
        try:
            async with self.ctx.store.write() as tx:
                now = self.ctx.clock.now()
                known = await tx.alert_statuses([alert.fingerprint])
                key = (alert.fingerprint, alert.starts_at)
                # Known from now on: a re-send of the same poison changes nothing. Saved
                # before its incidents are locked, in the order _apply takes the two.
                if known.get(key) not in (alert.status, "resolved"):
                    row = _row(alert, now)
                    new, changed = ([row], []) if key not in known else ([], [row])
                    await tx.save_alerts(new, changed)
                incidents = await tx.open_incidents_for(alert.fingerprint, alert.starts_at)
                if known.get(key) == "resolved":
                    incidents = []  # resolved already: final for this instance (see _apply)
                elif not incidents and alert.status == "firing":
                    for rule in self.ctx.rules.match(alert.labels):
                        await self._open_handed_over(tx, rule, alert, reason, now)
        except StoreError:
            raise
        except Exception:
            log.exception("could not page for an alert that intake failed on")
            return
        for incident in incidents:
            if alert.status == "resolved" and await self._close_alone(incident):
                continue
            await self.dead.hand_over(incident.id, reason)

    async def _close_alone(self, incident: Incident) -> bool:
        """Close one incident of a resolved alert in its own transaction; False if it raises."""
        try:
            async with self.ctx.store.write() as tx:
                # Read again, locked before its work rows: another replica may have closed
                # or acknowledged it since the transaction that found it.
                current = await tx.incident(incident.id)
                if current is not None and current.is_open:
                    await self._close(tx, current, self.ctx.clock.now())
        except StoreError:
            raise
        except Exception:
            log.exception("closing incident %s of a resolved alert failed", incident.id)
            return False
        return True

    async def _open_handed_over(
        self, tx: Tx, rule: RuleSpec, alert: Alert, reason: str, now: float
    ) -> None:
        incident = await _create(tx, rule, alert, now)
        if incident is not None:
            await tx.audit(incident.id, Matched(rule.name), now)
            await hand_over(self.ctx, tx, incident, rule, reason, now)

    async def _apply(self, tx: Tx, alerts: list[Alert]) -> None:
        now = self.ctx.clock.now()
        known = await tx.alert_statuses([a.fingerprint for a in alerts])
        new: dict[tuple[str, str], dict[str, Any]] = {}
        changed: dict[tuple[str, str], dict[str, Any]] = {}
        transitions: list[tuple[str | None, Alert]] = []
        for alert in alerts:
            key = (alert.fingerprint, alert.starts_at)
            previous = known.get(key)
            if alert.status == previous or previous == "resolved":
                # A re-send, an HA peer's duplicate, or a firing copy that reached another
                # replica late: an alert that fires again has a new startsAt.
                continue
            known[key] = alert.status
            transitions.append((previous, alert))
            row = _row(alert, now)
            if key in new or previous is None:
                new[key] = row
            else:
                changed[key] = row
        await tx.save_alerts(list(new.values()), list(changed.values()))
        for previous, alert in transitions:
            await self._transition(tx, previous, alert, now)

    async def _transition(self, tx: Tx, previous: str | None, alert: Alert, now: float) -> None:
        if alert.status == "resolved":
            for incident in await tx.open_incidents_for(alert.fingerprint, alert.starts_at):
                await self._close(tx, incident, now)
        elif previous is None:
            for rule in self.ctx.rules.match(alert.labels):
                await self._open(tx, rule, alert, now)

    async def _open(self, tx: Tx, rule: RuleSpec, alert: Alert, now: float) -> None:
        incident = await _create(tx, rule, alert, now)
        if incident is None:
            return
        alertname = alert.labels.get("alertname", "")
        await tx.audit(incident.id, Matched(rule.name, alertname), now)
        log.info("incident opened", extra={"incident": incident.id, "rule": rule.name})
        if rule.page_at_start:
            await self._page_at_start(tx, rule, incident, now)
        reason = check_require(rule, alert.labels)
        if reason is not None:
            await tx.audit(incident.id, RequireFailed(reason), now)
            await hand_over(self.ctx, tx, incident, rule, reason, now)
            return
        if not rule.steps:
            await hand_over(self.ctx, tx, incident, rule, "rule has no steps: page only", now)
            return
        target = resolve_target(
            self.ctx.config, rule, alert_context(alert.labels, alert.annotations)
        )
        if target.error is not None:
            await tx.audit(incident.id, TargetRefused(target.error), now)
            await hand_over(self.ctx, tx, incident, rule, target.error, now)
            return
        if target.host is not None:
            await tx.update_incident(incident.id, now, target=target.host.name)
            incident = replace(incident, target=target.host.name)
        await tx.schedule(WorkKind.RUN_STEP, incident.id, 0, now)
        await tx.audit(incident.id, StepScheduled(0, rule.steps[0].action), now)
        self.ctx.work_ready.set()

    async def _page_at_start(self, tx: Tx, rule: RuleSpec, incident: Incident, now: float) -> None:
        """Humans are paged at once while automation runs (same incident, same message)."""
        if await start_chain(self.ctx, tx, incident, rule, PAGE_AT_START, now):
            await sync_incident(self.ctx, tx, incident.id, now)
        else:
            why = f"page_at_start: escalation chain {rule.escalate!r} is not in the policies"
            await tx.audit(incident.id, NotEscalated(why), now)

    async def _close(self, tx: Tx, incident: Incident, now: float) -> None:
        cancelled = await tx.cancel_work(incident.id, now)
        ran = any(
            s.executing_at is not None or s.state is StepState.DRY_RUN
            for s in await tx.steps(incident.id)
        )
        state = State.REMEDIATED if ran else State.RESOLVED
        await tx.update_incident(incident.id, now, state=state, closed_at=now)
        if state is State.REMEDIATED and incident.state not in HANDED_OVER:
            # Resolved while automation was in charge; after a hand-over humans fixed it,
            # and the failure streak (toward quarantine) goes on.
            await record_success(tx, incident, now)
        # Its target (and group slot) is free before the verify window would end.
        await free_target(self.ctx, tx, incident, now, closing=True)
        await stop_chain(tx, incident.id, EscalationState.RESOLVED, None, now)
        await cancel_approvals(self.ctx, tx, incident.id, "the alert resolved", now)
        resolved = Resolved(state.value, incident.state.value, cancelled)
        await tx.audit(incident.id, resolved, now)
        await sync_incident(self.ctx, tx, incident.id, now, create=False)
        log.info("incident closed", extra={"incident": incident.id, "state": state.value})


def _row(alert: Alert, now: float) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "starts_at": alert.starts_at,
        "status": alert.status,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "ends_at": alert.ends_at,
        "at": now,
    }


async def _create(tx: Tx, rule: RuleSpec, alert: Alert, now: float) -> Incident | None:
    """The rule's incident for `alert` (None: it has one already); its annotations are
    the alert's, with the rule's `runbook_url` over the alert's own."""
    annotations = alert.annotations
    if rule.runbook_url is not None:
        annotations = {**annotations, "runbook_url": rule.runbook_url}
    return await tx.create_incident(
        rule.name, alert.fingerprint, alert.starts_at, alert.labels, annotations, now
    )
