"""POST /slack/interactions on the real daemon: signatures, approvers, and a lockdown approved.

The firewall_lockdown step runs against a network-namespace host (sshd inside) once a
correctly signed Approve click from an allowed user arrives; forged, stale, replayed
and unsigned requests, and a click from a non-approver, change nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from support import storeview
from support.conflicts import approval_asked, losing, serving
from support.daemon import ADMIN_TOKEN, SIGNING_SECRET, Daemon, write_config
from support.fakeslack import FakeSlack, click_body, sign
from support.netns import LISTENER_PORT, NetnsHost, namespace_host

from remediator.slackapp import ClickDecisions, SlackInteractions

RULE = """\
rules:
  - name: security-breach
    match: [alertname = SecurityBreach]
    target: "{{ labels.instance | host }}"
    require: {instance: '^[a-z0-9.-]+(:[0-9]+)?$'}
    steps:
      - action: firewall_lockdown
        params: {allow_from: ["%(allow)s/32"]}
        verify: 10m
    escalate: critical
"""
POLICY = (
    "approvals:\n  default:\n    approvers: [U024BE7LH, U0G9QF9C6]\n"
    "    channel: '#ops-approvals'\n    timeout: 15m\n    on_timeout: escalate\n"
)
ALERT = {
    "version": "4",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "SecurityBreach", "instance": "node1:9100"},
            "startsAt": "2026-11-23T09:00:00Z",
        }
    ],
}


@pytest.fixture
def host(tmp_path: Path) -> Iterator[NetnsHost]:
    with namespace_host(tmp_path / "netns") as h:
        yield h


@pytest.fixture
def daemon(tmp_path: Path, host: NetnsHost, slack: FakeSlack) -> Iterator[Daemon]:
    assert host.sshd is not None
    cfg = write_config(
        tmp_path / "d",
        RULE % {"allow": host.client},
        sshd=host.sshd,
        hosts={"node1": {"address": host.address, "port": 22}},
        policies=POLICY,
        slack_url=slack.api_url,
    )
    d = Daemon.for_config(cfg).start()
    yield d
    d.stop()


def post_click(d: Daemon, body: bytes, headers: dict[str, str]) -> int:
    status, _ = d.request("POST", "/slack/interactions", body, headers)
    return status


def test_signed_approve_from_an_approver_runs_the_lockdown(
    daemon: Daemon, host: NetnsHost, slack: FakeSlack
) -> None:
    d = daemon
    assert d.post_webhook(ALERT) == 200
    ask = slack.wait_for(
        "the approval request",
        lambda: [b for b in slack.of("chat.postMessage") if b["channel"] == "#ops-approvals"],
    )[0]
    approval_id = ask["blocks"][-1]["elements"][0]["value"]
    assert host.connect(LISTENER_PORT, source=host.client)

    approve = click_body("approve", approval_id, "U024BE7LH")
    now = int(time.time())
    forged = sign("not-the-secret", approve, now)
    stale = sign(SIGNING_SECRET, approve, now - 301)
    replayed = {**sign(SIGNING_SECRET, approve, now - 60), "X-Slack-Request-Timestamp": str(now)}
    non_numeric = {**sign(SIGNING_SECRET, approve), "X-Slack-Request-Timestamp": "12a"}
    unsigned = {"Content-Type": "application/x-www-form-urlencoded"}
    for headers in (forged, stale, replayed, non_numeric, unsigned):
        assert post_click(d, approve, headers) == 401
    intruder = click_body("approve", approval_id, "U0MALLORY")
    assert post_click(d, intruder, sign(SIGNING_SECRET, intruder)) == 200
    refusal = slack.wait_for("the ephemeral refusal", lambda: slack.of("chat.postEphemeral"))
    assert refusal[0]["user"] == "U0MALLORY"
    assert "not in the approvers" in refusal[0]["text"]
    assert storeview.incidents(d.db)[0]["state"] == "awaiting_approval"
    assert host.connect(LISTENER_PORT, source=host.client)

    started = time.monotonic()
    assert post_click(d, approve, sign(SIGNING_SECRET, approve)) == 200
    assert time.monotonic() - started < 3
    slack.wait_for(
        "the lockdown to run",
        lambda: "step_succeeded" in storeview.events(d.db, 1),
    )
    assert not host.connect(LISTENER_PORT, source=host.client)
    # A second click changes nothing and says so, to that user only.
    assert post_click(d, approve, sign(SIGNING_SECRET, approve)) == 200
    again = slack.wait_for("a second reply", lambda: slack.of("chat.postEphemeral")[1:])
    assert "already approved by U024BE7LH" in again[0]["text"]
    events = storeview.events(d.db, 1)
    assert events.count("approved") == 1
    assert events.count("step_dispatching") == 1
    assert "approval_refused" in events


def test_admin_api_decides_when_slack_is_down(daemon: Daemon, slack: FakeSlack) -> None:
    """approve/deny/ack over the API: auth, approvers, and one decision only."""
    d = daemon
    slack.failing("status", 500)
    assert d.post_webhook(ALERT) == 200
    slack.wait_for("the approval request", lambda: storeview.incidents(d.db))
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}

    def call(
        path: str, body: dict[str, str], headers: dict[str, str] = auth
    ) -> tuple[int, dict[str, str]]:
        status, raw = d.request("POST", path, json.dumps(body).encode(), headers)
        return status, json.loads(raw)

    slack.wait_for(
        "awaiting approval", lambda: storeview.incidents(d.db)[0]["state"] == "awaiting_approval"
    )
    assert (
        call("/api/incidents/1/deny", {"by": "U0G9QF9C6"}, {"Authorization": "Bearer no"})[0] == 401
    )
    assert call("/api/incidents/1/deny", {})[0] == 400
    assert call("/api/incidents/9/deny", {"by": "U0G9QF9C6"})[0] == 404
    assert call("/api/incidents/1/deny", {"by": "mallory"})[0] == 403
    status, body = call("/api/incidents/1/deny", {"by": "U0G9QF9C6", "reason": "not now"})
    assert (status, body["state"]) == (200, "escalating")
    assert call("/api/incidents/1/approve", {"by": "U024BE7LH"})[0] == 409
    # The CLI wraps the same API: it finds the daemon from the config's listen address.
    env = {**os.environ, "REMEDIATOR_ADMIN_TOKEN": ADMIN_TOKEN}
    cli = [sys.executable, "-m", "remediator", "ack", "1", "-c", str(d.config), "--by", "U024BE7LH"]
    done = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "incident 1: acknowledged by admin-token (as U024BE7LH) (state: acknowledged)"
    )
    again = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=30, check=False)
    assert (again.returncode, again.stderr.strip()) == (
        1,
        "remediator: ack 1: already acknowledged",
    )
    status, raw = d.request("GET", "/api/incidents/1", headers=auth)
    shown = json.loads(raw)
    assert shown["approvals"][0]["state"] == "denied"
    assert shown["state"] == "acknowledged"
    assert shown["escalation"]["chain"] == "critical"
    assert "step_dispatching" not in [a["event"] for a in shown["audit"]]


async def test_a_click_that_loses_a_race_to_another_replica_is_decided_again(
    tmp_path: Path,
) -> None:
    """U1's Approve loses a race on the store (another replica wrote the incident first:
    PostgreSQL rolled the click's transaction back): it is decided again on what the
    winner committed, and the step is approved once. Before, the click was dropped with
    a log line, and U1 was never told."""
    h = await approval_asked(tmp_path, None)
    try:
        ctx, store = losing(h)
        app = web.Application()
        app.router.add_post(
            "/slack/interactions", SlackInteractions(ClickDecisions(ctx), b"secret").handle
        )
        body = click_body("approve", "1", "U1")
        async with serving(app) as client:
            sent = await client.post(
                "/slack/interactions", data=body, headers=sign("secret", body, int(h.clock.now()))
            )
        assert sent.status == 200
        assert store.lost == 1
        assert h.events(1).count("approved") == 1
    finally:
        await h.close()
