"""`remediator serve` on a PostgreSQL store: a webhook becomes an incident whose step runs
on a real sshd, and both survive a SIGKILL of the daemon."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from support.daemon import ADMIN_TOKEN, Daemon, webhook, write_config
from support.postgres import PASSWORD, PostgresCluster
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
"""


def incidents(d: Daemon) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    status, body = d.request("GET", "/api/incidents", headers=headers)
    assert status == 200, body
    found: list[dict[str, Any]] = json.loads(body)["incidents"]
    return found


def restarts(sshd: SshServer) -> int:
    return sum(1 for argv in sshd.calls("systemctl") if argv[0] == "restart")


def wait_for(check: Any, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_serve_on_postgresql_acts_once_and_survives_a_kill(
    tmp_path: Path, sshd: SshServer, postgres: PostgresCluster, pg_url: str
) -> None:
    """With `store: postgresql://...` and the password from `store_password_env`, a webhook
    is acknowledged, its incident's command runs once on the host, and after a SIGKILL and
    a restart the incident is still there and nothing ran twice."""
    config = write_config(tmp_path / "d", RULE, sshd=sshd)
    bare = postgres.url(pg_url.rsplit("/", 1)[1], password=False)
    text = re.sub(r"store: .*\n", f"store: {bare}\nstore_password_env: PGPW\n", config.read_text())
    config.write_text(text)
    d = Daemon.for_config(config, env={"PGPW": PASSWORD}).start()
    try:
        assert d.post_webhook(webhook({"alertname": "NodeDown", "instance": "web1:9100"})) == 200
        wait_for(lambda: restarts(sshd) == 1)
        wait_for(lambda: [i["state"] for i in incidents(d)] == ["verifying"])
        d.kill9()
        d.start()
        assert [i["rule"] for i in incidents(d)] == ["restart-node"]
        assert d.post_webhook(webhook({"alertname": "NodeDown", "instance": "web1:9100"})) == 200
        time.sleep(1)
        assert restarts(sshd) == 1
        assert len(incidents(d)) == 1
    finally:
        d.stop()
    assert not (config.parent / "state").exists()  # nothing went to an SQLite file


def test_webhooks_answer_503_while_postgresql_is_down(tmp_path: Path, sshd: SshServer) -> None:
    """PostgreSQL stopping under a running daemon: webhooks answer 503 (Alertmanager
    retries) and the daemon stays up; once it is back, a webhook is acknowledged and its
    step runs."""
    with PostgresCluster.start() as own:
        config = write_config(tmp_path / "d", RULE, sshd=sshd)
        url = own.url(own.database())
        config.write_text(re.sub(r"store: .*\n", f"store: {url}\n", config.read_text()))
        d = Daemon.for_config(config).start()
        try:
            own.stop()
            alert = webhook({"alertname": "NodeDown", "instance": "web1:9100"})
            assert d.post_webhook(alert) == 503
            assert d.proc is not None
            assert d.proc.poll() is None
            own.restart()
            wait_for(lambda: d.post_webhook(alert) == 200)
            wait_for(lambda: restarts(sshd) == 1)
        finally:
            d.stop()
