"""Hand-over from automation to humans.

Today the hand-over is a recorded state change (`exhausted` plus an audit row naming the
chain and the reason); the notifiers consume it once escalation chains exist.
"""

from __future__ import annotations

import logging

from remediator.config.models import RuleSpec
from remediator.store.base import Tx
from remediator.store.records import Incident, State

log = logging.getLogger(__name__)


async def hand_over(tx: Tx, incident: Incident, rule: RuleSpec, reason: str, now: float) -> None:
    """Stop automating this incident and ask the rule's escalation chain to page."""
    await tx.cancel_work(incident.id, now)
    await tx.update_incident(incident.id, now, state=State.EXHAUSTED)
    await tx.audit(
        incident.id,
        "exhausted",
        {"reason": reason, "escalate": rule.escalate},
        now,
    )
    log.warning(
        "automation exhausted; escalating",
        extra={
            "incident": incident.id,
            "rule": rule.name,
            "reason": reason,
            "chain": rule.escalate,
        },
    )


async def page_now(tx: Tx, incident: Incident, rule: RuleSpec, reason: str, now: float) -> None:
    """Tell humans at once while the step stays pending (automation paused or in a window)."""
    detail = {"reason": reason, "escalate": rule.escalate, "automation": "pending"}
    await tx.audit(incident.id, "escalation_started", detail, now)
    log.warning(
        "automation held; paging now",
        extra={"incident": incident.id, "rule": rule.name, "reason": reason},
    )
