"""Typed models of policies/*.yml: severities, escalation chains, approvals, safety."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from remediator.config.common import Duration, Model

# Where an escalation step notifies: a Slack channel or user, or an email address.
NOTIFY_PATTERN = (
    r"^(slack:#[a-z0-9][a-z0-9_-]{0,79}|slack:@?[UW][A-Z0-9]{2,20}|email:[^@\s<>,;]+@[^@\s<>,;]+)$"
)


class SeverityPolicy(Model):
    """Acknowledgement target of a severity."""

    ack: Duration


class EscalationStep(Model):
    """Who to notify, `after` the chain started."""

    after: Duration = Field(default=0.0, ge=0)
    notify: list[Annotated[str, Field(pattern=NOTIFY_PATTERN)]] = Field(min_length=1)


class EscalationChain(Model):
    """Timed notification steps, repeated `repeat` times."""

    steps: list[EscalationStep] = Field(min_length=1)
    repeat: int = Field(default=0, ge=0, le=100)
    acknowledgers: list[str] | None = None

    @model_validator(mode="after")
    def _in_order(self) -> EscalationChain:
        afters = [s.after for s in self.steps]
        if afters != sorted(afters):
            raise ValueError("steps' `after` must not decrease (it counts from the chain's start)")
        return self


class ApprovalPolicy(Model):
    """Who may approve risky steps, and what happens when nobody does."""

    approvers: list[str] = Field(min_length=1)
    channel: str | None = None
    timeout: Duration = 900.0
    on_timeout: Literal["escalate", "deny"] = "escalate"
    required: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _enough_approvers(self) -> ApprovalPolicy:
        if self.required > len(set(self.approvers)):
            raise ValueError(
                f"required: {self.required} needs at least that many different approvers"
            )
        return self


class Approvals(Model):
    """Approval policy and the actions that always need it."""

    default: ApprovalPolicy
    always_for: list[str] = Field(default_factory=list)


class Percent(Model):
    """`25%`: a share of the group's members (the inventory's), rounded down."""

    percent: int = Field(ge=1, le=100)

    def of(self, members: int) -> int:
        """How many of `members` that is, rounded down (0 when it rounds to nothing)."""
        return members * self.percent // 100


def _parse_unavailable(value: Any) -> Any:
    """A count (`1`) stays one; `"25%"` becomes a Percent; anything else says how."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]{1,3})\s*%\s*", value)
        if m is not None and 1 <= int(m.group(1)) <= 100:
            return Percent(percent=int(m.group(1)))
    if isinstance(value, Percent):
        return value
    raise ValueError(
        f"invalid max_unavailable {value!r}: write a count of members (`1`, at least 1) "
        "or a percentage of the group's inventory members (`25%`, from 1% to 100%)"
    )


class GroupLimit(Model):
    """How many members of an inventory group may be unavailable (an open incident acted
    on them) before automation waits: a count, or a percentage of the group's members."""

    max_unavailable: Annotated[int | Percent, BeforeValidator(_parse_unavailable)]

    def allowed(self, members: int) -> int:
        """The count for a group of `members` inventory hosts (a percentage rounded down)."""
        limit = self.max_unavailable
        return limit.of(members) if isinstance(limit, Percent) else limit

    def shown(self, members: int) -> str:
        """`1`, or `25% of 4 members = 1` (for reasons and errors)."""
        limit = self.max_unavailable
        if isinstance(limit, Percent):
            return f"{limit.percent}% of {members} members = {limit.of(members)}"
        return str(limit)


def _check_cron(value: str) -> str:
    if not croniter.is_valid(value):
        raise ValueError(f"invalid cron expression {value!r}: write it as `0 2 * * SUN`")
    return value


class MaintenanceWindow(Model):
    """A recurring window (cron start + duration, UTC) in which automation only notifies."""

    cron: Annotated[str, AfterValidator(_check_cron)]
    duration: Duration
    mode: Literal["notify_only"] = "notify_only"


class Safety(Model):
    """Global guards."""

    max_actions_per_minute: int | None = Field(default=None, ge=1)
    max_concurrent_actions: int | None = Field(default=None, ge=1)
    groups: dict[str, GroupLimit] = Field(default_factory=dict)
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    # Failed remediations in a row after which a (rule, target) stops being automated.
    quarantine_after: int = Field(default=3, ge=1)


class PoliciesFile(Model):
    """A policies/*.yml file; sections may be split across files."""

    severities: dict[str, SeverityPolicy] = Field(default_factory=dict)
    escalations: dict[str, EscalationChain] = Field(default_factory=dict)
    approvals: Approvals | None = None
    safety: Safety | None = None


class Policies(Model):
    """All policies merged."""

    severities: dict[str, SeverityPolicy] = Field(default_factory=dict)
    escalations: dict[str, EscalationChain] = Field(default_factory=dict)
    approvals: Approvals | None = None
    safety: Safety = Safety()
