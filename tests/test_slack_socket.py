"""slack.mode: socket on the real daemon: clicks over Slack Socket Mode, no public endpoint.

The fake serves apps.connections.open and a local websocket speaking Socket Mode's
envelopes; slack-sdk's aiohttp Socket Mode client inside the daemon connects to it for
real. A click is decided as POST /slack/interactions decides it: same approvers, same
idempotence; every envelope is acknowledged; a dropped socket is replaced.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import cli, storeview
from support.daemon import SIGNING_SECRET, Daemon, write_config
from support.fakeslack import FakeSlack, click_body, click_payload, sign
from support.sshd import SshServer

RULE = """\
rules:
  - name: restart-on-down
    match: [alertname = NodeDown]
    target: web1
    steps:
      - action: restart_service
        params: {service: kaldrix-node}
        approval: required
        verify: 10m
    escalate: critical
"""
POLICY = (
    "approvals:\n  default:\n    approvers: [U024BE7LH]\n"
    "    channel: '#ops-approvals'\n    timeout: 15m\n    on_timeout: escalate\n"
)
SOCKET = "  mode: socket\n  app_token_env: SLACK_APP_TOKEN\n  socket_ping: 1s\n"
ALERT = {
    "version": "4",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "NodeDown"},
            "startsAt": "2026-11-30T01:00:00Z",
        }
    ],
}


def socket_daemon(tmp_path: Path, sshd: SshServer, slack: FakeSlack, extra: str = "") -> Daemon:
    cfg = write_config(
        tmp_path / "d",
        RULE,
        sshd=sshd,
        policies=POLICY,
        slack_url=slack.api_url,
        slack_extra=SOCKET + extra,
    )
    return Daemon.for_config(cfg, env={"SLACK_APP_TOKEN": slack.app_token})


@pytest.fixture
def daemon(tmp_path: Path, sshd: SshServer, slack: FakeSlack) -> Iterator[Daemon]:
    d = socket_daemon(tmp_path, sshd, slack).start()
    slack.wait_for("the socket to open", slack.sockets_open)
    yield d
    d.stop()


def asked(d: Daemon, slack: FakeSlack) -> str:
    """Post the alert; the id on the approval request's buttons."""
    assert d.post_webhook(ALERT) == 200
    ask = slack.wait_for(
        "the approval request",
        lambda: [b for b in slack.of("chat.postMessage") if b["channel"] == "#ops-approvals"],
    )[0]
    return str(ask["blocks"][-1]["elements"][0]["value"])


def metric(d: Daemon, name: str) -> float:
    status, body = d.request("GET", "/metrics")
    assert status == 200
    m = re.search(rf"^{name} (\S+)$", body.decode(), re.MULTILINE)
    assert m is not None, name
    return float(m.group(1))


def test_an_approvers_click_over_the_socket_runs_the_step(
    daemon: Daemon, slack: FakeSlack, sshd: SshServer
) -> None:
    """A click from someone outside the approvers is refused (ephemeral answer, nothing
    runs); the approver's click runs the step. Every envelope is acknowledged, and there
    is no /slack/interactions endpoint to expose."""
    d = daemon
    approval_id = asked(d, slack)
    intruder = slack.send_envelope(click_payload("approve", approval_id, "U0MALLORY"))
    refusal = slack.wait_for("the refusal", lambda: slack.of("chat.postEphemeral"))
    assert refusal[0]["user"] == "U0MALLORY"
    assert "not in the approvers" in refusal[0]["text"]
    assert storeview.incidents(d.db)[0]["state"] == "awaiting_approval"
    assert sshd.calls("systemctl") == []

    approver = slack.send_envelope(click_payload("approve", approval_id, "U024BE7LH"))
    storeview.wait_for("the step to run", lambda: "step_succeeded" in storeview.events(d.db, 1))
    assert sshd.calls("systemctl")[0] == ["restart", "kaldrix-node"]
    assert slack.acks == [intruder, approver]
    decided = [detail for event, detail in storeview.audit(d.db, 1) if event == "approved"]
    assert len(decided) == 1
    assert "U024BE7LH" in str(decided[0]["approvers"])

    body = click_body("approve", approval_id, "U024BE7LH")
    status, _ = d.request("POST", "/slack/interactions", body, sign(SIGNING_SECRET, body))
    assert status == 404
    assert metric(d, "remediator_slack_socket_connected") == 1


def test_a_click_delivered_twice_is_decided_once(daemon: Daemon, slack: FakeSlack) -> None:
    """Slack redelivers an envelope it saw no ack for: the second copy is acknowledged and
    ignored (no second decision, no "already approved" answer); the same click sent again
    as a new envelope gets the usual answer to a late click and changes nothing."""
    d = daemon
    approval_id = asked(d, slack)
    click = click_payload("approve", approval_id, "U024BE7LH")
    first = slack.send_envelope(click)
    slack.send_envelope(click, envelope_id=first)
    storeview.wait_for("the step to run", lambda: "step_succeeded" in storeview.events(d.db, 1))
    slack.wait_for("both acks", lambda: len(slack.acks) == 2)
    time.sleep(0.5)
    assert slack.of("chat.postEphemeral") == []
    slack.send_envelope(click)
    late = slack.wait_for("the late-click answer", lambda: slack.of("chat.postEphemeral"))
    assert "already" in late[0]["text"]
    events = storeview.events(d.db, 1)
    assert events.count("approved") == 1
    assert events.count("step_succeeded") == 1


def test_a_dropped_socket_is_replaced_and_clicks_still_arrive(
    daemon: Daemon, slack: FakeSlack
) -> None:
    """The network cuts the websocket (no close frame): the daemon opens a new one with a
    fresh URL, /metrics counts the reconnection, and a click over the new socket decides."""
    d = daemon
    assert metric(d, "remediator_slack_socket_connects_total") == 1
    slack.drop_sockets()
    slack.wait_for("a second socket", lambda: slack.sockets_opened == 2 and slack.sockets_open())
    storeview.wait_for(
        "the reconnection to be counted",
        lambda: metric(d, "remediator_slack_socket_connects_total") == 2,
    )
    assert len(slack.of("apps.connections.open")) == 2
    approval_id = asked(d, slack)
    slack.send_envelope(click_payload("approve", approval_id, "U024BE7LH"))
    storeview.wait_for("the step to run", lambda: "step_succeeded" in storeview.events(d.db, 1))


def test_slacks_disconnect_notice_leaves_one_socket_that_is_read(
    daemon: Daemon, slack: FakeSlack
) -> None:
    """Slack's `disconnect` message (sent routinely before it recycles a connection): the
    daemon opens one new socket and closes the old one, never two at once (Slack spreads
    envelopes over every open socket: one nobody reads would swallow clicks); an
    envelope on the new socket is acknowledged and decided."""
    d = daemon
    slack.socket_delay_s = 0.8  # the new socket takes a while, as over the internet
    slack.send_disconnect()
    slack.wait_for("a second socket", lambda: slack.sockets_opened == 2)
    slack.wait_for("the old one closed", lambda: slack.sockets_open() == 1)
    time.sleep(1.5)  # no third socket from a second reconnect racing the first
    assert slack.sockets_opened == 2
    assert slack.sockets_open() == 1
    approval_id = asked(d, slack)
    eid = slack.send_envelope(click_payload("approve", approval_id, "U024BE7LH"))
    storeview.wait_for("the step to run", lambda: "step_succeeded" in storeview.events(d.db, 1))
    slack.wait_for("the ack", lambda: eid in slack.acks)


def test_reconnection_backs_off_while_slack_refuses(
    tmp_path: Path, sshd: SshServer, slack: FakeSlack
) -> None:
    """While apps.connections.open fails, attempts wait reconnect_min, then twice that,
    and so on (not a fixed retry loop against Slack); once it answers, the socket opens
    and /readyz stays ready throughout (Slack being down does not stop alert intake)."""
    slack.refuse_sockets = True
    d = socket_daemon(
        tmp_path, sshd, slack, extra="  reconnect_min: 200ms\n  reconnect_max: 2s\n"
    ).start()
    try:
        slack.wait_for("five attempts", lambda: len(slack.of("apps.connections.open")) >= 5)
        assert d.request("GET", "/readyz")[0] == 200
        assert metric(d, "remediator_slack_socket_connected") == 0
        slack.refuse_sockets = False
        slack.wait_for("the socket to open", slack.sockets_open, timeout_s=10)
    finally:
        d.stop()
    times = [c.at for c in slack.calls if c.method == "apps.connections.open"][:5]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.15
    assert gaps[3] >= 4 * gaps[0] * 0.8, gaps  # 0.2, 0.4, 0.8, 1.6 s


def test_socket_mode_without_an_app_token_is_a_check_error(tmp_path: Path) -> None:
    """`mode: socket` needs `app_token_env`; `check` says so, with where to get one."""
    cfg = write_config(tmp_path, RULE, slack_extra="  mode: socket\n")
    result = cli.run("check", "-c", str(cfg))
    assert result.returncode != 0
    assert "mode: socket needs app_token_env" in result.stdout + result.stderr


def test_a_bot_token_given_as_the_app_token_stops_start_up(
    tmp_path: Path, sshd: SshServer, slack: FakeSlack
) -> None:
    """An xoxb- token where the xapp- app-level token belongs is refused at start, naming
    the setting and where Slack issues app-level tokens."""
    d = socket_daemon(tmp_path, sshd, slack)
    d.env["SLACK_APP_TOKEN"] = "xoxb-not-an-app-token"
    with pytest.raises(RuntimeError) as exc:
        d.start()
    assert "slack.app_token_env" in str(exc.value)
    assert "App-Level Tokens" in str(exc.value)
