"""The admin API's bodies as typed models: what the handlers send and read, and what
openapi.py publishes, so the document cannot drift from the wire.

Replies forbid extra keys so the published schemas say exactly what is sent; request
bodies ignore unknown keys (clients may send more than they need to).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from remediator.auditview import cursor_text, spoken
from remediator.clock import rfc3339
from remediator.store.records import (
    ApprovalState,
    AuditRow,
    EscalationState,
    State,
    StepState,
)


class Reply(BaseModel):
    """A reply body: every key always present, nothing else."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def of(cls, record: object) -> Self:
        """From a store record's attributes (renamed ones through `validation_alias`)."""
        return cls.model_validate(record, from_attributes=True)


class ErrorReply(Reply):
    """Any answer but 200: what went wrong and, where it can, how to fix it."""

    error: str


class IncidentSummary(Reply):
    """An incident as GET /api/incidents lists it; times are Unix epoch seconds."""

    id: int
    rule: str
    target: str | None
    state: State
    labels: dict[str, str]
    started_at: float = Field(validation_alias=AliasChoices("started_at", "created_at"))
    updated_at: float
    silence_id: str | None = Field(
        description="the Alertmanager silence kept while a `silence:` rule's steps work",
    )


class IncidentList(Reply):
    """GET /api/incidents: newest first."""

    incidents: list[IncidentSummary]


class StepOut(Reply):
    """One attempt at a rule step (`step` counts from 0)."""

    step: int = Field(validation_alias=AliasChoices("step", "step_index"))
    action: str
    state: StepState
    command: Any = Field(description="what was (or would be) run: argv, HTTP request...")
    started_at: float
    finished_at: float | None
    exit_status: int | None
    error: str | None


class ApprovalOut(Reply):
    """A step that waited for (or was decided by) humans."""

    id: int
    step: int = Field(validation_alias=AliasChoices("step", "step_index"))
    action: str
    state: ApprovalState
    command: Any = Field(description="what the step runs once approved")
    required: int
    expires_at: float
    decided_by: str | None


class EscalationOut(Reply):
    """The incident's escalation chain, once it started."""

    chain: str
    state: EscalationState
    started_at: float
    stopped_by: str | None


class AuditEntry(Reply):
    """One recorded transition or decision (in `detail`, steps count from 1 and moments
    are RFC 3339, as the CLI shows them)."""

    at: float
    event: str
    detail: dict[str, Any]

    @classmethod
    def of_row(cls, row: AuditRow) -> AuditEntry:
        """From a stored row, its detail as people read it."""
        return cls(at=row.at, event=row.event, detail=spoken(row.detail))


class AuditRecord(Reply):
    """One row of the whole audit trail (GET /api/audit), for people and SIEMs."""

    cursor: str = Field(description="this row's position: pass it as `cursor` to go on after it")
    id: int
    at: str = Field(description="when, RFC 3339 (UTC)")
    incident: int | None = Field(description="the incident, or null for global events")
    event: str
    detail: dict[str, Any]

    @classmethod
    def of_row(cls, row: AuditRow) -> AuditRecord:
        """From a stored row."""
        return cls(
            cursor=cursor_text(row.xact, row.id),
            id=row.id,
            at=rfc3339(row.at),
            incident=row.incident_id,
            event=row.event,
            detail=spoken(row.detail),
        )


class AuditPage(Reply):
    """GET /api/audit: rows in commit order, and where to go on from."""

    entries: list[AuditRecord]
    cursor: str = Field(
        description="pass it back as `cursor` for the rows after these (the same cursor "
        "when there are none yet): followed this way, no row is missed or repeated"
    )


class LinkOut(Reply):
    """Where people look for this incident: its runbook, dashboard, panel, source."""

    title: str
    url: str


class IncidentDetail(IncidentSummary):
    """GET /api/incidents/{id}: the summary with links, steps, approvals, escalation and
    audit."""

    links: list[LinkOut]
    steps: list[StepOut]
    approvals: list[ApprovalOut]
    escalation: EscalationOut | None
    audit: list[AuditEntry]


class DecisionReply(Reply):
    """A decision (approve, deny, ack) that was recorded."""

    result: Literal["ok"]
    message: str
    incident: int
    state: State | None


class PauseState(Reply):
    """POST /api/pause and /api/resume: the switch as it now stands."""

    paused: bool
    reason: str | None
    since: float | None


class ReplicaOut(Reply):
    """One replica seen lately: its last heartbeat and the hash of what it runs."""

    id: str = Field(description="the replica's id (its claims on work carry it)")
    name: str = Field(description="hostname:pid")
    started_at: float
    last_seen_at: float
    version: str
    config_hash: str = Field(description="hash of its rules, policies and inventory")
    listen: str
    same_config: bool = Field(description="whether its hash is the answering replica's")
    is_self: bool = Field(description="whether it is the replica answering")


class ReplicaList(Reply):
    """GET /api/replicas: replicas that heartbeat in the last minute, by name."""

    config_hash: str = Field(description="the answering replica's hash")
    replicas: list[ReplicaOut]


class DecisionBody(BaseModel):
    """Body of approve, deny and ack."""

    by: Annotated[
        str | None,
        Field(
            pattern=r"\S",
            description="who decides: an approver name or Slack user id (not blank). Required "
            "with the shared admin token (server.admin_token_env), whose holders all count as "
            "one person, `admin-token`. A personal token (server.admin_tokens) decides as its "
            "NAME: leave `by` out, or it must be that NAME.",
        ),
    ] = None
    reason: str | None = Field(
        default=None, description="why, for the audit (approve and deny; ack records none)"
    )


class PauseBody(BaseModel):
    """Body of pause and resume (optional)."""

    reason: str | None = Field(default=None, description="why, for the audit and the metrics")
