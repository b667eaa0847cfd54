"""Alertmanager webhook (version 4) payloads, parsed once into typed models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_SEP = 0xFF


def fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's label-set fingerprint (FNV-1a 64 over sorted names and values)."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name.encode(), labels[name].encode()):
            for byte in (*part, _SEP):
                h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


class _Lenient(BaseModel):
    # Alertmanager adds keys over time (notification_reason, routeLabels...): ignore them.
    model_config = ConfigDict(extra="ignore", frozen=True)


class WebhookAlert(_Lenient):
    """One alert as Alertmanager sends it."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str | None = Field(default=None, max_length=64)


class WebhookMessage(_Lenient):
    """A webhook notification; `version` must be "4"."""

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    alerts: list[WebhookAlert]
    receiver: str = ""
    groupKey: str = ""


def _stamp(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Alert:
    """An alert instance, identified by (fingerprint, starts_at)."""

    fingerprint: str
    starts_at: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    ends_at: str | None

    @classmethod
    def from_webhook(cls, a: WebhookAlert) -> Alert:
        """Normalise: compute a missing fingerprint, times in UTC with microseconds."""
        ends = a.endsAt if a.endsAt is not None and a.endsAt.year > 1 else None
        return cls(
            fingerprint=a.fingerprint or fingerprint(a.labels),
            starts_at=_stamp(a.startsAt),
            status=a.status,
            labels=dict(a.labels),
            annotations=dict(a.annotations),
            ends_at=_stamp(ends) if ends else None,
        )


def parse_alerts(body: str | bytes) -> list[Alert]:
    """Parse a webhook body into alerts (raises pydantic.ValidationError)."""
    return [Alert.from_webhook(a) for a in WebhookMessage.model_validate_json(body).alerts]
