"""Alert to action: from the webhook's 200 to the command starting on a real sshd.

`remediator serve` (SQLite store) with an inventory of a dozen hosts, each its own
loopback address of one real sshd (so each its own SSH connection), and one rule whose
one step is an `ssh` action: `sh -c` appending `date +%s.%N` and the alert's `seq`
label (an argv element, shell-quoted by the action) to a file on the host. Alerts at
RATE a second, round robin over the hosts, for SECONDS; each is resolved once its
command has run, so no guard holds the next one on its host. Per alert: the command's
own timestamp minus the moment the sender had the webhook's 200. The first alert to
each host opens that host's connection: reported apart.

The floor, in the same run (before and after the daemon's round, so the machine's drift
falls on both): the same command line through one held asyncssh connection at the same
rate, from the moment before `conn.run` to the command's own timestamp. Target: the
daemon's share, its p50 over the floor's p50 and its p99 over the floor's p99.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncssh
from support.sshd import SshServer, free_port

from remediator.actions.sshpool import command_line

TOKEN = "bench-token"
HOSTS = 12
RATE = 8.0  # alerts (and floor commands) a second
SECONDS = 20  # the daemon's round
FLOOR_SECONDS = 10  # each of the floor's two rounds, before and after the daemon's
RESOLVE_AFTER_S = 0.3  # after its command started: the step has finished by then
TARGET_P50_MS = 20.0
TARGET_P99_MS = 100.0
STARTS = "2026-11-30T04:00:00Z"
# On the host: when the command started, and which alert (or floor run) it is for.
STAMP = 'printf "%s %s\\n" "$(date +%s.%N)" "$1" >> "$2"'


def argv(stamps: Path, seq: str) -> list[str]:
    """The step's argv: `seq` is the alert's label, `$1` to the script (never its text)."""
    return ["sh", "-c", STAMP, "sh", seq, str(stamps)]


def rules_yaml(stamps: Path) -> str:
    """One rule, one `ssh` step; guards that never hold a step back in this benchmark."""
    step_argv = json.dumps(argv(stamps, "{{ labels.seq }}"))
    return (
        "rules:\n"
        "  - name: alert-to-action\n"
        "    match: [alertname = LatencyBench]\n"
        '    target: "{{ labels.host }}"\n'
        "    cooldown: 0s\n"
        "    steps:\n"
        "      - action: ssh\n"
        f"        params: {{argv: {step_argv}}}\n"
        "        verify: 5m\n"
    )


def addresses() -> list[str]:
    """One loopback address per host: 127.0.0.1 to 127.0.0.12."""
    return [f"127.0.0.{n}" for n in range(1, HOSTS + 1)]


def host_name(n: int) -> str:
    return f"lat{n:02d}"


def write_config(work: Path, sshd: SshServer, port: int, stamps: Path) -> Path:
    """remediator.yml: SQLite store, the dozen hosts, no Slack or email."""
    (work / "rules").mkdir(parents=True)
    (work / "rules" / "r.yml").write_text(rules_yaml(stamps))
    hosts = {
        host_name(n): {"address": address, "port": sshd.port}
        for n, address in enumerate(addresses())
    }
    config = work / "remediator.yml"
    config.write_text(
        f"server:\n  listen: 127.0.0.1:{port}\n  webhook_auth: {{bearer_token_env: TOKEN}}\n"
        "store: sqlite:///state/remediator.db\nrules: rules/\n"
        f"ssh:\n  username: root\n  client_keys: ['{sshd.client_key}']\n"
        f"  known_hosts: '{sshd.known_hosts}'\n  connect_timeout: 5s\n  command_timeout: 20s\n"
        f"inventory:\n  hosts: {json.dumps(hosts)}\n"
    )
    return config


def start_daemon(config: Path) -> subprocess.Popen[bytes]:
    log = (config.parent / "daemon.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "remediator", "serve", "-c", str(config), "--log-level", "WARNING"],
        env={**os.environ, "TOKEN": TOKEN},
        cwd=config.parent,
        stdout=log,
        stderr=log,
    )


class Stamps:
    """Follows the file the commands append to: `seq` -> the command's own start time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: dict[str, float] = {}
        self._waiting: dict[str, asyncio.Future[float]] = {}
        self._offset = 0
        self._rest = b""

    async def follow(self) -> None:
        while True:
            self._read()
            await asyncio.sleep(0.002)

    def _read(self) -> None:
        with contextlib.suppress(FileNotFoundError), self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
            self._offset += len(data)
            *lines, self._rest = (self._rest + data).split(b"\n")
            for line in lines:
                at, seq = line.decode().split(" ", 1)
                self.seen[seq] = float(at)
                fut = self._waiting.pop(seq, None)
                if fut is not None and not fut.done():
                    fut.set_result(float(at))

    async def wait(self, seq: str, timeout_s: float = 30.0) -> float:
        if seq in self.seen:
            return self.seen[seq]
        fut = self._waiting.setdefault(seq, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(fut, timeout_s)


async def at_rate(count: int, one: Callable[[int], Awaitable[None]]) -> None:
    """Start `one(i)` for i in range(count), RATE a second (open loop); wait for all."""
    tasks = []
    start = time.monotonic()
    for i in range(count):
        delay = start + i / RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)


@dataclass
class Run:
    """What one run measured, in seconds."""

    floor: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    cold: list[float] = field(default_factory=list)
    acked: dict[int, float] = field(default_factory=dict)


async def floor_round(sshd: SshServer, stamps: Stamps, run: Run, tag: str) -> None:
    """The same command line through one held connection, at the same rate."""
    async with asyncssh.connect(
        "127.0.0.1",
        port=sshd.port,
        username="root",
        client_keys=[str(sshd.client_key)],
        known_hosts=str(sshd.known_hosts),
        agent_path=None,
        config=[],
    ) as conn:
        await conn.run("true", check=True)  # warm, not measured

        async def one(i: int) -> None:
            seq = f"floor-{tag}-{i}"
            command = command_line(argv(stamps.path, seq))
            sent = time.time()
            await conn.run(command, check=True)
            run.floor.append(await stamps.wait(seq) - sent)

        await at_rate(int(FLOOR_SECONDS * RATE), one)


def alert(seq: int, status: str) -> bytes:
    host = host_name(seq % HOSTS)
    labels = {"alertname": "LatencyBench", "host": host, "seq": f"a{seq}"}
    body = {
        "version": "4",
        "status": status,
        "alerts": [
            {
                "status": status,
                "fingerprint": f"{seq:016x}",
                "labels": labels,
                "annotations": {},
                "startsAt": STARTS,
            }
        ],
    }
    return json.dumps(body).encode()


async def daemon_round(url: str, stamps: Stamps, run: Run) -> None:
    """Alerts through the webhook; each resolved once its command has run."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:

        async def post(body: bytes) -> float:
            async with session.post(url, data=body, headers=headers) as r:
                await r.read()
                acked = time.time()
                if r.status != 200:
                    raise RuntimeError(f"webhook answered {r.status}")
            return acked

        async def one(i: int) -> None:
            acked = run.acked[i] = await post(alert(i, "firing"))
            started = await stamps.wait(f"a{i}")
            (run.cold if i < HOSTS else run.warm).append(started - acked)
            await asyncio.sleep(RESOLVE_AFTER_S)
            await post(alert(i, "resolved"))

        await at_rate(int(SECONDS * RATE), one)


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    """Until the daemon answers /readyz."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"remediator exited {proc.returncode}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url + "/readyz", timeout=2) as r,  # noqa: S310 - loopback
        ):
            if r.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("remediator did not become ready")


def audit_check(db: Path, count: int) -> list[str]:
    """Every alert's step ran (succeeded), and no guard held or refused one."""
    problems = []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        ran = conn.execute(
            "SELECT count(*) FROM steps WHERE state = 'succeeded' AND executing_at IS NOT NULL"
        ).fetchone()[0]
        guarded = conn.execute(
            "SELECT event, count(*) FROM audit WHERE event IN ('guard_held', 'guard_refused') "
            "GROUP BY event"
        ).fetchall()
    if ran != count:
        problems.append(f"{ran} of {count} steps succeeded")
    problems += [f"{n} {event} audit rows" for event, n in guarded]
    return problems


def breakdown(db: Path, run: Run) -> str:
    """Where the daemon's time went, from its audit (median ms after the webhook's 200)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT i.labels, "
            "(SELECT min(at) FROM audit a WHERE a.incident_id = i.id AND a.event = 'matched'), "
            "(SELECT min(at) FROM audit a WHERE a.incident_id = i.id "
            "AND a.event = 'step_dispatching'), s.executing_at "
            "FROM incidents i JOIN steps s ON s.incident_id = i.id"
        ).fetchall()
    parts: dict[str, list[float]] = {"matched": [], "dispatching": [], "executing": []}
    for labels, matched, dispatching, executing in rows:
        seq = int(json.loads(labels)["seq"][1:])
        if seq < HOSTS or seq not in run.acked or None in (matched, dispatching, executing):
            continue
        acked = run.acked[seq]
        parts["matched"].append(matched - acked)
        parts["dispatching"].append(dispatching - acked)
        parts["executing"].append(executing - acked)
    return ", ".join(f"{name} {statistics.median(v) * 1000:+.1f}" for name, v in parts.items() if v)


def quantiles(values: list[float]) -> tuple[float, float]:
    """p50 and p99 in ms."""
    q = statistics.quantiles([v * 1000 for v in values], n=100, method="inclusive")
    return q[49], q[98]


def report(run: Run, audit: list[str], where: str) -> bool:
    """Print each figure beside its target; True when all are met."""
    floor50, floor99 = quantiles(run.floor)
    warm50, warm99 = quantiles(run.warm)
    cold = sorted(v * 1000 for v in run.cold)
    print(
        f"alert to action: {HOSTS} hosts on one loopback sshd, {RATE:g} alerts/s for "
        f"{SECONDS} s; floor: one held asyncssh connection, {RATE:g}/s for 2 x {FLOOR_SECONDS} s"
    )
    print(f"{'':<28}{'n':>5}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, values in (("floor (held connection)", run.floor), ("daemon, warm", run.warm)):
        p50, p99 = quantiles(values)
        print(f"{name:<28}{len(values):>5}{p50:>10.1f}{p99:>10.1f}{max(values) * 1000:>10.1f}")
    cold50 = statistics.median(cold)
    print(
        f"{'daemon, cold (1st per host)':<28}{len(cold):>5}{cold50:>10.1f}{'':>10}{cold[-1]:>10.1f}"
    )
    print(f"daemon, where the time goes (median ms after the 200): {where}")
    share50, share99 = warm50 - floor50, warm99 - floor99
    ok50, ok99 = share50 <= TARGET_P50_MS, share99 <= TARGET_P99_MS
    print(
        f"alert to action: daemon share p50 {share50:.1f} ms over the floor "
        f"(target <= {TARGET_P50_MS:g} ms): {'met' if ok50 else 'MISSED'}"
    )
    print(
        f"alert to action: daemon share p99 {share99:.1f} ms over the floor's p99 "
        f"(target <= {TARGET_P99_MS:g} ms): {'met' if ok99 else 'MISSED'}"
    )
    print(
        f"alert to action: cold connection p50 {cold50:.1f} ms, max {cold[-1]:.1f} ms (reported apart)"
    )
    print(f"audit: {'every step ran, none held' if not audit else '; '.join(audit)}")
    return ok50 and ok99 and not audit


async def measure(url: str, sshd: SshServer, stamps: Stamps) -> Run:
    run = Run()
    follower = asyncio.create_task(stamps.follow())
    try:
        await floor_round(sshd, stamps, run, "before")
        await daemon_round(url, stamps, run)
        await floor_round(sshd, stamps, run, "after")
    finally:
        follower.cancel()
    return run


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sshd = SshServer.start(work / "sshd", also_listen=tuple(addresses()[1:]))
        try:
            stamps = Stamps(work / "sshd" / "stamps.log")
            port = free_port()
            config = write_config(work / "daemon", sshd, port, stamps.path)
            proc = start_daemon(config)
            try:
                base = f"http://127.0.0.1:{port}"
                wait_ready(base, proc)
                run = asyncio.run(measure(base + "/webhook/alertmanager", sshd, stamps))
                time.sleep(1)  # the last resolves applied
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
            db = config.parent / "state" / "remediator.db"
            ok = report(run, audit_check(db, int(SECONDS * RATE)), breakdown(db, run))
        finally:
            sshd.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
