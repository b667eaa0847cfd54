"""Stored webhook bodies -> alert status -> incidents, a take of the spool at a time.

A take (up to TAKE notifications) is read at once (engine/reading.py: only the alerts
with store work are built, each distinct label set matched once), applied in
transactions of at most APPLY such alerts (one status query and one save each), and
leaves the spool in one delete, with its last transaction on PostgreSQL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from functools import partial
from typing import Any

from remediator.alerts import Alert
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
from remediator.engine.reading import Found, Read, read_all
from remediator.errors import StoreError
from remediator.rules import alert_context, check_require, resolve_target
from remediator.store.base import Tx
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
TAKE = 500  # notifications taken from the spool at once
APPLY = 200  # alerts with store work per transaction: other writers get turns between
# A take whose transactions run past this stops after the one that did; the rows it left
# are taken again at once, after the receiver's turn (`before_batch`).
BUDGET_S = 0.25
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
            items = await self.ctx.store.take_inbox(TAKE)
            if not items:
                return total
            applied = await self._apply_take(items)
            total += applied
            if len(items) < TAKE and applied == len(items):
                # The inbox had no more: what arrives from now on sets inbox_ready again
                # (the engine cleared it before this drain), so no empty take is needed.
                return total

    async def _apply_take(self, items: list[InboxItem]) -> int:
        """Apply taken rows in order, chunk by chunk; returns how many left the spool: all
        of them, or (past BUDGET_S) the chunks applied so far."""
        started = time.perf_counter()
        chunks = _chunks(await read_all(items, self.ctx.rules))
        ids = [item.id for item in items]
        done = 0
        for n, chunk in enumerate(chunks):
            if n and time.perf_counter() - started >= BUDGET_S:
                await self.ctx.store.delete_inbox(ids[:done])
                return done
            # The last chunk's transaction takes the whole take out of the spool.
            await self._apply_chunk(chunk, ids if n == len(chunks) - 1 else [])
            done += len(chunk)
        return done

    async def _apply_chunk(self, chunk: list[Read], consumed: list[int]) -> None:
        """One transaction for the chunk's alerts; `consumed` leave the spool with it."""
        for read in chunk:
            if read.fault is not None:
                await self._bury_body(read.item, read.fault)
        work = [read for read in chunk if read.work]
        if not work:  # no alert a rule takes or that resolves: nothing for the store
            if consumed:
                await self.ctx.store.delete_inbox(consumed)
            return
        try:
            # A replica applying the same notification at once: one of the two
            # transactions loses on a unique key and runs again, finding it applied.
            await retry_conflict(partial(self._apply_reads, work, consumed))
        except StoreError:
            raise
        except Exception:
            # Something in the chunk is poison: find it, and let the rest through.
            for read in work:
                await self._apply_alone(read)
            if consumed:
                # Deleted only after the commits: a crash in between re-applies, a no-op.
                await self.ctx.store.delete_inbox(consumed)

    async def _apply_reads(self, reads: list[Read], consumed: list[int]) -> None:
        store = self.ctx.store
        async with store.consume_inbox(consumed) if consumed else store.write() as tx:
            now = self.ctx.clock.now()
            for read in reads:
                if read.unreadable is not None:
                    await tx.audit(None, InboxUnreadable(read.item.id, read.unreadable), now)
            await self._apply(tx, [alert for read in reads for alert in read.alerts])

    async def _apply_one(self, alert: Alert, rules: Found) -> None:
        async with self.ctx.store.write() as tx:
            await self._apply(tx, [(alert, rules)])

    async def _bury_body(self, item: InboxItem, exc: Exception) -> None:
        body = {"received_at": item.received_at, "body": item.body}
        await self.dead.bury("intake", f"inbox:{item.id}", exc, payload=body)

    async def _apply_alone(self, read: Read) -> None:
        """One notification in its own transactions: each alert that fails is a dead letter."""
        item = read.item
        if read.unreadable is not None:
            try:
                async with self.ctx.store.write() as tx:
                    unreadable = InboxUnreadable(item.id, read.unreadable)
                    await tx.audit(None, unreadable, self.ctx.clock.now())
            except StoreError:
                raise
            except Exception as exc:
                await self._bury_body(item, exc)
            return
        for alert, rules in read.alerts:
            try:
                await retry_conflict(partial(self._apply_one, alert, rules))
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

    async def _apply(self, tx: Tx, alerts: list[tuple[Alert, Found]]) -> None:
        if not alerts:
            return
        now = self.ctx.clock.now()
        known = await tx.alert_statuses([a.fingerprint for a, _ in alerts])
        new: dict[tuple[str, str], dict[str, Any]] = {}
        changed: dict[tuple[str, str], dict[str, Any]] = {}
        transitions: list[tuple[str | None, Alert, Found]] = []
        for alert, rules in alerts:
            key = (alert.fingerprint, alert.starts_at)
            previous = known.get(key)
            if alert.status == previous or previous == "resolved":
                # A re-send, an HA peer's duplicate, or a firing copy that reached another
                # replica late: an alert that fires again has a new startsAt.
                continue
            if previous is None and rules == ():
                # Unknown, and no rule takes it: no incident opens, none is open to close.
                # Not kept either: a rule added by a reload takes it at its next notification.
                continue
            known[key] = alert.status
            transitions.append((previous, alert, rules))
            row = _row(alert, now)
            if key in new or previous is None:
                new[key] = row
            else:
                changed[key] = row
        await tx.save_alerts(list(new.values()), list(changed.values()))
        for previous, alert, rules in transitions:
            await self._transition(tx, previous, alert, now, rules)

    async def _transition(
        self, tx: Tx, previous: str | None, alert: Alert, now: float, rules: Found = None
    ) -> None:
        if alert.status == "resolved":
            for incident in await tx.open_incidents_for(alert.fingerprint, alert.starts_at):
                await self._close(tx, incident, now)
        elif previous is None:
            for rule in self.ctx.rules.match(alert.labels) if rules is None else rules:
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


def _chunks(reads: list[Read]) -> list[list[Read]]:
    """A take cut into consecutive runs with at most APPLY alerts of store work each (a
    notification with more is a run of its own); reads with none join the run they are in."""
    chunks: list[list[Read]] = [[]]
    size = 0
    for read in reads:
        if size and size + read.work > APPLY:
            chunks.append([])
            size = 0
        chunks[-1].append(read)
        size += read.work
    return chunks
