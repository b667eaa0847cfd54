"""POST /webhook/alertmanager: 200 only after a durable write; clear errors for bad input."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support import storeview
from support.receiver import LIMIT, TOKEN, Harness, start

from remediator.alerts import Alert
from remediator.auth import WebhookAuthenticator


def payload(**extra: Any) -> dict[str, Any]:
    alert = {
        "status": "firing",
        "labels": {"alertname": "NodeDown", "instance": "web1:9100"},
        "annotations": {"summary": "down"},
        "startsAt": "2026-11-23T09:00:00.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "0123456789abcdef",
    }
    return {"version": "4", "status": "firing", "receiver": "r", "alerts": [alert], **extra}


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async for harness in start(tmp_path, WebhookAuthenticator(bearer=TOKEN.encode())):
        yield harness


async def test_valid_notification_is_stored_before_200(h: Harness) -> None:
    """A 200 means the body is already in the store, readable by another connection."""
    status, answer = await h.post(json.dumps(payload()))
    assert (status, answer) == (200, {"status": "stored", "alerts": 1})
    assert h.stored() == [
        [
            Alert(
                fingerprint="0123456789abcdef",
                starts_at="2026-11-23T09:00:00.123456+00:00",  # Go nanoseconds, truncated to µs
                status="firing",
                labels={"alertname": "NodeDown", "instance": "web1:9100"},
                # the sender's link kept as an annotation of its name (links.py)
                annotations={"summary": "down", "generatorURL": "http://prometheus/graph"},
                ends_at=None,
            )
        ]
    ]


async def test_unknown_keys_from_newer_alertmanagers_are_ignored(h: Harness) -> None:
    """Keys such as notification_reason, routeLabels and truncatedAlerts do not fail."""
    body = payload(notification_reason="repeat", routeLabels={"a": "b"}, truncatedAlerts=0)
    body["alerts"][0]["someNewKey"] = {"x": 1}
    status, _ = await h.post(json.dumps(body))
    assert status == 200


async def test_malformed_json_is_400(h: Harness) -> None:
    """Broken JSON gets a 400 with a JSON error, and nothing is stored."""
    status, answer = await h.post('{"version": "4", "alerts": [')
    assert status == 400
    assert answer["error"] == "malformed JSON"
    assert h.stored() == []


async def test_invalid_utf8_is_400_wherever_it_is(h: Harness) -> None:
    """In a label value or under a key nobody reads: a 400, never a 500, nothing stored."""
    good = json.dumps(payload()).encode()
    for body in (
        good.replace(b'"down"', b'"d\xffwn"'),
        good[:-1] + b', "x": "\xc3\x28"}',
    ):
        status, answer = await h.post(body)
        assert (status, answer["error"]) == (400, "malformed JSON")
    assert h.stored() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("startsAt", "yesterday"),
        ("startsAt", "2026-13-01T00:00:00Z"),
        ("startsAt", "0001-01-01T00:00:00+01:00"),  # before year 1 in UTC
        ("endsAt", "9999-12-31T23:59:59-01:00"),  # after year 9999 in UTC
    ],
)
async def test_a_time_the_engine_could_not_use_is_400(h: Harness, field: str, value: str) -> None:
    """Times are checked on receipt, so a 200 never spools a row the engine cannot apply."""
    body = payload()
    body["alerts"][0][field] = value
    status, answer = await h.post(json.dumps(body))
    assert status == 400
    assert answer["details"][0]["path"] == f"alerts.0.{field}"
    assert h.stored() == []


async def test_a_time_off_the_calendar_spelled_with_escapes_is_400(h: Harness) -> None:
    """The receiver reads the body's text for year-1 and year-9999 times before checking
    any alert's times (Alertmanager's "no end" alone needs no check): a time written with
    JSON escapes (\\u0031 is "1") is still checked, and refused."""
    body = payload()
    body["alerts"][0]["startsAt"] = "0001-01-01T00:00:00+01:00"
    text = json.dumps(body).replace(
        '"0001-01-01T00:00:00+01:00"', '"000\\u0031-01-01T00:00:00+01:00"'
    )
    assert "0001-" not in text.replace("0001-01-01T00:00:00Z", "")
    status, answer = await h.post(text)
    assert status == 400
    assert answer["details"][0]["path"] == "alerts.0.startsAt"
    assert h.stored() == []


async def test_rfc3339_lowercase_and_offsets_are_read(h: Harness) -> None:
    """RFC 3339 allows "t" and "z"; offsets become UTC. All are stored and read back."""
    body = payload()
    body["alerts"][0]["startsAt"] = "2026-11-23t09:00:00.5z"
    body["alerts"][0]["endsAt"] = "2026-11-23T11:30:00+02:00"
    assert (await h.post(json.dumps(body)))[0] == 200
    [[alert]] = h.stored()
    assert (alert.starts_at, alert.ends_at) == (
        "2026-11-23T09:00:00.500000+00:00",
        "2026-11-23T09:30:00.000000+00:00",
    )


async def test_error_messages_do_not_echo_long_values(h: Harness) -> None:
    """A wrong value is quoted at most in part: the answer stays small."""
    status, answer = await h.post(json.dumps(payload(status="x" * 3500)))
    assert status == 400
    assert answer["details"][0]["path"] == "status"
    assert len(json.dumps(answer)) < 500


async def test_deeply_nested_json_is_400_not_500(h: Harness) -> None:
    """Nesting that would exhaust the decoder's recursion, under an unknown key or not."""
    for body in (
        '{"version": "4", "x": ' + "[" * 1500 + "]" * 1500 + "}",
        json.dumps(payload()).replace('"down"', "[" * 1500 + "]" * 1500, 1),
    ):
        status, answer = await h.post(body)
        assert status == 400
        assert answer["error"] in {
            "malformed JSON",
            "not an Alertmanager webhook (version 4) payload",
        }
    assert h.stored() == []


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda p: p.pop("alerts"), "alerts"),
        (lambda p: p.update(version="3"), "version"),
        (lambda p: p["alerts"][0].pop("startsAt"), "alerts.0.startsAt"),
        (lambda p: p["alerts"][0].update(labels=["a"]), "alerts.0.labels"),
        (lambda p: p["alerts"][0].update(status="exploded"), "alerts.0.status"),
        (lambda p: p["alerts"][0]["labels"].update(n=3), "alerts.0.labels.n"),
    ],
)
async def test_wrong_shape_is_400_naming_the_field(h: Harness, mutate: Any, path: str) -> None:
    """A payload that is JSON but not a version-4 webhook gets a 400 naming the field."""
    body = payload()
    mutate(body)
    status, answer = await h.post(json.dumps(body))
    assert status == 400
    assert answer["error"] == "not an Alertmanager webhook (version 4) payload"
    assert path in [d["path"] for d in answer["details"]]
    assert h.stored() == []


async def test_not_an_object_is_400(h: Harness) -> None:
    """A JSON array or string is a wrong shape, not a crash."""
    for body in ("[]", '"x"', "null"):
        status, _ = await h.post(body)
        assert status == 400


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer wrong",
        f"bearer {TOKEN}x",
        TOKEN,
        f"Basic {base64.b64encode(b'u:' + TOKEN.encode()).decode()}",
    ],
)
async def test_bad_auth_is_401(h: Harness, header: str | None) -> None:
    """Missing or wrong credentials get a 401 and nothing is stored."""
    headers = {"Authorization": header} if header else {}
    async with h.session.post(
        h.url + "/webhook/alertmanager", data=json.dumps(payload()), headers=headers
    ) as r:
        assert r.status == 401
        assert "WWW-Authenticate" in r.headers
    assert h.stored() == []


async def test_bearer_scheme_is_case_insensitive(h: Harness) -> None:
    """`bearer` and `Bearer` both work (RFC 7235)."""
    status, _ = await h.post(json.dumps(payload()), {"Authorization": f"bearer {TOKEN}"})
    assert status == 200


async def test_basic_auth(tmp_path: Path) -> None:
    """Basic auth accepts the right pair only."""
    auth = WebhookAuthenticator(username=b"am", password=b"pw")
    async for h in start(tmp_path, auth):

        def basic(user: str, pw: str) -> dict[str, str]:
            return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}

        assert (await h.post(json.dumps(payload()), basic("am", "pw")))[0] == 200
        assert (await h.post(json.dumps(payload()), basic("am", "px")))[0] == 401
        assert (await h.post(json.dumps(payload()), basic("xx", "pw")))[0] == 401
        assert (await h.post(json.dumps(payload()), {"Authorization": "Basic !!!"}))[0] == 401


async def test_oversized_body_is_413(h: Harness) -> None:
    """Bodies above max_body_bytes get a 413, with or without Content-Length."""
    big = payload()
    big["alerts"][0]["annotations"]["blob"] = "x" * LIMIT
    status, answer = await h.post(json.dumps(big))
    assert status == 413
    assert "max_body_bytes" in answer["error"]

    async def chunks() -> AsyncIterator[bytes]:
        data = json.dumps(big).encode()
        for i in range(0, len(data), 1000):
            yield data[i : i + 1000]

    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with h.session.post(h.url + "/webhook/alertmanager", data=chunks(), headers=headers) as r:
        assert r.status == 413
    assert h.stored() == []


async def test_store_that_cannot_write_is_503(h: Harness) -> None:
    """When the store cannot write, the answer is 503 so Alertmanager retries."""
    with storeview.exclusive_lock(h.db.with_name("r.spool.db")):
        status, answer = await h.post(json.dumps(payload()))
    assert status == 503
    assert "store unavailable" in answer["error"]
    assert (await h.post(json.dumps(payload())))[0] == 200  # and recovers by itself


async def test_concurrent_posts_are_all_stored(h: Harness) -> None:
    """Group commit loses nothing: 100 concurrent notifications, 100 stored bodies."""
    bodies = []
    for i in range(100):
        body = payload()
        body["alerts"][0]["labels"]["instance"] = f"web{i}"
        bodies.append(json.dumps(body))
    results = await asyncio.gather(*(h.post(b) for b in bodies))
    assert {status for status, _ in results} == {200}
    stored = sorted(alerts[0].labels["instance"] for alerts in h.stored())
    assert stored == sorted(f"web{i}" for i in range(100))


async def test_metrics_count_alerts_and_latency(h: Harness) -> None:
    """/metrics shows alerts received by status and the webhook latency histogram."""
    await h.post(json.dumps(payload()))
    await h.post("not json")
    async with h.session.get(h.url + "/metrics") as r:
        text = await r.text()
    assert 'remediator_alerts_received_total{status="firing"} 1.0' in text
    assert 'remediator_webhook_requests_total{code="400"} 1.0' in text
    assert "remediator_webhook_duration_seconds_count 2.0" in text
    assert 'remediator_incidents{state="pending"} 0.0' in text
    assert "remediator_inbox_pending 1.0" in text  # no engine runs in this harness
