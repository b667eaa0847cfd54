"""End to end: a real Alertmanager posts to the real daemon, which restarts over real SSH."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import storeview
from support.alertmanager import Alertmanager
from support.daemon import TOKEN, Daemon, write_config
from support.metrics import sample
from support.sshd import SshServer

RULE = """\
rules:
  - name: restart-unresponsive-node
    match:
      - alertname = NodeDown
      - severity =~ "critical|high"
    target: "{{ labels.instance | host }}"
    require:
      instance: '^[a-z0-9.-]+(:[0-9]+)?$'
    steps:
      - action: restart_service
        params: {service: kaldrix-node}
        verify: 5m
    escalate: critical
"""
LABELS = {"alertname": "NodeDown", "severity": "critical", "instance": "web1:9100"}


@pytest.fixture
def daemon(tmp_path: Path, sshd: SshServer) -> Iterator[Daemon]:
    d = Daemon.for_config(write_config(tmp_path / "d", RULE, sshd=sshd)).start()
    yield d
    assert d.stop() == 0, d.logs()


def firing_received(d: Daemon) -> float:
    _, body = d.request("GET", "/metrics")
    return sample(body.decode(), "remediator_alerts_received_total", 'status="firing"')


def test_alertmanager_alert_restarts_once_and_resolve_closes(
    tmp_path: Path, sshd: SshServer, daemon: Daemon
) -> None:
    """amtool fires; the service restarts once; re-sends change nothing; resolve closes."""
    with Alertmanager.start(
        tmp_path / "am", f"{daemon.url}/webhook/alertmanager", TOKEN, repeat_interval="1s"
    ) as am:
        am.add_alert(LABELS, {"summary": "node down"})
        storeview.wait_for(
            "the incident to verify",
            lambda: [i for i in storeview.incidents(daemon.db) if i["state"] == "verifying"],
        )
        storeview.wait_for("two re-sends", lambda: firing_received(daemon) >= 3, timeout_s=20)
        assert sshd.calls("systemctl") == [
            ["restart", "kaldrix-node"],
            ["is-active", "kaldrix-node"],
        ]
        [incident] = storeview.incidents(daemon.db)
        events = storeview.events(daemon.db, incident["id"])
        assert events.count("step_executing") == 1
        assert events.count("matched") == 1

        am.resolve_alert(LABELS)
        storeview.wait_for(
            "the incident to close",
            lambda: storeview.incidents(daemon.db)[0]["state"] == "remediated",
        )
    assert sshd.calls("systemctl") == [["restart", "kaldrix-node"], ["is-active", "kaldrix-node"]]


@pytest.mark.parametrize("instance", ["x;touch /tmp/pwned", "$(id)"])
def test_hostile_instance_label_never_reaches_a_shell(
    tmp_path: Path, sshd: SshServer, daemon: Daemon, instance: str
) -> None:
    """Through Alertmanager: the require check refuses it, the audit says why."""
    Path("/tmp/pwned").unlink(missing_ok=True)
    with Alertmanager.start(tmp_path / "am", f"{daemon.url}/webhook/alertmanager", TOKEN) as am:
        am.add_alert({**LABELS, "instance": instance})
        [incident] = storeview.wait_for(
            "the incident to escalate",
            lambda: [i for i in storeview.incidents(daemon.db) if i["state"] == "escalating"],
        )
    audit = dict(storeview.audit(daemon.db, incident["id"]))
    assert audit["require_failed"]["reason"] == (
        f"require: label instance={instance!r} does not match '^[a-z0-9.-]+(:[0-9]+)?$'"
    )
    assert sshd.calls("systemctl") == []
    assert not Path("/tmp/pwned").exists()
