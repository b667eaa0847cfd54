"""Audit entries, typed where an event has a fixed shape.

Each Struct is one event (its `event` name) written as the JSON object its detail always
was (same keys in the same order; an optional key left out when unset), so the trail
reads as before: the API, `remediator show` and the simulator read details as objects.
`Event` carries the events whose detail is built elsewhere (an action's plan, a guard's
verdict, who voted): its shape is its builder's.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec


class _Entry(msgspec.Struct, frozen=True, omit_defaults=True):
    event: ClassVar[str]


class Event(msgspec.Struct, frozen=True):
    """An event whose detail another module shapes (plan.describe(), verdict.detail())."""

    name: str
    detail: dict[str, Any]


class Matched(_Entry, frozen=True):
    event: ClassVar[str] = "matched"
    rule: str
    alertname: str | None = None  # left out when a handed-over incident is reopened


class InboxUnreadable(_Entry, frozen=True):
    event: ClassVar[str] = "inbox_unreadable"
    id: int
    error: str


class RequireFailed(_Entry, frozen=True):
    event: ClassVar[str] = "require_failed"
    reason: str


class TargetRefused(_Entry, frozen=True):
    event: ClassVar[str] = "target_refused"
    reason: str


class NotEscalated(_Entry, frozen=True):
    event: ClassVar[str] = "not_escalated"
    reason: str


class StepScheduled(_Entry, frozen=True):
    event: ClassVar[str] = "step_scheduled"
    step: int
    action: str
    reason: str | None = None


class Resolved(_Entry, frozen=True):
    event: ClassVar[str] = "resolved"
    state: str
    previous: str
    cancelled_work: int


class RuleGone(_Entry, frozen=True):
    event: ClassVar[str] = "rule_gone"
    rule: str


class StepRefused(_Entry, frozen=True):
    event: ClassVar[str] = "step_refused"
    step: int
    reason: str


class StepExecuting(_Entry, frozen=True):
    event: ClassVar[str] = "step_executing"
    step: int


class StepOutcomeUnknown(_Entry, frozen=True):
    event: ClassVar[str] = "step_outcome_unknown"
    step: int
    reason: str


class StepNotSent(_Entry, frozen=True):
    event: ClassVar[str] = "step_not_sent"
    step: int
    reason: str


class StepPart(_Entry, frozen=True):
    """How one part of an `all:` step went (`part` counts from 0, as `step` does)."""

    event: ClassVar[str] = "step_part"
    step: int
    part: int
    action: str
    state: str
    exit_status: int | None = None
    error: str | None = None
    output: str | None = None


class StepSettled(_Entry, frozen=True):
    event: ClassVar[str] = "step_settled"
    step: int
    state: str
    reason: str


class Verifying(_Entry, frozen=True):
    event: ClassVar[str] = "verifying"
    step: int
    until: float


class GuardRefused(_Entry, frozen=True):
    """A final guard refused an incident's first step (the incident is handed over)."""

    event: ClassVar[str] = "guard_refused"
    step: int
    guard: str
    reason: str
    until: float | None = None
    targets: list[str] | None = None  # max_targets: the targets acted on in its window


class GuardReleased(_Entry, frozen=True):
    event: ClassVar[str] = "guard_released"
    step: int
    guard: str
    held_s: float


class HoldTimeout(_Entry, frozen=True):
    event: ClassVar[str] = "hold_timeout"
    step: int
    guard: str
    reason: str


class Quarantined(_Entry, frozen=True):
    event: ClassVar[str] = "quarantined"
    rule: str
    target: str | None
    reason: str


class QuarantineReleased(_Entry, frozen=True):
    event: ClassVar[str] = "quarantine_released"
    rule: str
    target: str
    by: str
    was: str | None


class ApprovalRequested(_Entry, frozen=True):
    event: ClassVar[str] = "approval_requested"
    step: int
    action: str
    approval: int
    required: int
    approvers: list[str]
    expires_at: float
    policy: str = "default"  # the approval policy asked (left out when `default`)


class ApprovalExpired(_Entry, frozen=True):
    event: ClassVar[str] = "approval_expired"
    approval: int
    after: str  # "5m"


class EscalationStarted(_Entry, frozen=True):
    event: ClassVar[str] = "escalation_started"
    chain: str
    reason: str


class EscalateFallback(_Entry, frozen=True):
    """A templated `escalate:` named no chain: the rule's `escalate_fallback` pages."""

    event: ClassVar[str] = "escalate_fallback"
    chain: str
    reason: str


class Exhausted(_Entry, frozen=True):
    event: ClassVar[str] = "exhausted"
    reason: str
    escalate: str | None


class EscalationStopped(_Entry, frozen=True):
    """Acknowledged or resolved (`state`), by whom when a person did."""

    event: ClassVar[str] = "escalation_stopped"
    state: str
    by: str | None


class PagingAcknowledged(_Entry, frozen=True):
    """A `page_at_start` chain acknowledged while automation still runs: only paging stops."""

    event: ClassVar[str] = "paging_acknowledged"
    by: str  # as in `acknowledged`: the voter's key, how (`via`), their name when it differs
    via: str
    chain: str
    state: str  # the incident's state, which the acknowledgement leaves as it is
    as_: str | None = msgspec.field(default=None, name="as")


class HandedToAcknowledger(_Entry, frozen=True):
    """Automation gave up on an incident whose chain was acknowledged: no new page."""

    event: ClassVar[str] = "handed_to_acknowledger"
    by: str | None
    chain: str


class ChainGone(_Entry, frozen=True):
    """Stopped because the chain left the policies."""

    event: ClassVar[str] = "escalation_stopped"
    chain: str
    reason: str


class EscalationNotified(_Entry, frozen=True):
    event: ClassVar[str] = "escalation_notified"
    chain: str
    step: int
    cycle: int
    notify: list[str]


class EscalationFinished(_Entry, frozen=True):
    event: ClassVar[str] = "escalation_finished"
    chain: str


class Notified(_Entry, frozen=True):
    event: ClassVar[str] = "notified"
    kind: str
    to: str
    attempts: int


class NotificationFailed(_Entry, frozen=True):
    event: ClassVar[str] = "notification_failed"
    kind: str
    to: str
    attempts: int
    error: str
    fallback: list[str] | None = None


class Paused(_Entry, frozen=True):
    event: ClassVar[str] = "paused"
    reason: str | None
    by: str | None = None  # who (an admin token's owner, or admin-token)
    via: str | None = None  # through what: api, cli


class Resumed(_Entry, frozen=True):
    event: ClassVar[str] = "resumed"
    reason: str | None
    steps_resumed: int
    by: str | None = None
    via: str | None = None


class ConfigReloaded(_Entry, frozen=True):
    """A reload swapped in new rules, policies or inventory (a global row)."""

    event: ClassVar[str] = "config_reloaded"
    why: str  # SIGHUP, or the files a watch saw change
    changed: list[str]  # the config's files whose content differs from the last load
    config_hash: str  # now running
    previous_hash: str
    replica: str  # which replica reloaded (each does, on its own files)


class PoisonItem(_Entry, frozen=True):
    event: ClassVar[str] = "poison_item"
    loop: str
    item: str
    error: str


AuditEntry = _Entry | Event


def entry_row(entry: AuditEntry) -> tuple[str, dict[str, Any]]:
    """(event, detail) as the audit table stores them."""
    if isinstance(entry, Event):
        return entry.name, entry.detail
    detail: dict[str, Any] = msgspec.to_builtins(entry)
    return entry.event, detail
