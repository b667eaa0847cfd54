"""One replica starts an incident's work, the other carries it on: a verify window whose
replica was SIGKILLed ends on time on the survivor, and an approval asked by one replica
is decided through the other, its command run once (the real sshd's record says so)."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest
from support.daemon import RESTART_NODE_RULE, SIGNING_SECRET, Daemon, webhook
from support.fakeslack import FakeSlack, click_body, sign
from support.replicas import LEASE_S, Replicas, events, incidents, wait_until
from support.sshd import SshServer

VERIFY_S = 8.0
MARGIN_S = 2.0  # a poll of the work loop, a transaction, the test's own polling
ESCALATING_RULE = (
    RESTART_NODE_RULE.replace("verify: 5m", f"verify: {VERIFY_S:g}s") + "    escalate: critical\n"
)
APPROVED_RULE = RESTART_NODE_RULE.replace("verify: 5m", "approval: required\n        verify: 5m")
APPROVERS = (
    "approvals:\n  default:\n    approvers: [U024BE7LH]\n"
    "    channel: '#ops-approvals'\n    timeout: 15m\n    on_timeout: escalate\n"
)
DOWN = {"alertname": "NodeDown", "instance": "web1:9100"}


def pair(tmp_path: Path, rules: str, sshd: SshServer, slack: FakeSlack, url: str) -> Replicas:
    """Replicas a and b on one database, paging and asking through the fake Slack."""
    return Replicas.configure(
        tmp_path,
        ("a", "b"),
        rules,
        url=url,
        sshd=sshd,
        slack_url=slack.api_url,
        policies=APPROVERS,
    )


def posts_to(slack: FakeSlack, channel: str) -> list[dict[str, object]]:
    """chat.postMessage bodies sent to `channel`."""
    return [body for body in slack.of("chat.postMessage") if body["channel"] == channel]


@pytest.mark.parametrize("alert", ["firing", "resolved"])
def test_a_verify_window_ends_on_time_on_the_survivor(
    tmp_path: Path, sshd: SshServer, slack: FakeSlack, pg_url: str, alert: str
) -> None:
    """Replica a runs the step and opens its verify window, then is SIGKILLed inside it.
    With the alert still firing, replica b hands the incident over when the window ends
    (no later than the lease and a small margin after it) and pages the chain once; with
    the alert resolved through b during the window, b closes the incident at once and
    nobody is paged when the window would have ended."""
    replicas = pair(tmp_path, ESCALATING_RULE, sshd, slack, pg_url)
    a, b = replicas["a"], replicas["b"]
    try:
        replicas.start("a")
        assert a.post_webhook(webhook(DOWN)) == 200
        wait_until("the verify window", lambda: incidents(a)[0]["state"] == "verifying", 15)
        [opened] = [e for e in events(a, 1) if e["event"] == "verifying"]
        # The API speaks RFC 3339 (auditview): back to epoch seconds for the arithmetic.
        until = datetime.fromisoformat(opened["detail"]["until"]).timestamp()
        replicas.start("b")
        a.kill9()
        assert time.time() < until, "the window ended before replica a was killed"
        assert sshd.restarts() == 1
        if alert == "resolved":
            assert b.post_webhook(webhook(DOWN, status="resolved")) == 200
            wait_until("the close", lambda: incidents(b)[0]["state"] == "remediated", 5)
            time.sleep(max(0.0, until - time.time()) + LEASE_S + MARGIN_S)
            assert incidents(b)[0]["state"] == "remediated"
            assert posts_to(slack, "#ops") == []
        else:
            wait_until(
                "the hand-over", lambda: incidents(b)[0]["state"] == "escalating", VERIFY_S + 10
            )
            [handed] = [e for e in events(b, 1) if e["event"] == "exhausted"]
            assert until <= handed["at"] <= until + LEASE_S + MARGIN_S, (until, handed)
            slack.wait_for("the page", lambda: posts_to(slack, "#ops"), timeout_s=10)
            assert len(posts_to(slack, "#ops")) == 1
        assert sshd.restarts() == 1
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{replicas.logs()}") from exc
    finally:
        replicas.stop()


def click(d: Daemon, approval_id: str, user: str = "U024BE7LH") -> int:
    """A signed Approve click from `user`, posted to replica `d`."""
    body = click_body("approve", approval_id, user)
    status, _ = d.request("POST", "/slack/interactions", body, sign(SIGNING_SECRET, body))
    return status


@pytest.mark.parametrize("asker", ["alive", "killed"])
def test_an_approval_asked_by_one_replica_is_decided_through_the_other(
    tmp_path: Path, sshd: SshServer, slack: FakeSlack, pg_url: str, asker: str
) -> None:
    """Replica a asks for approval in Slack; the Approve click reaches replica b (a still
    running, or SIGKILLed after asking): the step runs once on the host, the request was
    posted once and its message is updated to say who approved."""
    replicas = pair(tmp_path, APPROVED_RULE, sshd, slack, pg_url)
    a, b = replicas["a"], replicas["b"]
    try:
        replicas.start("a")
        assert a.post_webhook(webhook(DOWN)) == 200
        ask = slack.wait_for("the request", lambda: posts_to(slack, "#ops-approvals"))[0]
        approval_id = ask["blocks"][-1]["elements"][0]["value"]
        replicas.start("b")
        if asker == "killed":
            a.kill9()
        assert click(b, approval_id) == 200
        wait_until("the command", lambda: sshd.restarts() == 1, 15)
        wait_until("the verify window", lambda: incidents(b)[0]["state"] == "verifying", 10)
        time.sleep(LEASE_S + 1)  # time for a second command, were one coming
        assert sshd.restarts() == 1
        assert len(posts_to(slack, "#ops-approvals")) == 1
        updates = [u for u in slack.of("chat.update") if "U024BE7LH" in str(u)]
        assert updates, slack.of("chat.update")
        audit = [e["event"] for e in events(b, 1)]
        assert audit.count("approved") == 1
        assert audit.count("step_dispatching") == 1
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{replicas.logs()}") from exc
    finally:
        replicas.stop()
