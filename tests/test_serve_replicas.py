"""Two `remediator serve` replicas on one PostgreSQL database, as an HA Alertmanager pair
drives them: every notification posted to both at once is one alert, one incident and
one command on the real host."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

from support import storeview
from support.daemon import RESTART_NODE_RULE, Daemon, webhook, write_config
from support.metrics import sample
from support.sshd import SshServer

RULE = (
    RESTART_NODE_RULE
    + """\
  - name: note-slow
    match: [alertname = NodeSlow]
    steps:
      - action: notify
        params: {message: "{{ labels.instance }} is slow"}
        verify: 5m
"""
)
ROUNDS = 4
SLOW = 20  # alerts riding along in each notification: a longer transaction to race with


def wait_for(check: Any, timeout_s: float = 20.0) -> None:
    storeview.wait_for("the check", check, timeout_s)


def post_to_both(replicas: list[Daemon], payload: dict[str, Any]) -> list[int]:
    """POST one body to every replica at the same instant, as Alertmanager's HA peers do."""
    start = threading.Barrier(len(replicas))
    statuses = [0] * len(replicas)

    def post(i: int) -> None:
        start.wait()
        statuses[i] = replicas[i].post_webhook(payload)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(replicas))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def test_a_notification_posted_to_two_replicas_is_one_incident_and_one_command(
    tmp_path: Path, sshd: SshServer, pg_url: str
) -> None:
    """Round after round, the same notification is posted to two replicas at once: each
    replica acknowledges it, and there is exactly one incident per alert (the same list
    from either replica), one `systemctl restart` per alert on the host, no engine error
    and no dead letter (a replica that lost the race on the alert's key ran its
    transaction again and found the alert known)."""
    hosts = {
        f"web{n}": {"address": "127.0.0.1", "port": sshd.port, "groups": ["web"]}
        for n in range(1, ROUNDS + 1)
    }
    replicas = [
        Daemon.for_config(write_config(tmp_path / name, RULE, sshd=sshd, hosts=hosts, store=pg_url))
        for name in ("a", "b")
    ]
    try:
        for d in replicas:
            d.start()
        for n in range(1, ROUNDS + 1):
            alert = webhook({"alertname": "NodeDown", "instance": f"web{n}:9100"})
            alert["alerts"] += [
                webhook({"alertname": "NodeSlow", "instance": f"r{n}-{i}"})["alerts"][0]
                for i in range(SLOW)
            ]
            assert post_to_both(replicas, alert) == [200, 200]
            wait_for(lambda n=n: sshd.restarts() >= n)
        time.sleep(2)  # time for a second command, were one coming
        assert sshd.restarts() == ROUNDS
        for d in replicas:
            found = d.api("/api/incidents?limit=500")["incidents"]
            assert len(found) == ROUNDS * (1 + SLOW)
            assert len({i["labels"]["instance"] for i in found}) == len(found)
            assert sorted(i["target"] for i in found if i["target"]) == sorted(hosts)
            for incident in found:
                events = [e["event"] for e in d.api(f"/api/incidents/{incident['id']}")["audit"]]
                assert events.count("matched") == 1
                assert events.count("step_dispatching") == 1
            status, body = d.request("GET", "/metrics")
            text = body.decode()
            assert status == 200
            assert "remediator_engine_errors_total" in text
            assert "remediator_dead_letters" in text
            assert sample(text, "remediator_engine_errors_total") == 0, d.logs()
            assert sample(text, "remediator_dead_letters") == 0
    finally:
        for d in replicas:
            d.stop()


GROUP_RULE = RESTART_NODE_RULE.replace("verify: 5m", "verify: 1s")
ONE_AT_A_TIME = "safety:\n  groups:\n    web: {max_unavailable: 1}\n"


def _instance(body: dict[str, Any]) -> str:
    return str(body["alerts"][0]["labels"]["instance"])


def post_at_once(posts: list[tuple[Daemon, dict[str, Any]]]) -> list[int]:
    """Each (replica, body) POSTed at the same instant, from its own thread."""
    start = threading.Barrier(len(posts))
    statuses = [0] * len(posts)

    def post(i: int) -> None:
        start.wait()
        d, payload = posts[i]
        statuses[i] = d.post_webhook(payload)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(posts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def test_guards_hold_across_replicas(tmp_path: Path, sshd: SshServer, pg_url: str) -> None:
    """Three members of a `max_unavailable: 1` group fire at once, their notifications
    posted to different replicas, with a second alert on web1 of the same rule: the host's
    own record of command times shows no two restarts at the same instant (each replica
    checks the group under the other's last step start), the next member's restart waits
    for the restarted member's alerts to resolve (through the other replica), and web1 is
    restarted once (target lock, then cooldown): three commands in all, one per (rule,
    target)."""
    sshd.install_recorder("systemctl", sleep_s=1.0)
    hosts = {
        f"web{n}": {"address": "127.0.0.1", "port": sshd.port, "groups": ["web"]}
        for n in range(1, 4)
    }
    a, b = (
        Daemon.for_config(
            write_config(
                tmp_path / name,
                GROUP_RULE,
                sshd=sshd,
                hosts=hosts,
                policies=ONE_AT_A_TIME,
                store=pg_url,
            )
        )
        for name in ("a", "b")
    )
    down = [webhook({"alertname": "NodeDown", "instance": f"web{n}:9100"}) for n in (1, 2, 3)]
    again = webhook({"alertname": "NodeDown", "instance": "web1:9100", "probe": "icmp"})
    try:
        a.start()
        b.start()
        posts = [(a, down[0]), (b, down[1]), (a, down[2]), (b, again)]
        assert post_at_once(posts) == [200] * 4

        def started() -> dict[str, int]:
            counts: dict[str, int] = {}
            for incident in a.api("/api/incidents")["incidents"]:
                if a.api(f"/api/incidents/{incident['id']}")["steps"]:
                    counts[incident["target"]] = counts.get(incident["target"], 0) + 1
            return counts

        for restarted in (1, 2, 3):
            wait_for(lambda n=restarted: len(sshd.spans("systemctl", "restart")) == n, 40)
            time.sleep(2)  # time for a second member's command, were one coming
            assert len(sshd.spans("systemctl", "restart")) == restarted
            for target in started():  # the restarted members' alerts resolve (through b)
                for body in (b for b in (*down, again) if _instance(b) == f"{target}:9100"):
                    resolved = {**body, "status": "resolved"}
                    resolved["alerts"] = [{**body["alerts"][0], "status": "resolved"}]
                    assert b.post_webhook(resolved) == 200
        spans = sshd.spans("systemctl", "restart")
        for (_, first_end), (second_start, _) in itertools.pairwise(spans):
            assert second_start >= first_end, spans
        assert started() == {"web1": 1, "web2": 1, "web3": 1}
    finally:
        a.stop()
        b.stop()
