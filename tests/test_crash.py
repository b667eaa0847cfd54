"""kill -9 at the worst moments: no acknowledged alert lost, no command sent twice."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from support import storeview
from support.daemon import RESTART_NODE_RULE, Daemon, webhook, write_config
from support.sshd import SshServer

RULE = RESTART_NODE_RULE + "    escalate: critical\n"
ALERT = webhook({"alertname": "NodeDown", "instance": "web1:9100"})


def events(d: Daemon) -> list[str]:
    return storeview.events(d.db, 1)


def test_kill_after_ack_before_the_step_runs_it_once_after_restart(
    tmp_path: Path, sshd: SshServer
) -> None:
    """Acknowledged, then killed while connecting: after restart the step runs exactly once."""
    d = Daemon.for_config(
        write_config(tmp_path / "d", RULE, sshd=sshd, ssh_extra="  connect_attempts: 1\n")
    )
    d.config.write_text(d.config.read_text().replace("connect_timeout: 5s", "connect_timeout: 60s"))
    sshd.pause()  # the TCP handshake completes, the SSH banner never comes
    d.start()
    assert d.post_webhook(ALERT) == 200
    storeview.wait_for("the step to dispatch", lambda: "step_dispatching" in events(d))
    d.kill9()
    assert "step_executing" not in events(d)
    sshd.resume()

    d.start()
    storeview.wait_for("the step to succeed", lambda: "step_succeeded" in events(d))
    assert d.stop() == 0
    assert sshd.calls("systemctl") == [["restart", "kaldrix-node"], ["is-active", "kaldrix-node"]]
    assert events(d).count("step_executing") == 1
    assert [s["attempts"] for s in storeview.steps(d.db, 1)] == [2]
    assert len(storeview.incidents(d.db)) == 1


def test_kill_while_the_command_runs_never_resends_it(tmp_path: Path, sshd: SshServer) -> None:
    """Killed after the command was sent: after restart it is `unknown`, never re-sent."""
    sshd.install_recorder("systemctl", sleep_s=3)
    d = Daemon.for_config(write_config(tmp_path / "d", RULE, sshd=sshd)).start()
    assert d.post_webhook(ALERT) == 200
    storeview.wait_for("the command to start", lambda: sshd.calls("systemctl"))
    d.kill9()
    assert "step_executing" in events(d)

    d.start()
    storeview.wait_for("the step outcome", lambda: "step_outcome_unknown" in events(d))
    assert d.stop() == 0
    assert sshd.calls("systemctl") == [["restart", "kaldrix-node"]]
    [step] = storeview.steps(d.db, 1)
    assert step["state"] == "unknown"
    assert storeview.incidents(d.db)[0]["state"] == "verifying"


def test_kill_with_bodies_in_the_inbox_loses_none(tmp_path: Path, sshd: SshServer) -> None:
    """Every acknowledged notification becomes an incident, even across a kill -9."""
    d = Daemon.for_config(
        write_config(
            tmp_path / "d", RULE.replace("restart-node", "r") + "    dry_run: true\n", sshd=sshd
        )
    ).start()
    acknowledged = []
    for i in range(40):
        body = json.loads(json.dumps(ALERT))
        body["alerts"][0]["startsAt"] = f"2026-11-23T09:{i:02d}:00Z"
        if d.post_webhook(body) == 200:
            acknowledged.append(i)
    d.kill9()
    d.start()
    storeview.wait_for(
        "every incident", lambda: len(storeview.incidents(d.db)) == len(acknowledged)
    )
    assert d.stop() == 0
    assert len(acknowledged) == 40


def test_sigterm_lets_the_running_step_finish(tmp_path: Path, sshd: SshServer) -> None:
    """SIGTERM: stop accepting, let the running step finish, exit 0."""
    sshd.install_recorder("systemctl", sleep_s=1)
    d = Daemon.for_config(write_config(tmp_path / "d", RULE, sshd=sshd)).start()
    assert d.post_webhook(ALERT) == 200
    storeview.wait_for("the command to start", lambda: sshd.calls("systemctl"))
    assert d.stop() == 0
    assert "step_succeeded" in events(d)
    assert '"msg": "stopped"' in d.logs()


def test_kill_during_a_verify_window_runs_the_next_step_on_time_once(
    tmp_path: Path, sshd: SshServer
) -> None:
    """kill -9 inside step 1's verify window: after restart step 2 runs when it ends, once."""
    sshd.install_recorder("probe-stub")
    ladder = RULE.replace(
        "        verify: 5m\n",
        "        verify: 4s\n      - action: ssh\n        params: {argv: [probe-stub, second]}\n",
    )
    d = Daemon.for_config(write_config(tmp_path / "d", ladder, sshd=sshd)).start()
    assert d.post_webhook(ALERT) == 200
    verifying = storeview.wait_for(
        "step 1's verify window",
        lambda: dict(storeview.audit(d.db, 1)).get("verifying"),
    )
    d.kill9()
    assert sshd.calls("probe-stub") == []

    d.start()
    assert time.time() < verifying["until"], "restarted too late to show the timer resumes"
    storeview.wait_for("step 2", lambda: sshd.calls("probe-stub"), timeout_s=20)
    second = [
        detail
        for event, detail in storeview.audit(d.db, 1)
        if event == "step_dispatching" and detail["step"] == 1
    ]
    time.sleep(1)
    assert d.stop() == 0
    assert sshd.calls("probe-stub") == [["second"]]
    assert len(second) == 1
    started = [s["started_at"] for s in storeview.steps(d.db, 1) if s["step_index"] == 1]
    assert started[0] >= verifying["until"]
    assert len(sshd.calls("systemctl")) == 2  # step 1 was not run again


HUMANS_RULES = """\
rules:
  - name: reboot-node
    match: [alertname = NodeStuck]
    target: web1
    steps:
      - action: ssh
        params: {argv: [systemctl, reboot]}
        approval: required
        verify: 5m
    escalate: critical
  - name: page-only
    match: [alertname = BlockProductionStopped]
    escalate: p0
"""
HUMANS_POLICY = """\
  p0:
    steps:
      - notify: ["slack:#ops-team-alerts"]
      - after: 4s
        notify: ["slack:@U024BE7LH"]
approvals:
  default:
    approvers: [alice]
    timeout: 1h
"""


def _firing(alertname: str) -> dict[str, Any]:
    return webhook({"alertname": alertname})


def test_kill_with_an_approval_pending_and_a_page_due(tmp_path: Path, sshd: SshServer) -> None:
    """kill -9 while a step awaits approval and a chain's next page is due: after restart
    the approval still decides (the step runs once) and the page goes out once."""
    from support.daemon import ADMIN_TOKEN, SLACK_TOKEN
    from support.fakeslack import FakeSlack

    slack = FakeSlack.start(SLACK_TOKEN)
    try:
        d = Daemon.for_config(
            write_config(
                tmp_path / "d",
                HUMANS_RULES,
                sshd=sshd,
                policies=HUMANS_POLICY,
                slack_url=slack.api_url,
            )
        ).start()
        assert d.post_webhook(_firing("NodeStuck")) == 200
        assert d.post_webhook(_firing("BlockProductionStopped")) == 200
        slack.wait_for(
            "the first page",
            lambda: [b for b in slack.of("chat.postMessage") if b["channel"] == "#ops-team-alerts"],
        )
        storeview.wait_for(
            "the approval request", lambda: "approval_requested" in storeview.events(d.db, 1)
        )
        # Killed once the first page is recorded sent: a kill between Slack's answer and
        # that commit re-sends it (delivery is at least once; there is no idempotency key).
        storeview.wait_for(
            "the first page on record", lambda: "notified" in storeview.events(d.db, 2)
        )
        d.kill9()
        time.sleep(5)  # the second page falls due while the daemon is down
        d.start()
        slack.wait_for(
            "the second page",
            lambda: [b for b in slack.of("chat.postMessage") if b["channel"] == "U024BE7LH"],
        )
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
        status, _ = d.request("POST", "/api/incidents/1/approve", b'{"by": "alice"}', headers)
        assert status == 200
        storeview.wait_for("the step", lambda: "step_succeeded" in storeview.events(d.db, 1))
        time.sleep(1)
        assert d.stop() == 0
    finally:
        slack.close()
    channels = [b["channel"] for b in slack.of("chat.postMessage")]
    assert channels.count("#ops-team-alerts") == 1
    assert channels.count("U024BE7LH") == 1
    assert sshd.calls("systemctl") == [["reboot"]]
    assert storeview.events(d.db, 1).count("approval_requested") == 1
