"""From metric to remedy with the real programs: Prometheus -> Alertmanager -> remediator -> sshd.

The shipped KALDRIX handoff alerts (deploy/prometheus/runbook-alerts/, `for:` shortened in
a test copy), the shipped runbooks' routing (deploy/alertmanager/runbooks.yml, timers
shortened, human receivers mailing a local SMTP sink), the shipped rules and policies
(rules/, policies/) and a real sshd whose `systemctl` keeps a unit state. Only the
exporter is the test's: it reports a node down, memory high, failed logins from one address.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import storeview
from support.alertmanager import Alertmanager
from support.daemon import ADMIN_TOKEN, NO_SLACK, TOKEN, Daemon
from support.prometheus import Exporter, Prometheus, fast_alerts, fast_routing_config
from support.smtpsink import PASSWORD, SMTP_ENV, USER, SmtpSink
from support.sshd import SshServer, free_port

REPO = Path(__file__).resolve().parent.parent
ALERTS = REPO / "deploy" / "prometheus" / "runbook-alerts" / "kaldrix-handoff.yml"
ROUTING = REPO / "deploy" / "alertmanager" / "runbooks.yml"
INSTANCE = "validator1:9100"

# `systemctl` on the host: `is-active` prints the unit's state (exit 0 only when active),
# `restart` makes it active and records that it ran.
SYSTEMCTL = """\
#!/bin/sh
printf '%s\\n' "$*" >> {calls}
case "$1" in
  is-active) state=$(cat {state}); printf '%s\\n' "$state"; [ "$state" = active ];;
  restart) echo active > {state};;
esac
"""


@dataclass
class Chain:
    """The running chain and what the test controls."""

    exporter: Exporter
    daemon: Daemon
    state: Path  # the unit's state on the host
    calls: Path  # every systemctl call on the host
    sshd: SshServer

    def restarts(self) -> int:
        if not self.calls.exists():
            return 0
        return sum(1 for line in self.calls.read_text().splitlines() if line.startswith("restart"))

    def incidents(self) -> list[dict[str, Any]]:
        return storeview.incidents(self.daemon.db)

    def nft_calls(self) -> list[list[str]]:
        """nft runs on the host (a recording stand-in: nothing is blocked on this machine)."""
        return self.sshd.calls("nft")


def fast_routing(webhook_url: str, smtp: SmtpSink) -> str:
    """The shipped routing, fast, with the human receivers mailing the local sink."""
    config = fast_routing_config(webhook_url, TOKEN)
    config["global"].update(
        smtp_smarthost=f"127.0.0.1:{smtp.port}",
        smtp_require_tls=True,
        smtp_auth_username=USER,
        smtp_auth_password=PASSWORD,
    )
    for receiver in config["receivers"]:
        for mail in receiver.get("email_configs", []):
            mail["tls_config"] = {"ca_file": str(smtp.cert)}
    return json.dumps(config)


def remediator_config(workdir: Path, sshd: SshServer, smtp: SmtpSink) -> Path:
    """The shipped rules and policies, an inventory whose validator1 is the sshd."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "server": {
            "listen": f"127.0.0.1:{free_port()}",
            "webhook_auth": {"bearer_token_env": "REMEDIATOR_WEBHOOK_TOKEN"},
            "admin_token_env": "REMEDIATOR_ADMIN_TOKEN",
            "shutdown_grace": "10s",
        },
        "store": "sqlite:///state/remediator.db",
        "rules": str(REPO / "rules"),
        "policies": str(REPO / "policies"),
        "ssh": {
            "username": "root",
            "client_keys": [str(sshd.client_key)],
            "known_hosts": str(sshd.known_hosts),
            "connect_timeout": "5s",
            "command_timeout": "20s",
        },
        "slack": {"api_url": NO_SLACK, "channel": "#ops-alerts", "timeout": "5s"},
        "email": {
            "host": "127.0.0.1",
            "port": smtp.port,
            "starttls": True,
            "username_env": "SMTP_USER",
            "password_env": "SMTP_PASSWORD",
            "ca_file": str(smtp.cert),
            "from": "remediator@example.com",
            "fallback_to": ["oncall@example.com"],
        },
        "notifications": {"retry_min": "1s", "retry_max": "5s"},
        "inventory": {
            "hosts": {
                "validator1": {
                    "address": "127.0.0.1",
                    "port": sshd.port,
                    "groups": ["validators"],
                }
            }
        },
    }
    path = workdir / "remediator.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def chain(tmp_path: Path, sshd: SshServer, smtp: SmtpSink) -> Iterator[Chain]:
    state, calls = sshd.calls_dir / "unit.state", sshd.calls_dir / "systemctl.log"
    state.write_text("active\n")
    stub = sshd.bin_dir / "systemctl"
    stub.write_text(SYSTEMCTL.format(calls=calls, state=state))
    stub.chmod(0o755)
    sshd.install_recorder("nft")
    config = remediator_config(tmp_path / "rem", sshd, smtp)
    daemon = Daemon.for_config(config, env=SMTP_ENV).start()
    exporter = Exporter.start()
    am = Alertmanager.start(
        tmp_path / "am",
        "",
        "",
        config_text=fast_routing(f"{daemon.url}/webhook/alertmanager", smtp),
    )
    prom = Prometheus.start(
        tmp_path / "prom",
        [fast_alerts(ALERTS, tmp_path)],
        {INSTANCE: exporter.address},
        am.url,
    )
    try:
        yield Chain(exporter, daemon, state, calls, sshd)
    finally:
        prom.stop()
        am.stop()
        exporter.stop()
        daemon.stop()


def healthy(exporter: Exporter) -> None:
    """node_exporter's memory gauges at 50% used."""
    exporter.values = {
        "node_memory_MemTotal_bytes": 1000.0,
        "node_memory_MemAvailable_bytes": 500.0,
    }


def test_a_node_down_is_restarted_and_closes_when_it_is_back(chain: Chain, smtp: SmtpSink) -> None:
    """The exporter stops answering (up == 0): NodeDown fires in Prometheus, Alertmanager
    routes it to remediator (and mails the critical receiver), the shipped rule restarts
    kaldrix-node on the host only because it is not active, and once the node answers
    again the incident closes `remediated`."""
    healthy(chain.exporter)
    chain.state.write_text("failed\n")
    chain.exporter.down = True
    storeview.wait_for("the restart on the host", chain.restarts, timeout_s=60)
    [incident] = [i for i in chain.incidents() if i["labels"].get("alertname") == "NodeDown"]
    assert incident["rule"] == "restart-unresponsive-node"
    assert incident["target"] == "validator1"
    chain.exporter.down = False
    storeview.wait_for(
        "the incident to close",
        lambda: (
            next(i for i in chain.incidents() if i["id"] == incident["id"])["state"] == "remediated"
        ),
        timeout_s=60,
    )
    assert chain.restarts() == 1
    storeview.wait_for(
        "the critical receiver's mail",
        lambda: smtp.to("secondary-oncall@example.com"),
        timeout_s=30,
    )


def test_high_memory_restarts_the_node_and_closes_when_memory_falls(chain: Chain) -> None:
    """Memory above 90%: HighMemoryUsage fires, the shipped rule restarts kaldrix-node;
    memory back to 50%: the alert resolves and the incident closes `remediated`."""
    healthy(chain.exporter)
    chain.exporter.values["node_memory_MemAvailable_bytes"] = 50.0  # 95% used
    storeview.wait_for("the restart on the host", chain.restarts, timeout_s=60)
    [incident] = [i for i in chain.incidents() if i["labels"].get("alertname") == "HighMemoryUsage"]
    assert incident["rule"] == "restart-on-high-memory"
    healthy(chain.exporter)
    storeview.wait_for(
        "the incident to close",
        lambda: (
            next(i for i in chain.incidents() if i["id"] == incident["id"])["state"] == "remediated"
        ),
        timeout_s=60,
    )


def test_failed_logins_from_one_address_are_blocked_once_approved(chain: Chain) -> None:
    """300 failed logins a minute from one address: FailedLoginsHigh fires with that
    `source_ip`, the shipped rule asks for approval (block_ips always asks) and, once an
    approver approves through the API, blocks exactly that address on the host."""
    healthy(chain.exporter)
    series = 'kaldrix_auth_failures_total{source_ip="203.0.113.7"}'
    chain.exporter.count(series, 5.0)
    incident = storeview.wait_for(
        "the approval request",
        lambda: next((i for i in chain.incidents() if i["state"] == "awaiting_approval"), None),
        timeout_s=90,
    )
    assert incident["rule"] == "block-abusive-sources"
    assert incident["labels"]["source_ip"] == "203.0.113.7"
    assert chain.nft_calls() == []
    status, body = chain.daemon.request(
        "POST",
        f"/api/incidents/{incident['id']}/approve",
        json.dumps({"by": "U024BE7LH"}).encode(),
        {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )
    assert status == 200, body
    storeview.wait_for("the block on the host", chain.nft_calls, timeout_s=30)
    blocked = storeview.wait_for(
        "the step's outcome",
        lambda: next(
            (
                d
                for e, d in storeview.audit(chain.daemon.db, incident["id"])
                if e == "step_succeeded"
            ),
            None,
        ),
    )
    assert blocked["exit_status"] == 0
