"""Typed models of policies/*.yml: severities, escalation chains, approvals, safety."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, model_validator

from remediator.config.common import Duration, Model
from remediator.config.suggest import did_you_mean

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


def _chain_mapping(value: Any) -> Any:
    # `escalations.NAME: [...]` is short for `{steps: [...]}`, as operators first write it.
    return {"steps": value} if isinstance(value, list) else value


Chain = Annotated[
    EscalationChain,
    BeforeValidator(_chain_mapping, json_schema_input_type=list[EscalationStep] | EscalationChain),
]


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


DEFAULT_POLICY = "default"  # what `approval: required` and a plain `always_for` entry ask
# What a rule or step's `approval:` says besides a policy's name.
APPROVAL_WORDS = frozenset({"required", "auto"})
POLICY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
# `required`, `auto` or an approval policy's name (a rule's or a step's `approval:`).
ApprovalName = Annotated[str, Field(pattern=POLICY_NAME)]


def check_policy_name(name: str) -> str | None:
    """What is wrong with an approval policy's name, or None."""
    if name in APPROVAL_WORDS:
        return (
            f"{name!r} cannot name a policy: a step's `approval: {name}` already means "
            "something (required: ask `default`; auto: do not ask); rename it"
        )
    if re.fullmatch(POLICY_NAME, name) is None:
        return f"{name!r} is not a policy name (letters, digits, `_`, `-`, up to 64)"
    return None


def _always_for_entry(value: object) -> object:
    # `block_ips` is short for `{action: block_ips}` (the step's policy, else `default`).
    return {"action": value} if isinstance(value, str) else value


class AlwaysFor(Model):
    """An `always_for` entry: ACTION or ACTION:WORD, and the policy it is asked under."""

    action: str
    # None: the step's own policy if it names one, else `default`.
    policy: str | None = None


class Approvals(Model):
    """Approval policies (`default`, and any other name) and the actions that always ask."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)
    __pydantic_extra__: dict[str, ApprovalPolicy] = Field(init=False)

    default: ApprovalPolicy
    always_for: list[
        Annotated[
            AlwaysFor, BeforeValidator(_always_for_entry, json_schema_input_type=str | AlwaysFor)
        ]
    ] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _policies_are_mappings(cls, data: Any) -> Any:
        # Any other key names a policy: one that is not a mapping is most likely a
        # misspelt setting (`alway_for: [...]`), and says so.
        if isinstance(data, dict):
            for key, value in data.items():
                if key not in cls.model_fields and not isinstance(value, dict):
                    near = did_you_mean(str(key), cls.model_fields)
                    raise ValueError(
                        f"`{key}` is neither a setting of approvals nor a policy (a policy "
                        f"is a mapping: approvers, required, timeout, on_timeout){near}"
                    )
        return data

    @property
    def policies(self) -> dict[str, ApprovalPolicy]:
        """Every policy by name, `default` first."""
        return {DEFAULT_POLICY: self.default, **self.__pydantic_extra__}


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

    max_unavailable: Annotated[
        int | Percent,
        BeforeValidator(
            _parse_unavailable,
            json_schema_input_type=Annotated[int, Field(ge=1)]
            | Annotated[str, Field(pattern=r"^\s*[0-9]{1,3}\s*%\s*$")],
        ),
    ]

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
    escalations: dict[str, Chain] = Field(default_factory=dict)
    approvals: Approvals | None = None
    safety: Safety | None = None


class Policies(Model):
    """All policies merged."""

    severities: dict[str, SeverityPolicy] = Field(default_factory=dict)
    escalations: dict[str, EscalationChain] = Field(default_factory=dict)
    approvals: Approvals | None = None
    safety: Safety = Safety()

    def approval_policy(self, name: str = DEFAULT_POLICY) -> ApprovalPolicy | None:
        """The approval policy called `name`, if policies define it."""
        return self.approvals.policies.get(name) if self.approvals else None
