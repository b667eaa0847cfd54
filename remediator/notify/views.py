"""What a notification shows, loaded from the store when it is delivered (so it is current)."""

from __future__ import annotations

from dataclasses import dataclass

from remediator.links import Link, links_of
from remediator.notify.text import one_line
from remediator.store.base import Tx
from remediator.store.records import Approval, Escalation, Incident, StepRecord, Vote


@dataclass(frozen=True)
class IncidentView:
    """An incident with its steps, approvals and escalation."""

    incident: Incident
    steps: list[StepRecord]
    approvals: list[Approval]
    escalation: Escalation | None
    link: str | None

    @property
    def links(self) -> list[Link]:
        """Runbook, dashboard, panel, source: plain http(s) URLs only (links.py)."""
        return links_of(self.incident.annotations)

    @property
    def title(self) -> str:
        """`#12 restart-node on validator1 (NodeDown)`, on one printable line."""
        i = self.incident
        alertname = one_line(i.labels.get("alertname", "alert"), 120)
        on = f" on {i.target}" if i.target else ""
        return f"#{i.id} {i.rule}{on} ({alertname})"


@dataclass(frozen=True)
class ApprovalView:
    """An approval with its votes, and the incident it belongs to."""

    approval: Approval
    votes: list[Vote]
    incident: IncidentView


async def load_incident(tx: Tx, incident_id: int, external_url: str | None) -> IncidentView | None:
    """The incident's current view, or None when it does not exist."""
    incident = await tx.incident(incident_id)
    if incident is None:
        return None
    link = f"{external_url.rstrip('/')}/api/incidents/{incident.id}" if external_url else None
    return IncidentView(
        incident,
        await tx.steps(incident_id),
        await tx.approvals_of(incident_id),
        await tx.escalation(incident_id),
        link,
    )


async def load_approval(tx: Tx, approval_id: int, external_url: str | None) -> ApprovalView | None:
    """The approval's current view, or None when it does not exist."""
    approval = await tx.approval(approval_id)
    if approval is None:
        return None
    incident = await load_incident(tx, approval.incident_id, external_url)
    if incident is None:
        return None
    return ApprovalView(approval, await tx.votes(approval_id), incident)
