"""Failover benchmark: how long a SIGKILLed replica's claimed work waits for the survivor.

Two `remediator serve` replicas share one PostgreSQL database and a real sshd whose
`systemctl` takes COMMAND_S to run. A NodeDown alert is posted to one replica; whichever
replica claims the step (the work row's `claimed_by`, matched to its process through the
`replicas` table) is SIGKILLed once the host has recorded the command. The survivor
takes the step when the dead replica's lease ends (`store.lease`, which a live replica
renews every third of it) and records its outcome as unknown (a command that may have
been sent is never sent again): the `step_outcome_unknown` audit row's time, minus the
kill's, is the failover time. Evidence from the store and the host: the dead claim's
`claimed_until` at the kill, the survivor holding the claim afterwards, and the host
running the command once. Trials run at the same time (each its own database, sshd and replicas),
since each mostly waits for its lease. Target: failover <= lease + 2 s.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from support.daemon import RESTART_NODE_RULE, Daemon, webhook, write_config
from support.postgres import PostgresCluster
from support.replicas import pg_store
from support.sshd import SshServer
from support.storeview import wait_for

TRIALS = 3
COMMAND_S = 30.0  # the command still runs when its replica is killed
SLACK_S = 2.0  # target: failover within the lease plus this
LEASE_S = 30.0  # store.lease: the default


@dataclass(frozen=True)
class Trial:
    """One kill and what the store and the host recorded of it."""

    failover_s: float  # the SIGKILL -> the survivor's step_outcome_unknown row
    after_lease_s: float  # the lease's end -> that row
    commands: int  # `systemctl restart` runs on the host (1: never sent again)


def one_value(cluster: PostgresCluster, db: str, sql: str) -> str | None:
    """The single value `sql` returns on `db`, or None when it returns no row."""
    return cluster.psql(db, sql) or None


def claimant(cluster: PostgresCluster, db: str, replicas: list[Daemon]) -> tuple[Daemon, float]:
    """The replica whose claim the step's work row carries, and when that claim ends."""
    row = one_value(
        cluster,
        db,
        "SELECT r.name || '|' || w.claimed_until FROM work w JOIN replicas r "
        "ON r.id = w.claimed_by WHERE w.kind = 'run_step'",
    )
    if row is None:
        raise RuntimeError("no replica's claim on the step while its command runs")
    name, until = row.split("|")
    pid = int(name.rsplit(":", 1)[1])  # replicas.name is hostname:pid
    return next(d for d in replicas if d.proc is not None and d.proc.pid == pid), float(until)


def audit_at(cluster: PostgresCluster, db: str, event: str) -> float | None:
    """When the first `event` audit row was written, if it was."""
    at = one_value(cluster, db, f"SELECT min(at) FROM audit WHERE event = '{event}'")  # noqa: S608
    return float(at) if at else None


def replicas_on(work: Path, sshd: SshServer, url: str) -> list[Daemon]:
    """Two replicas on the database at `url`, running the node-restart rule against `sshd`."""
    return [
        Daemon.for_config(
            write_config(work / name, RESTART_NODE_RULE, sshd=sshd, store=pg_store(url, LEASE_S))
        )
        for name in ("a", "b")
    ]


def trial(cluster: PostgresCluster, work: Path) -> Trial:
    """Kill the replica running a step; time the survivor's taking it over."""
    db = cluster.database()
    with SshServer.start(work / "sshd") as sshd:
        sshd.install_recorder("systemctl", sleep_s=COMMAND_S)
        replicas = replicas_on(work, sshd, cluster.url(db))
        try:
            for d in replicas:
                d.start(timeout_s=60)
            alert = webhook({"alertname": "NodeDown", "instance": "web1:9100"})
            if (status := replicas[0].post_webhook(alert)) != 200:
                raise RuntimeError(f"the webhook answered {status}")
            wait_for("the command on the host", sshd.restarts, 60)
            dead, until = claimant(cluster, db, replicas)
            killed_at = time.time()
            dead.kill9()
            resumed = wait_for(
                "the survivor's step_outcome_unknown",
                lambda: audit_at(cluster, db, "step_outcome_unknown"),
                until - killed_at + 60,
            )
            if claimant(cluster, db, replicas)[0] is dead:
                raise RuntimeError("the step's outcome was recorded under the dead replica's claim")
            return Trial(resumed - killed_at, resumed - until, sshd.restarts())
        finally:
            for d in replicas:
                d.stop()


def main() -> int:
    with (
        tempfile.TemporaryDirectory() as tmp,
        PostgresCluster.start(durable=True) as cluster,
        ThreadPoolExecutor(TRIALS) as pool,
    ):
        runs = [pool.submit(trial, cluster, Path(tmp) / str(n)) for n in range(TRIALS)]
        trials = [r.result() for r in runs]
    lease_s = LEASE_S
    failover = [t.failover_s for t in trials]
    print(
        f"failover: {TRIALS} trials, two replicas on one PostgreSQL each; the replica running "
        f"a step SIGKILLed while its command ran; lease {lease_s:.1f} s"
    )
    for t in trials:
        print(
            f"  failover {t.failover_s:6.1f} s (resumed "
            f"{t.after_lease_s:+.2f} s after it ended); commands on the host: {t.commands}"
        )
    once = all(t.commands == 1 for t in trials)
    ok = max(failover) <= lease_s + SLACK_S and once
    print(
        f"failover median {statistics.median(failover):.1f} s, max {max(failover):.1f} s "
        f"(target <= lease + {SLACK_S:g} s = {lease_s + SLACK_S:.1f} s); command sent once "
        f"per trial: {'yes' if once else 'NO'}: {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
