"""PostgreSQL restarting under two working replicas: webhooks answer 503 while it is down
(Alertmanager retries), nothing acknowledged is lost, and the work resumes when it is
back: a verify window that ended meanwhile still hands over, a step that was in flight
is settled without being sent again, and new alerts' steps run, each once on the host."""

from __future__ import annotations

import time
from pathlib import Path

from support.daemon import webhook
from support.fakeslack import FakeSlack
from support.postgres import PostgresCluster
from support.replicas import (
    LEASE_S,
    PER_TARGET_RULE,
    Replicas,
    commands_per_target,
    incidents,
    wait_until,
)
from support.sshd import SshServer

RULE = PER_TARGET_RULE.replace("verify: 5m", "verify: 4s") + "    escalate: critical\n"
COMMAND_S = 2.0  # each `systemctl` takes this long: a step is in flight when PG stops
DOWN_S = 5.0


def down(target: str, status: str = "firing") -> dict[str, object]:
    """A NodeDown notification for `target`."""
    return webhook({"alertname": "NodeDown", "instance": f"{target}:9100"}, status=status)


def test_work_resumes_after_a_postgresql_restart(
    tmp_path: Path, sshd: SshServer, slack: FakeSlack
) -> None:
    """web1 is in its verify window and web2's command is running when PostgreSQL stops
    for a few seconds; web4's notification was acknowledged just before. While it is down
    both replicas answer web3's notification 503. Once it is back, web3's notification is
    acknowledged on a retry. In the end web1's window (over during the outage) has handed
    it over, web2's step is settled (`unknown` or `succeeded`, never re-sent), web3's and
    web4's steps ran, every incident, its alert still firing, is handed over after its
    window, and the host ran exactly one command per target."""
    sshd.install_recorder("systemctl", sleep_s=COMMAND_S)
    hosts = {f"web{n}": {"address": "127.0.0.1", "port": sshd.port} for n in range(1, 5)}
    with PostgresCluster.start() as own:
        replicas = Replicas.configure(
            tmp_path,
            ("a", "b"),
            RULE,
            url=own.url(own.database()),
            sshd=sshd,
            hosts=hosts,
            slack_url=slack.api_url,
        )
        a, b = replicas["a"], replicas["b"]
        try:
            replicas.start()
            assert a.post_webhook(down("web1")) == 200
            wait_until("web1's window", lambda: incidents(b)[0]["state"] == "verifying", 15)
            assert b.post_webhook(down("web2")) == 200
            wait_until("web2's command", lambda: "web2" in commands_per_target(sshd), 15)
            assert a.post_webhook(down("web4")) == 200
            own.stop()
            stopped = time.monotonic()
            assert a.post_webhook(down("web3")) == 503
            assert b.post_webhook(down("web3")) == 503
            time.sleep(max(0.0, DOWN_S - (time.monotonic() - stopped)))
            own.restart()
            wait_until("web3 acknowledged", lambda: b.post_webhook(down("web3")) == 200, 15)

            def states() -> dict[str, str]:
                return {i["target"]: i["state"] for i in incidents(a)}

            expected = dict.fromkeys(hosts, "escalating")
            try:
                wait_until("the work to resume", lambda: states() == expected, LEASE_S + 25)
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {states()}") from None
            time.sleep(LEASE_S + 1)  # time for a second command, were one coming
            assert commands_per_target(sshd) == {"web1": 1, "web2": 1, "web3": 1, "web4": 1}
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{replicas.logs()}") from exc
        finally:
            replicas.stop()
