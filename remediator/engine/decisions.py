"""What a human decision is made by and what it came to, in the engine's own words.

The engine never speaks HTTP or Slack: `approvals.decide` and `approvals.acknowledge`
take a `Voter` and return an `Outcome` whose `result` is a `Result`; the admin API,
the Slack handler and the CLI each map it to their own answer (a status code, an
ephemeral message, an exit code).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from remediator.config.names import SHARED_TOKEN_NAME as SHARED_TOKEN
from remediator.store.records import State


class Result(enum.Enum):
    """What a decision came to."""

    APPROVED = "approved"
    VOTE_RECORDED = "vote_recorded"  # counted; more approvals are needed
    DENIED = "denied"
    ACKNOWLEDGED = "acknowledged"
    NOT_AN_APPROVER = "not_an_approver"
    NOT_AN_ACKNOWLEDGER = "not_an_acknowledger"
    ALREADY_VOTED = "already_voted"
    ALREADY_DECIDED = "already_decided"  # the approval or the incident is past deciding
    NOTHING_WAITING = "nothing_waiting"  # the incident waits on no approval
    UNKNOWN_INCIDENT = "unknown_incident"
    UNKNOWN_APPROVAL = "unknown_approval"

    @property
    def changed(self) -> bool:
        """Whether a decision with this result changed anything."""
        return self in _CHANGED


_CHANGED = frozenset({Result.APPROVED, Result.VOTE_RECORDED, Result.DENIED, Result.ACKNOWLEDGED})


@dataclass(frozen=True)
class Outcome:
    """A decision's result, a sentence for the human who made it, and where it left things."""

    result: Result
    message: str
    incident_id: int | None = None
    state: State | None = None

    @property
    def changed(self) -> bool:
        """Whether the decision changed anything."""
        return self.result.changed


@dataclass(frozen=True)
class Voter:
    """Who decides, and through what (`via`: slack, api, cli, test, timeout).

    `key` is one person: it counts once toward `required` and is recorded as `by`.
    `name` is checked against `approvers` and `acknowledgers`. They are the same person
    (a Slack user id, a personal admin token's name) except for the shared admin token:
    all its holders are one key, `admin-token`, whatever name they give, which is kept
    as a note (`as`).
    """

    key: str
    name: str
    via: str

    @classmethod
    def person(cls, who: str, via: str) -> Voter:
        """Someone whose identity was established: a Slack user id, a personal token's name."""
        return cls(who, who, via)

    @classmethod
    def shared_token(cls, name: str, via: str = "api") -> Voter:
        """A holder of the shared admin token, giving `name` (unverified)."""
        return cls(SHARED_TOKEN, name, via)

    @property
    def shown(self) -> str:
        """How messages and `decided_by` name this voter."""
        return self.key if self.key == self.name else f"{self.key} (as {self.name})"

    def detail(self) -> dict[str, str]:
        """The voter for an audit row: `by` (the key), `as` (the name) when they differ, `via`."""
        out = {"by": self.key, "via": self.via}
        if self.name != self.key:
            out["as"] = self.name
        return out
