"""The project's exception tree; third-party errors are mapped into it at the boundary.

RemediatorError
├── ConfigError          config, rules, policies or inventory invalid (carries problems)
├── SecretError          a secret named in the config cannot be read
├── StoreError
│   ├── StoreUnavailable the store cannot read or write now (the webhook answers 503)
│   ├── StoreConflict    another replica wrote the same rows at once: run the transaction again
│   ├── ClaimLost        another replica took a work item whose lease ran out: send nothing
│   ├── StoreLocked      another daemon already owns this SQLite store
│   └── StoreGone        the store's file was deleted or replaced: the daemon stops
├── TemplateError        a template failed to render against an alert
├── AlertmanagerError    Alertmanager's API refused or did not answer (silences, polls)
└── ActionError          a step could not be carried out
    ├── ConnectError     the target could not be reached (the only retried kind)
    ├── HostKeyError     the target's host key is unknown or does not match
    ├── AuthError        the target refused our credentials
    └── OutcomeUnknown   sent, but how it ended is unknown (timeout, lost link)
DeliveryError            a notification (Slack, email) was not delivered
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from remediator.config.problems import Problem


class RemediatorError(Exception):
    """Base of every error remediator raises on purpose."""


class ConfigError(RemediatorError):
    """Configuration is invalid; `problems` lists each one with its file and line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(p.format() for p in problems))


class SecretError(RemediatorError):
    """A secret named in the config (env var or file) cannot be read."""


class StartupError(RemediatorError):
    """Something the daemon needs to start is missing (a key file, a port)."""


class StoreError(RemediatorError):
    """The store failed."""


class StoreUnavailable(StoreError):
    """The store cannot read or write right now."""


class StoreConflict(StoreError):
    """Another replica committed the same row first (a unique key, a deadlock): running
    the whole transaction again reads its write (store.retry_conflict)."""


class ClaimLost(StoreError):
    """This replica's lease on a work item ran out unrenewed (the store was unreachable)
    and another replica took the item: this one sends nothing and leaves it alone."""


class StepCancelled(ClaimLost):
    """The step's work was cancelled (its incident resolved, acknowledged or handed over)
    between its start and its command: the command is not sent."""


class StoreLocked(StoreError):
    """Another process holds the store's lock."""


class StoreGone(StoreError):
    """The store is gone for good (its file deleted or replaced): nothing acked is safe."""


class TemplateError(RemediatorError):
    """A template could not be rendered against an alert."""


class AlertmanagerError(RemediatorError):
    """Alertmanager's API refused a call (`status` set) or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ActionError(RemediatorError):
    """A step could not be carried out."""


class ConnectError(ActionError):
    """The target could not be reached; safe to retry since nothing was sent."""


class HostKeyError(ActionError):
    """The target's host key is not in known_hosts or does not match."""


class AuthError(ActionError):
    """The target refused our credentials."""


class OutcomeUnknown(ActionError):
    """The command was sent but how it ended is unknown (timeout or connection lost)."""


class DeliveryError(RemediatorError):
    """A notification was not delivered; `permanent` when retrying cannot help."""

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
