"""End to end with the real Alertmanager (Debian's): a `silence:` rule's step silences
its alert, the silence is expired when automation stops, and the resolve Alertmanager no
longer sends (it mutes remediator's receiver too) is found by remediator's poll."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from support import storeview
from support.alertmanager import Alertmanager, free_port
from support.daemon import ADMIN_TOKEN, STARTS, TOKEN, Daemon, webhook, write_config
from support.metrics import sample
from support.sshd import SshServer

RULE = """\
rules:
  - name: restart-node
    match: [alertname = NodeDown]
    target: "{{ labels.instance | host }}"
    steps:
      - action: restart_service
        params: {service: kaldrix-node}
        verify: 5m
    escalate: critical
    silence: true
"""
LABELS = {"alertname": "NodeDown", "instance": "web1", "team": 'a "quoted" team'}
POLL = "alertmanager: {{url: '{url}', timeout: 2s, poll: 1s, min_uptime: {uptime}}}\n"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Setup:
    daemon: Daemon
    am: Alertmanager


@contextlib.contextmanager
def running(tmp_path: Path, sshd: SshServer, uptime: str = "0s") -> Iterator[Setup]:
    """Alertmanager posting to the daemon, the daemon silencing through it."""
    port = free_port()
    with Alertmanager.start(
        tmp_path / "am", f"http://127.0.0.1:{port}/webhook/alertmanager", TOKEN
    ) as am:
        extra = POLL.format(url=am.url, uptime=uptime)
        config = write_config(tmp_path / "d", RULE, sshd=sshd, port=port, extra=extra)
        daemon = Daemon.for_config(config).start()
        try:
            yield Setup(daemon, am)
        finally:
            assert daemon.stop() == 0, daemon.logs()


@pytest.fixture
def setup(tmp_path: Path, sshd: SshServer) -> Iterator[Setup]:
    with running(tmp_path, sshd) as s:
        yield s


def silences(am: Alertmanager) -> list[dict[str, Any]]:
    with _OPENER.open(f"{am.url}/api/v2/silences", timeout=5.0) as resp:
        found: list[dict[str, Any]] = json.load(resp)
    return found


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def incident(d: Daemon) -> dict[str, Any]:
    [found] = storeview.incidents(d.db)
    return found


def audit_of(d: Daemon, event: str) -> list[dict[str, Any]]:
    return [detail for name, detail in storeview.audit(d.db, incident(d)["id"]) if name == event]


def silenced_and_verifying(s: Setup) -> dict[str, Any]:
    s.am.add_alert(LABELS)
    storeview.wait_for("a silence", lambda: [x for x in silences(s.am) if x])
    storeview.wait_for("the incident to verify", lambda: incident(s.daemon)["state"] == "verifying")
    [silence] = silences(s.am)
    return silence


def test_a_step_silences_exactly_its_alert_until_the_bound(setup: Setup) -> None:
    """The step's silence matches exactly the alert's labels (equal, not regex, quotes
    kept as data), is made by remediator with a comment naming the incident, ends at the
    verify window plus what the step may run (command timeout 20s + 3 SSH connects of 5s:
    5m35s), and is on the incident (store, API, audit)."""
    silence = silenced_and_verifying(setup)
    d = setup.daemon
    assert silence["status"]["state"] == "active"
    assert sorted(silence["matchers"], key=lambda m: m["name"]) == [
        {"name": k, "value": v, "isRegex": False, "isEqual": True}
        for k, v in sorted(LABELS.items())
    ]
    assert silence["createdBy"] == "remediator"
    found = incident(d)
    assert silence["comment"] == (
        f"remediator incident {found['id']}: rule restart-node runs step 1 "
        f"(http://remediator.test/api/incidents/{found['id']})"
    )
    lasts = epoch(silence["endsAt"]) - epoch(silence["startsAt"])
    assert 335 - 3 < lasts < 335 + 3
    assert found["silence_id"] == silence["id"]
    [created] = audit_of(d, "silence_created")
    assert created["silence_id"] == silence["id"]
    assert abs(created["ends_at"] - epoch(silence["endsAt"])) < 1
    assert d.api(f"/api/incidents/{found['id']}")["silence_id"] == silence["id"]
    assert "Traceback" not in d.logs()


def test_a_resolve_while_silenced_is_polled_and_closes_the_incident(setup: Setup) -> None:
    """Alertmanager sends no resolve for a silenced alert; remediator's poll sees it gone
    twice, puts the resolve through the intake (the incident closes `remediated`, as on a
    webhook), then expires the silence and forgets its id."""
    silence = silenced_and_verifying(setup)
    d = setup.daemon
    time.sleep(3)  # polls (every 1s) find the alert in Alertmanager before it resolves
    setup.am.resolve_alert(LABELS)
    storeview.wait_for("the incident to close", lambda: incident(d)["state"] == "remediated")
    storeview.wait_for("the silence to expire", lambda: incident(d)["silence_id"] is None)
    [gone] = silences(setup.am)
    assert (gone["id"], gone["status"]["state"]) == (silence["id"], "expired")
    assert [x["silence_id"] for x in audit_of(d, "resolved_by_alertmanager_poll")] == [
        silence["id"]
    ]
    assert audit_of(d, "silence_expired") == [{"silence_id": silence["id"], "state": "remediated"}]
    _, body = d.request("GET", "/metrics")
    text = body.decode()
    assert sample(text, "remediator_silences_total", 'result="created"') == 1
    assert sample(text, "remediator_silences_total", 'result="resolved"') == 1
    assert sample(text, "remediator_silences_total", 'result="expired"') == 1


def test_an_acknowledged_incident_loses_its_silence(setup: Setup) -> None:
    """Once humans acknowledge the incident, automation stops: its silence is expired in
    Alertmanager (the other receivers hear the alert again) and audited once."""
    silence = silenced_and_verifying(setup)
    d = setup.daemon
    status, body = d.request(
        "POST",
        f"/api/incidents/{incident(d)['id']}/ack",
        b'{"by": "alice"}',
        {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )
    assert status == 200, body
    storeview.wait_for("the silence to expire", lambda: incident(d)["silence_id"] is None)
    assert [x["status"]["state"] for x in silences(setup.am)] == ["expired"]
    assert audit_of(d, "silence_expired") == [
        {"silence_id": silence["id"], "state": "acknowledged"}
    ]
    assert incident(d)["state"] == "acknowledged"


def test_a_young_alertmanager_is_not_believed_about_missing_alerts(
    tmp_path: Path, sshd: SshServer
) -> None:
    """Up for less than `min_uptime`, an Alertmanager may have lost its alerts: a missing
    alert is not taken as resolved; the incident keeps verifying, its silence kept."""
    with running(tmp_path, sshd, uptime="1h") as s:
        am = s.am
        silenced_and_verifying(s)
        time.sleep(3)  # polls find the alert first: only its going missing is in question
        am.resolve_alert(LABELS)
        storeview.wait_for("the alert to leave Alertmanager", lambda: not am.alerts())
        time.sleep(4)  # four polls at 1s: twice missing is enough when it is old enough
        assert incident(s.daemon)["state"] == "verifying"
        assert incident(s.daemon)["silence_id"] is not None
        assert audit_of(s.daemon, "resolved_by_alertmanager_poll") == []


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_an_unreachable_alertmanager_never_blocks_the_step(
    tmp_path: Path, sshd: SshServer, kind: str
) -> None:
    """With Alertmanager down (connection refused) or hung (it accepts and never answers)
    the step still runs, at most `alertmanager.timeout` (2s) late; `silence_failed` says
    why and the metric counts it."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        port = hung.getsockname()[1] if kind == "silent" else free_port()
        extra = POLL.format(url=f"http://127.0.0.1:{port}", uptime="0s")
        d = Daemon.for_config(write_config(tmp_path / "d", RULE, sshd=sshd, extra=extra)).start()
        try:
            assert d.post_webhook(webhook(LABELS, starts_at=STARTS)) == 200
            storeview.wait_for(
                "the incident to verify",
                lambda: [i for i in storeview.incidents(d.db) if i["state"] == "verifying"],
            )
            assert sshd.calls("systemctl") == [
                ["restart", "kaldrix-node"],
                ["is-active", "kaldrix-node"],
            ]
            rows = storeview.audit(d.db, incident(d)["id"])
            at = {name: row_at for name, row_at in _times(d, incident(d)["id"])}
            assert at["step_executing"] - at["step_dispatching"] < 2 + 1
            [failed] = [detail for name, detail in rows if name == "silence_failed"]
            # Hung: the call's own timeout or the step's bound on all its calls, whichever
            # fires first (both are `alertmanager.timeout`).
            expected = (
                "POST /api/v2/silences: ClientConnectorError: Cannot connect to host"
                if kind == "refused"
                else "no answer from Alertmanager in 2s"
            )
            assert expected in failed["error"]
            assert incident(d)["silence_id"] is None
            _, body = d.request("GET", "/metrics")
            assert sample(body.decode(), "remediator_silences_total", 'result="failed"') == 1
        finally:
            assert d.stop() == 0, d.logs()


def _times(d: Daemon, incident_id: int) -> list[tuple[str, float]]:
    rows = storeview.query(
        d.db, "SELECT event, at FROM audit WHERE incident_id = :i ORDER BY id", {"i": incident_id}
    )
    return [(r["event"], float(r["at"])) for r in rows]


TWO_STEPS = RULE.replace(
    "        verify: 5m\n",
    "        verify: 3s\n"
    "      - action: restart_service\n"
    "        params: {service: kaldrix-api}\n"
    "        verify: 5m\n",
)


def test_a_later_step_extends_the_same_silence(tmp_path: Path, sshd: SshServer) -> None:
    """Step 1's silence lasts for both steps' windows and runs (3s + 5m + 2 x (20s + 3 x
    5s connects)); step 2 keeps the same silence (same id, still active, one in
    Alertmanager) ending 5m35s after it."""
    port = free_port()
    with Alertmanager.start(
        tmp_path / "am", f"http://127.0.0.1:{port}/webhook/alertmanager", TOKEN
    ) as am:
        extra = POLL.format(url=am.url, uptime="0s")
        config = write_config(tmp_path / "d", TWO_STEPS, sshd=sshd, port=port, extra=extra)
        d = Daemon.for_config(config).start()
        try:
            am.add_alert(LABELS)
            storeview.wait_for("a silence", lambda: silences(am))
            [first] = silences(am)
            lasts = epoch(first["endsAt"]) - epoch(first["startsAt"])
            assert 373 - 3 < lasts < 373 + 3
            storeview.wait_for("step 2", lambda: len(audit_of(d, "silence_created")) == 2)
            [second] = silences(am)
            assert (second["id"], second["status"]["state"]) == (first["id"], "active")
            assert second["startsAt"] == first["startsAt"]
            step2 = audit_of(d, "silence_created")[1]
            assert step2["silence_id"] == first["id"]
            assert abs(step2["ends_at"] - epoch(second["endsAt"])) < 1
            assert 335 - 3 < epoch(second["endsAt"]) - time.time() < 335 + 3
            _, body = d.request("GET", "/metrics")
            assert sample(body.decode(), "remediator_silences_total", 'result="updated"') == 1
        finally:
            assert d.stop() == 0, d.logs()


def test_a_failed_step_hands_over_and_lifts_the_silence(tmp_path: Path, sshd: SshServer) -> None:
    """A step that fails escalates the incident: automation stopped, so the silence is
    expired and the other receivers hear the alert again."""
    sshd.install_recorder("systemctl", exit_code=1)
    with running(tmp_path, sshd) as s:
        s.am.add_alert(LABELS)
        storeview.wait_for("a silence", lambda: silences(s.am))
        storeview.wait_for("the escalation", lambda: incident(s.daemon)["state"] == "escalating")
        storeview.wait_for(
            "the silence to expire", lambda: incident(s.daemon)["silence_id"] is None
        )
        assert [x["status"]["state"] for x in silences(s.am)] == ["expired"]
        [expired] = audit_of(s.daemon, "silence_expired")
        assert expired["state"] == "escalating"


def test_a_silence_rule_added_by_reload_without_a_restart_says_so(
    tmp_path: Path, sshd: SshServer
) -> None:
    """`alertmanager:` and a `silence:` rule added by a reload: the step runs, and since
    Alertmanager's secrets are read at start, `silence_failed` says to restart."""
    plain = RULE.replace("    silence: true\n", "")
    d = Daemon.for_config(write_config(tmp_path / "d", plain, sshd=sshd)).start()
    try:
        (d.config.parent / "rules" / "rules.yml").write_text(RULE)
        with d.config.open("a") as f:
            f.write(POLL.format(url=f"http://127.0.0.1:{free_port()}", uptime="0s"))
        assert d.proc is not None
        d.proc.send_signal(signal.SIGHUP)
        storeview.wait_for(
            "the reload",
            lambda: (
                sample(
                    d.request("GET", "/metrics")[1].decode(),
                    "remediator_config_reloads_total",
                    'result="success"',
                )
                == 1
            ),
        )
        assert d.post_webhook(webhook(LABELS, starts_at=STARTS)) == 200
        storeview.wait_for(
            "the incident to verify",
            lambda: [i for i in storeview.incidents(d.db) if i["state"] == "verifying"],
        )
        [failed] = audit_of(d, "silence_failed")
        assert "restart the daemon" in failed["error"]
    finally:
        assert d.stop() == 0, d.logs()


def test_an_alert_alertmanager_never_had_is_not_resolved_by_the_poll(
    tmp_path: Path, sshd: SshServer
) -> None:
    """An alert sent straight to the webhook (as Grafana does) gets its silence, but the
    poll, never finding it in Alertmanager, does not take it as resolved: the incident
    keeps verifying."""
    with running(tmp_path, sshd) as s:
        d = s.daemon
        assert d.post_webhook(webhook(LABELS, starts_at=STARTS)) == 200
        storeview.wait_for(
            "the incident to verify",
            lambda: [i for i in storeview.incidents(d.db) if i["state"] == "verifying"],
        )
        assert [x["status"]["state"] for x in silences(s.am)] == ["active"]
        time.sleep(4)  # four polls at 1s
        assert incident(d)["state"] == "verifying"
        assert audit_of(d, "resolved_by_alertmanager_poll") == []


def test_a_missing_alertmanager_token_stops_start_up(tmp_path: Path, sshd: SshServer) -> None:
    """The bearer token is read at start: unset, the daemon does not start, and says
    which key names which variable (not the first silence, at 3 a.m.)."""
    extra = "alertmanager: {url: 'http://127.0.0.1:9093', bearer_token_env: AM_TOKEN_UNSET}\n"
    d = Daemon.for_config(write_config(tmp_path / "d", RULE, sshd=sshd, extra=extra))
    with pytest.raises(RuntimeError, match="daemon exited") as raised:
        d.start()
    assert (
        "alertmanager.bearer_token_env: environment variable AM_TOKEN_UNSET is not set or empty"
        in str(raised.value)
    )
