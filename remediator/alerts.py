"""Webhook payloads (Alertmanager version 4, Grafana version 1), parsed once into typed models.

msgspec decodes and validates in one pass in C: on the receiver's hot path it is several
times cheaper than pydantic, which the rest of the code base uses for configuration.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec

T = TypeVar("T", datetime, str)

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


# Alertmanager adds keys over time (notification_reason, routeLabels...): msgspec ignores
# keys a Struct does not declare.


# gc=False: the garbage collector does not track them (no cycles: strings, times and
# dicts of strings), a dozen fewer tracked objects per notification on the hot path.
class WebhookAlert(msgspec.Struct, Generic[T], frozen=True, omit_defaults=True, gc=False):
    """One alert as Alertmanager sends it; `T` is how times are read (see below)."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    startsAt: T
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    endsAt: T | None = None
    generatorURL: str = ""
    fingerprint: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    # Grafana's contact point sends these per alert (remediator/grafana.py); Alertmanager
    # does not. Kept in the stored body (omitted when empty) for the links they carry.
    dashboardURL: str = ""
    panelURL: str = ""
    silenceURL: str = ""


class WebhookMessage(msgspec.Struct, Generic[T], frozen=True, omit_defaults=True, gc=False):
    """A webhook notification; `version` must be "4"."""

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    alerts: list[WebhookAlert[T]]
    receiver: str = ""
    groupKey: str = ""


class GrafanaMessage(msgspec.Struct, Generic[T], frozen=True, gc=False):
    """Grafana's webhook contact point body: `version` "1", Alertmanager-shaped alerts.

    Its other keys (orgId, title, state, message, values, valueString...) describe the
    notification for people; rules read the alerts' labels and annotations.
    """

    version: Literal["1"]
    status: Literal["firing", "resolved"]
    alerts: list[WebhookAlert[T]]
    receiver: str = ""
    groupKey: str = ""


# Two readings of one schema. The receiver checks times as RFC 3339 in C (datetime). The
# engine reads them as text and truncates Go's nanoseconds to microseconds, as every
# earlier version did: an alert's identity (fingerprint, startsAt) must not change when
# remediator is upgraded, or a re-sent alert would open a second incident.
_CHECK = msgspec.json.Decoder(WebhookMessage[datetime])
_READ = msgspec.json.Decoder(WebhookMessage[str])
MAX_MESSAGE = 200  # error texts can quote the sender's values: keep answers short
_AT = re.compile(r"(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)  # fullmatch
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`")
_STEP = re.compile(r"\.(\w+)|\[([0-9]+|\.\.\.)\]")


class PayloadError(ValueError):
    """Not a version-4 webhook: malformed JSON, or a wrong shape at `path`."""

    def __init__(self, message: str, *, path: str = "", malformed: bool = False) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path
        self.malformed = malformed


M = TypeVar("M", WebhookMessage[datetime], GrafanaMessage[datetime])


def decode_webhook(body: str) -> WebhookMessage[datetime]:
    """Decode and validate an Alertmanager webhook body (raises PayloadError)."""
    return decode_checked(_CHECK, body)


def decode_checked(decoder: msgspec.json.Decoder[M], body: str) -> M:
    """Decode and validate `body` with `decoder`, as the receiver does (PayloadError)."""
    try:
        message = decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _shape_error(str(exc), body) from None
    except msgspec.DecodeError as exc:
        raise PayloadError(str(exc)[:MAX_MESSAGE], malformed=True) from None
    except RecursionError:
        raise PayloadError("nested too deeply", malformed=True) from None
    except UnicodeError:  # lone surrogates in the text
        raise PayloadError("not valid UTF-8", malformed=True) from None
    if not _may_leave_calendar(body):
        return message
    for i, alert in enumerate(message.alerts):
        if _off_calendar(alert.startsAt) or _off_calendar(alert.endsAt):
            name = "startsAt" if _off_calendar(alert.startsAt) else "endsAt"
            raise PayloadError("outside the calendar once in UTC", path=f"alerts.{i}.{name}")
    return message


def _may_leave_calendar(body: str) -> bool:
    """Whether a time in `body` could be off the calendar, read on the text in C: only
    one in year 1 or 9999 can be, and Alertmanager's year-1 time is its "no end",
    "0001-01-01T00:00:00Z", in UTC. Any other year-1 time, any year-9999 one, or a
    \\u escape (which could spell one) sends the alerts through `_off_calendar`:
    per alert in Python, it cost more than the decoding itself."""
    if "9999-" in body or "\\u" in body:
        return True
    return body.count("0001-") != body.count(_NO_END)


_NO_END = "0001-01-01T00:00:00Z"


def _off_calendar(value: datetime | None) -> bool:
    """True if `value` has no UTC time: only an offset in year 1 or 9999 can move it off
    the calendar (Alertmanager's "0001-01-01T00:00:00Z" for "no end" is checked cheaply)."""
    if value is None or value.year not in (1, 9999) or not value.utcoffset():
        return False
    try:
        _utc(value)
    except OverflowError:
        return True
    return False


def _utc(t: datetime) -> datetime:
    return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).astimezone(UTC)


def _shape_error(text: str, body: str) -> PayloadError:
    """msgspec's "message - at `$.alerts[0].labels[...]`" as a dotted path and a message."""
    m = _AT.fullmatch(text)
    message, raw = (m["message"], m["path"] or "") if m else (text, "")
    steps: list[str | int] = [
        name if name else (int(index) if index.isdigit() else "[...]")
        for name, index in _STEP.findall(raw)
    ]
    if missing := _MISSING.match(message):
        steps.append(missing["field"])
    elif steps and steps[-1] == "[...]":  # a dict value: msgspec does not name the key
        steps[-1:] = _bad_key(body, steps[:-1])
    return PayloadError(message[:MAX_MESSAGE], path=".".join(str(s) for s in steps))


def _bad_key(body: str, steps: list[str | int]) -> list[str | int]:
    """The first key under `steps` whose value is not a string (error path only)."""
    try:
        node: Any = json.loads(body)
        for step in steps:
            node = node[step]
        return [key for key, value in node.items() if not isinstance(value, str)][:1]
    except (ValueError, LookupError, TypeError, AttributeError, RecursionError):
        return []  # the message still says what is wrong; only the key is not named


def stamp(value: str) -> str:
    """An RFC 3339 time as stored: UTC, microseconds (Go's nanoseconds truncated)."""
    try:
        t = datetime.fromisoformat(value)  # Go's nanoseconds truncated to microseconds
    except ValueError:  # RFC 3339 that Python does not read (lowercase t, z): as checked
        t = msgspec.convert(value, datetime)
    return _utc(t).isoformat(timespec="microseconds")


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
    def from_webhook(cls, a: WebhookAlert[str]) -> Alert:
        """Normalise: compute a missing fingerprint, times in UTC with microseconds; the
        sender's links (generatorURL; Grafana's dashboardURL, panelURL, silenceURL) become
        annotations of those names, unless the alert has annotations so named."""
        ends = a.endsAt if a.endsAt is not None and not a.endsAt.startswith("0001-") else None
        annotations = dict(a.annotations)
        for name, url in (
            ("generatorURL", a.generatorURL),
            ("dashboardURL", a.dashboardURL),
            ("panelURL", a.panelURL),
            ("silenceURL", a.silenceURL),
        ):
            if url:
                annotations.setdefault(name, url)
        return cls(
            fingerprint=a.fingerprint or fingerprint(a.labels),
            starts_at=stamp(a.startsAt),
            status=a.status,
            labels=dict(a.labels),
            annotations=annotations,
            ends_at=stamp(ends) if ends else None,
        )


@dataclass(frozen=True)
class Dialect:
    """How one webhook route reads its senders' bodies."""

    name: str  # for errors: "not {name} payload"
    # The validated alerts, and the text to store: an Alertmanager version-4 body, which
    # is all the engine, replay and recordings read.
    decode: Callable[[str], tuple[str, list[WebhookAlert[datetime]]]]


def _alertmanager(body: str) -> tuple[str, list[WebhookAlert[datetime]]]:
    return body, decode_webhook(body).alerts  # stored as sent: unknown keys too


_GRAFANA_CHECK = msgspec.json.Decoder(GrafanaMessage[datetime])
_GRAFANA_READ = msgspec.json.Decoder(GrafanaMessage[str])
_ENCODER = msgspec.json.Encoder()


def _grafana(body: str) -> tuple[str, list[WebhookAlert[datetime]]]:
    """Validated as Grafana's body, stored as the version-4 body it carries: the alerts
    (times as sent, so an alert keeps its identity) with their Grafana links."""
    alerts = decode_checked(_GRAFANA_CHECK, body).alerts
    read = _GRAFANA_READ.decode(body)
    stored = WebhookMessage[str](
        version="4",
        status=read.status,
        alerts=read.alerts,
        receiver=read.receiver,
        groupKey=read.groupKey,
    )
    return _ENCODER.encode(stored).decode(), alerts


ALERTMANAGER = Dialect("an Alertmanager webhook (version 4)", _alertmanager)
GRAFANA = Dialect("a Grafana webhook contact point (version 1)", _grafana)


def parse_alerts(body: str) -> list[Alert]:
    """Validate a webhook body as the receiver does, then read its alerts (PayloadError)."""
    decode_webhook(body)
    return [Alert.from_webhook(a) for a in _READ.decode(body).alerts]


def read_stored(body: str) -> list[WebhookAlert[str]]:
    """The alerts of a body the receiver validated and stored, decoded once with times as
    text (ValueError if it does not read): the engine builds an `Alert` of only those it
    has work for, whose times `Alert.from_webhook` checks then."""
    return _READ.decode(body).alerts
