"""Replicas dying under load: two `remediator serve` on one PostgreSQL, SIGKILLed at random
moments while Alertmanager spreads an alert stream over them, lose nothing acknowledged
and run no command twice (the real sshd's own record of commands is the evidence)."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

from support.daemon import webhook
from support.fakeslack import FakeSlack
from support.replicas import (
    LEASE_S,
    PER_TARGET_RULE,
    Replicas,
    commands_per_target,
    incidents,
    node_hosts,
    wait_until,
)
from support.sshd import SshServer

TARGETS = 24
ACK_WITHIN_S = 20.0  # Alertmanager retries a notification this long, replica to replica


def seed() -> int:
    """CHAOS_SEED replays a failure; otherwise a fresh one (printed: pytest shows it)."""
    value = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"chaos seed: {value} (CHAOS_SEED={value} replays it)")
    return value


def deliver(replicas: Replicas, first: str, payload: dict[str, Any]) -> bool:
    """Post as Alertmanager does: to `first`, and on a refused connection, a reset or a
    5xx to the other replica, until one answers 200 (acknowledged) or time runs out."""
    names = [first, *(n for n in replicas.by_name if n != first)]
    deadline = time.monotonic() + ACK_WITHIN_S
    turn = 0
    while time.monotonic() < deadline:
        try:
            if replicas[names[turn % len(names)]].post_webhook(payload) == 200:
                return True
        except OSError:
            pass  # killed before answering: not acknowledged, so sent again
        turn += 1
        time.sleep(0.05)
    return False


class Chaos:
    """A thread that SIGKILLs a random replica at random moments and starts it again."""

    def __init__(self, replicas: Replicas, rng: random.Random) -> None:
        self.replicas = replicas
        self.rng = rng
        self.kills = 0
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stopping.wait(self.rng.uniform(0.2, 1.5)):
                victim = self.replicas[self.rng.choice(sorted(self.replicas.by_name))]
                victim.kill9()
                self.kills += 1
                time.sleep(self.rng.uniform(0.0, 1.0))
                victim.start(timeout_s=30)
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Chaos:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(60)


def unsettled(found: dict[str, dict[str, Any]], expected: dict[str, str]) -> dict[str, str]:
    """Targets whose incident is not (yet) in its expected kind of state, with its state."""
    late = {}
    for target, kind in expected.items():
        state = found[target]["state"] if target in found else "no incident"
        # A resolve applied before its firing (the firing's row held by a killed replica
        # until its lease ran out) opens no incident: README's known limit of replicas.
        closed = state in ("resolved", "remediated", "no incident")
        if (kind == "closed") != closed or (kind == "verifying" and state != kind):
            late[target] = state
    return late


def test_replicas_killed_at_random_lose_no_alert_and_run_no_command_twice(
    tmp_path: Path, sshd: SshServer, pg_url: str, slack: FakeSlack
) -> None:
    """Distinct NodeDown alerts (a third of them later resolved) are posted round-robin to
    two replicas while a seeded chaos thread SIGKILLs either at random moments and starts
    it again; a notification not answered 200 is re-sent to the other replica, as
    Alertmanager does. At the end every acknowledged alert has its incident (the still
    firing ones verifying after their step, the resolved ones closed), no target's
    command ran more than once by the host's own record, and each step recorded
    `succeeded` ran exactly once there."""
    rng = random.Random(seed())
    sshd.install_recorder("systemctl", sleep_s=0.3)  # a window for kills mid-command
    hosts = node_hosts(sshd, TARGETS)
    replicas = Replicas.configure(
        tmp_path,
        ("a", "b"),
        PER_TARGET_RULE,
        url=pg_url,
        sshd=sshd,
        hosts=hosts,
        slack_url=slack.api_url,
    )
    to_resolve = set(rng.sample(sorted(hosts), TARGETS // 3))
    acked: dict[str, str] = {}  # target -> "verifying" or "closed": what it must end as
    try:
        replicas.start()
        with Chaos(replicas, rng) as chaos:
            for n, target in enumerate(sorted(hosts, key=lambda _: rng.random())):
                labels = {"alertname": "NodeDown", "instance": f"{target}:9100"}
                if deliver(replicas, "ab"[n % 2], webhook(labels)):
                    acked[target] = "verifying"
                if target in to_resolve and deliver(
                    replicas, "ba"[n % 2], webhook(labels, status="resolved")
                ):
                    acked[target] = "closed"
                time.sleep(rng.uniform(0.1, 0.6))
        assert chaos.error is None, chaos.error
        assert chaos.kills >= 2, "the stream ended before the chaos began"
        assert len(acked) == TARGETS, f"never acknowledged: {set(hosts) - set(acked)}"
        found: dict[str, dict[str, Any]] = {}

        def settled() -> bool:
            found.clear()
            found.update({i["target"]: i for i in incidents(replicas.alive()[0])})
            return not unsettled(found, acked)

        try:
            wait_until("the incidents to settle", settled, timeout_s=LEASE_S * 4 + 10)
        except AssertionError:
            late = unsettled(found, acked)
            shown = [
                (t, acked[t], replicas.alive()[0].api(f"/api/incidents/{found[t]['id']}"))
                for t in late
                if t in found
            ]
            print(json.dumps(shown, indent=1))
            raise AssertionError(f"unsettled: {late} {acked}") from None
        time.sleep(LEASE_S + 1)  # time for a second command, were one coming
        commands = commands_per_target(sshd)
        assert all(count == 1 for count in commands.values()), commands
        for target, incident in found.items():
            detail = replicas["a"].api(f"/api/incidents/{incident['id']}")
            if detail["steps"] and detail["steps"][0]["state"] == "succeeded":
                assert commands.get(target) == 1, (target, detail)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{replicas.logs()}") from exc
    finally:
        replicas.stop()
