"""Quarantine: a (rule, target) whose remediation keeps failing stops being automated.

A failed remediation is a step that failed or a ladder that ran out while the alert
still fired. `safety.quarantine_after` of them in a row quarantine the pair: new
incidents escalate at once until a human releases it (`remediator release`). A
remediated incident resets the streak.
"""

from __future__ import annotations

import logging

from remediator.config.models import RuleSpec
from remediator.engine.context import EngineContext
from remediator.store.base import GuardTx, Tx
from remediator.store.events import Quarantined, QuarantineReleased
from remediator.store.payloads import to_json
from remediator.store.records import Incident, TargetHealth

log = logging.getLogger(__name__)


async def record_failure(
    ctx: EngineContext, tx: Tx, incident: Incident, rule: RuleSpec, reason: str, now: float
) -> None:
    """Count a failed remediation; quarantine the pair when the streak reaches the limit."""
    if incident.target is None:
        return
    old = await tx.target_health(rule.name, incident.target)
    failures = (old.failures if old else 0) + 1
    limit = ctx.config.policies.safety.quarantine_after
    quarantined_at = old.quarantined_at if old else None
    newly = quarantined_at is None and failures >= limit
    if newly:
        quarantined_at = now
    why = f"{failures} failed remediations in a row (limit {limit}); last: {reason}"
    await tx.save_target_health(
        TargetHealth(rule.name, incident.target, failures, quarantined_at, why, now)
    )
    if newly:
        quarantined = Quarantined(rule.name, incident.target, why)
        await tx.audit(incident.id, quarantined, now)
        log.error("automation quarantined", extra=to_json(quarantined))


async def record_success(tx: GuardTx, incident: Incident, now: float) -> None:
    """A remediated incident ends the failure streak (a quarantine stays until released)."""
    if incident.target is None:
        return
    old = await tx.target_health(incident.rule, incident.target)
    if old is None or old.failures == 0 or old.quarantined_at is not None:
        return
    await tx.save_target_health(TargetHealth(old.rule, old.target, 0, None, None, now))


async def release(tx: Tx, rule: str, target: str, who: str, now: float) -> bool:
    """A human lifts a quarantine; returns False when the pair was not quarantined."""
    old = await tx.target_health(rule, target)
    if old is None or old.quarantined_at is None:
        return False
    await tx.save_target_health(TargetHealth(rule, target, 0, None, None, now))
    await tx.audit(None, QuarantineReleased(rule, target, who, old.reason), now)
    return True
