"""`remediator serve` on a PostgreSQL store: a webhook becomes an incident whose step runs
on a real sshd, and both survive a SIGKILL of the daemon."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from support import storeview
from support.daemon import RESTART_NODE_RULE, Daemon, webhook, write_config
from support.postgres import PASSWORD, PostgresCluster
from support.sshd import SshServer

RULE = RESTART_NODE_RULE


def incidents(d: Daemon) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = d.api("/api/incidents")["incidents"]
    return found


def wait_for(check: Any, timeout_s: float = 15.0) -> None:
    storeview.wait_for("the check", check, timeout_s)


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
        wait_for(lambda: sshd.restarts() == 1)
        wait_for(lambda: [i["state"] for i in incidents(d)] == ["verifying"])
        d.kill9()
        d.start()
        assert [i["rule"] for i in incidents(d)] == ["restart-node"]
        assert d.post_webhook(webhook({"alertname": "NodeDown", "instance": "web1:9100"})) == 200
        time.sleep(1)
        assert sshd.restarts() == 1
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
            wait_for(lambda: sshd.restarts() == 1)
        finally:
            d.stop()
