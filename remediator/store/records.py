"""Rows as typed records; nothing past the store reads a raw row."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from remediator.store.payloads import OutboxPayload, Unreadable


class State(StrEnum):
    """Incident states (DESIGN.md, incident lifecycle)."""

    PENDING = "pending"
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    VERIFYING = "verifying"
    EXHAUSTED = "exhausted"
    ESCALATING = "escalating"
    ACKNOWLEDGED = "acknowledged"
    REMEDIATED = "remediated"
    RESOLVED = "resolved"


CLOSED_STATES = frozenset({State.REMEDIATED, State.RESOLVED})
OPEN_STATES = frozenset(State) - CLOSED_STATES
# A target is under remediation from its step's start until the verify window ends.
ACTIVE_STATES = frozenset({State.RUNNING, State.VERIFYING})
# States that hold their target's lock: a step waiting for its approvers holds it too, so
# one host gets one approval request at a time (and an approved step is not overtaken).
LOCK_STATES = ACTIVE_STATES | {State.AWAITING_APPROVAL}
# Automation gave up and humans were (or are being) told: what fixes it now is not a step.
HANDED_OVER = frozenset({State.EXHAUSTED, State.ESCALATING, State.ACKNOWLEDGED})
# Automation still works on it: a `silence:` rule's silence stays while in these states.
AUTOMATING = frozenset({State.PENDING, State.RUNNING, State.VERIFYING, State.AWAITING_APPROVAL})
# What GuardTx.unavailable_targets says of a member a step still runs on.
RUNNING_A_STEP = "running a step"


class StepState(StrEnum):
    """A step's progress; `executing` means its command may have been sent."""

    DISPATCHING = "dispatching"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    DRY_RUN = "dry_run"


class ClaimStatus(StrEnum):
    """Where a replica's claim on a work item stands, checked right before a command."""

    HELD = "held"  # still this replica's, the item still to do
    CANCELLED = "cancelled"  # still this replica's, but the item was cancelled meanwhile
    TAKEN = "taken"  # the lease ran out and another replica took the item


class WorkKind(StrEnum):
    """What a work row asks the runner to do when due."""

    RUN_STEP = "run_step"
    VERIFY_TIMEOUT = "verify_timeout"
    APPROVAL_TIMEOUT = "approval_timeout"
    ESCALATE = "escalate"  # step_index: the position in the chain (repeats unrolled)


@dataclass(frozen=True)
class InboxItem:
    """A webhook body, validated and spooled before the webhook was acknowledged."""

    id: int
    received_at: float
    body: str


@dataclass(frozen=True)
class Incident:
    """One rule's response to one alert instance."""

    id: int
    rule: str
    fingerprint: str
    starts_at: str
    target: str | None
    state: State
    labels: dict[str, str]
    annotations: dict[str, str]
    step_index: int
    created_at: float
    updated_at: float
    closed_at: float | None
    silence_id: str | None = None  # the Alertmanager silence kept while steps work

    @property
    def is_open(self) -> bool:
        """Whether the incident can still change."""
        return self.state in OPEN_STATES


@dataclass(frozen=True)
class StepRecord:
    """One attempt at a rule step for an incident."""

    id: int
    incident_id: int
    step_index: int
    action: str
    state: StepState
    command: Any
    attempts: int
    started_at: float
    executing_at: float | None
    finished_at: float | None
    exit_status: int | None
    output: str | None
    error: str | None


@dataclass(frozen=True)
class WorkItem:
    """A claimed work row."""

    id: int
    kind: WorkKind
    incident_id: int
    step_index: int
    due_at: float
    attempts: int


@dataclass(frozen=True)
class AuditRow:
    """One recorded transition or decision."""

    id: int
    incident_id: int | None
    at: float
    event: str
    detail: dict[str, Any]
    xact: int = 0  # commit order (schema.audit): (xact, id) is a reader's cursor


@dataclass(frozen=True)
class Hold:
    """A deferring guard holding a work item back; `changed` when the guard is new.
    `scope`: the guard scope holding it; `was_scope`: the one that held it before (None
    for a new hold)."""

    work_id: int
    guard: str
    reason: str
    since: float
    guard_since: float
    changed: bool
    scope: str | None = None
    was_scope: str | None = None


@dataclass(frozen=True)
class TargetHealth:
    """Consecutive failed remediations of (rule, target); quarantined once too many."""

    rule: str
    target: str
    failures: int
    quarantined_at: float | None
    reason: str | None
    updated_at: float


class ApprovalState(StrEnum):
    """An approval's decision; only `pending` can change."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Approval:
    """A step waiting for (or decided by) humans."""

    id: int
    incident_id: int
    step_index: int
    action: str
    command: Any
    state: ApprovalState
    required: int
    created_at: float
    expires_at: float
    decided_at: float | None
    decided_by: str | None
    reason: str | None


@dataclass(frozen=True)
class Vote:
    """One person's decision on an approval."""

    approval_id: int
    voter: str
    decision: str
    via: str
    at: float


class EscalationState(StrEnum):
    """Whether an escalation chain still pages."""

    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    FINISHED = "finished"


@dataclass(frozen=True)
class Escalation:
    """An incident's escalation chain."""

    incident_id: int
    chain: str
    state: EscalationState
    reason: str
    started_at: float
    stopped_at: float | None
    stopped_by: str | None


class OutboxKind(StrEnum):
    """What an outbox row delivers."""

    SLACK_POST = "slack_post"  # a page to a channel or user
    SLACK_SYNC = "slack_sync"  # post or update the message kept for a key
    SLACK_THREAD = "slack_thread"  # a line in the thread of an incident's message
    SLACK_EPHEMERAL = "slack_ephemeral"  # a reply only one user sees
    EMAIL = "email"


@dataclass(frozen=True)
class OutboxItem:
    """A claimed notification."""

    id: int
    incident_id: int | None
    kind: OutboxKind
    target: str
    payload: OutboxPayload | Unreadable  # Unreadable: the outbox loop keeps it as a dead letter
    attempts: int
    created_at: float


@dataclass(frozen=True)
class DeadLetter:
    """An item a loop could not handle: kept for humans, never retried by a loop."""

    id: int
    loop: str
    item: str
    incident_id: int | None
    error: str
    payload: Any
    at: float


@dataclass(frozen=True)
class Replica:
    """A running daemon's heartbeat: who, since when, on which rules (replicas table)."""

    id: str
    name: str
    started_at: float
    last_seen_at: float
    version: str
    config_hash: str
    listen: str
