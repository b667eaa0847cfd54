"""POST /webhook/grafana: Grafana's webhook contact point, same auth, durability and rules.

Bodies are shaped as Grafana's documentation of the webhook notifier shows them (its
version "1" body: Alertmanager-shaped alerts plus orgId, title, state, message, values...).
"""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support import storeview
from support.daemon import TOKEN as DAEMON_TOKEN
from support.daemon import Daemon, write_config
from support.receiver import TOKEN, Harness, start

from remediator.alerts import Alert
from remediator.auth import WebhookAuthenticator

GRAFANA = "/webhook/grafana"

# The example body of Grafana's "Configure the webhook notifier for Alerting" page.
DOC_BODY: dict[str, Any] = {
    "receiver": "My Super Webhook",
    "status": "firing",
    "orgId": 1,
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "High memory usage", "team": "blue", "zone": "us-1"},
            "annotations": {
                "description": "The system has high memory usage",
                "runbook_url": "https://myrunbook.com/runbook/1234",
                "summary": "This alert was triggered for zone us-1",
            },
            "startsAt": "2021-10-12T09:51:03.157076+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://play.grafana.org/alerting/1afz29v7z/edit",
            "fingerprint": "c6eadffa33fcdf37",
            "silenceURL": "https://play.grafana.org/alerting/silence/new?alertmanager=grafana",
            "dashboardURL": "",
            "panelURL": "",
            "values": {"B": 44.23943737541908, "C": 1},
        },
        {
            "status": "firing",
            "labels": {"alertname": "High CPU usage", "team": "blue", "zone": "eu-1"},
            "annotations": {"summary": "This alert was triggered for zone eu-1"},
            "startsAt": "2021-10-12T09:56:03.157076+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://play.grafana.org/alerting/d1rdpdv7k/edit",
            "fingerprint": "bc97ff14869b13e3",
            "silenceURL": "https://play.grafana.org/alerting/silence/new?alertmanager=grafana",
            "dashboardURL": "https://play.grafana.org/d/abc",
            "panelURL": "https://play.grafana.org/d/abc?viewPanel=2",
            "values": {"B": 82.99, "C": 1},
            "valueString": "[ var='B' labels={} value=82.99 ]",
        },
    ],
    "groupLabels": {},
    "commonLabels": {"team": "blue"},
    "commonAnnotations": {},
    "externalURL": "https://play.grafana.org/",
    "version": "1",
    "groupKey": '{}:{alertname="High memory usage"}',
    "truncatedAlerts": 0,
    "title": "[FIRING:2]  (blue)",
    "state": "alerting",
    "message": "**Firing**\n\nLabels:\n - alertname = High memory usage\n",
}


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async for harness in start(tmp_path, WebhookAuthenticator(bearer=TOKEN.encode())):
        yield harness


async def test_grafana_body_is_stored_before_200(h: Harness) -> None:
    """Grafana's documented body is accepted on /webhook/grafana; a 200 means its alerts
    are in the store, read as the engine reads Alertmanager's (times in UTC, Grafana's
    fingerprint kept, annotations as sent)."""
    status, answer = await h.post(json.dumps(DOC_BODY), path=GRAFANA)
    assert (status, answer) == (200, {"status": "stored", "alerts": 2})
    [alerts] = h.stored()
    assert alerts[0] == Alert(
        fingerprint="c6eadffa33fcdf37",
        starts_at="2021-10-12T07:51:03.157076+00:00",
        status="firing",
        labels={"alertname": "High memory usage", "team": "blue", "zone": "us-1"},
        annotations={
            **DOC_BODY["alerts"][0]["annotations"],
            "generatorURL": "https://play.grafana.org/alerting/1afz29v7z/edit",
            "silenceURL": "https://play.grafana.org/alerting/silence/new?alertmanager=grafana",
        },
        ends_at=None,
    )
    assert [a.labels["alertname"] for a in alerts] == ["High memory usage", "High CPU usage"]


async def test_grafana_links_are_kept_in_the_stored_body(h: Harness) -> None:
    """The stored body is a version-4 body (what the engine, replay and recordings read)
    that keeps each alert's Grafana links; empty ones are left out."""
    await h.post(json.dumps(DOC_BODY), path=GRAFANA)
    conn = sqlite3.connect(h.db.with_name("r.spool.db"))
    try:
        [(body,)] = conn.execute("SELECT body FROM inbox").fetchall()
    finally:
        conn.close()
    stored = json.loads(body)
    assert stored["version"] == "4"
    second = stored["alerts"][1]
    assert second["dashboardURL"] == "https://play.grafana.org/d/abc"
    assert second["panelURL"] == "https://play.grafana.org/d/abc?viewPanel=2"
    assert second["startsAt"] == "2021-10-12T09:56:03.157076+02:00"  # as sent: its identity
    assert "dashboardURL" not in stored["alerts"][0]


@pytest.mark.parametrize(
    ("path", "version", "expected"),
    [
        (GRAFANA, "4", "not a Grafana webhook contact point (version 1) payload"),
        ("/webhook/alertmanager", "1", "not an Alertmanager webhook (version 4) payload"),
    ],
)
async def test_a_body_on_the_other_route_is_400_naming_the_version(
    h: Harness, path: str, version: str, expected: str
) -> None:
    """An Alertmanager body posted to the Grafana route (or the reverse) is refused with an
    error that says which sender the route expects, and nothing is stored."""
    body = copy.deepcopy(DOC_BODY)
    body["version"] = version
    status, answer = await h.post(json.dumps(body), path=path)
    assert status == 400
    assert answer["error"] == expected
    assert answer["details"][0]["path"] == "version"
    assert h.stored() == []


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["alerts"][0].pop("labels"), "alerts.0.labels"),
        (lambda b: b["alerts"][1].update(startsAt="yesterday"), "alerts.1.startsAt"),
        (lambda b: b["alerts"][1].update(dashboardURL=7), "alerts.1.dashboardURL"),
        (lambda b: b.update(status="alerting"), "status"),
    ],
)
async def test_a_wrong_grafana_shape_is_400_naming_the_field(
    h: Harness, mutate: Any, field: str
) -> None:
    """Bad Grafana bodies get the receiver's usual clear 400 with the field's path."""
    body = copy.deepcopy(DOC_BODY)
    mutate(body)
    status, answer = await h.post(json.dumps(body), path=GRAFANA)
    assert status == 400, answer
    assert answer["details"][0]["path"] == field
    assert h.stored() == []


async def test_grafana_route_takes_the_same_credentials(h: Harness) -> None:
    """The Grafana route is behind the same webhook auth (a contact point's Authorization
    header: scheme Bearer, the token as credentials)."""
    status, _ = await h.post(
        json.dumps(DOC_BODY), headers={"Authorization": "Bearer wrong"}, path=GRAFANA
    )
    assert status == 401
    assert h.stored() == []


RULES = """
rules:
  - name: page-on-high-memory
    match:
      - alertname = "High memory usage"
      - team = blue
    escalate: critical
"""


def test_a_grafana_alert_opens_and_closes_an_incident(tmp_path: Path) -> None:
    """Through a running daemon: a Grafana alert matches a rule like an Alertmanager one
    (an incident opens with its labels), and Grafana's resolved notification closes it."""
    daemon = Daemon.for_config(write_config(tmp_path, RULES)).start()
    try:
        headers = {"Authorization": f"Bearer {DAEMON_TOKEN}", "Content-Type": "application/json"}
        body = copy.deepcopy(DOC_BODY)
        status, _ = daemon.request("POST", GRAFANA, json.dumps(body).encode(), headers)
        assert status == 200
        daemon.wait_applied()
        [incident] = storeview.incidents(daemon.db)
        assert incident["rule"] == "page-on-high-memory"
        assert incident["labels"]["zone"] == "us-1"
        assert incident["closed_at"] is None
        resolved = copy.deepcopy(body)
        resolved["status"] = "resolved"
        resolved["alerts"] = [dict(body["alerts"][0], status="resolved")]
        resolved["alerts"][0]["endsAt"] = "2021-10-12T10:01:03.157076+02:00"
        status, _ = daemon.request("POST", GRAFANA, json.dumps(resolved).encode(), headers)
        assert status == 200
        daemon.wait_applied()
        [closed] = storeview.incidents(daemon.db)
        assert closed["closed_at"] is not None, closed
    finally:
        daemon.stop()
