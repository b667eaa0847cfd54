"""Ingest benchmark: remediator's webhook vs a bare aiohttp handler, same run, same tools.

Four servers run for the whole benchmark: the bare handler, the durable baseline (bare
plus remediator's own group commit into the SQLite spool, nothing else: see
durable_server.py), remediator on its SQLite store and remediator on a local PostgreSQL
store (a throw-away cluster with fsync and synchronous commits on, as PostgreSQL ships).
Throughput: wrk (closed loop, 1 thread, 32 connections), each request a distinct
notification of 10 alerts, in rounds that alternate between the servers. Latency: an
open-loop Python sender at a fixed 200 notifications/s. Prints each store's ratio to bare
and its p99 beside their targets, and the durable baseline's ratio beside them: what the
durable write alone leaves of bare's rate on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from support.postgres import PostgresCluster
from support.sshd import free_port

TOKEN = "bench-token"
ALERTS_PER_NOTIFICATION = 10
WRK_SECONDS = 10
RATE = 200
RATE_SECONDS = 10
ROUNDS = 3
MAX_DRAIN_S = 5.0  # what a round acknowledged is applied within this after it (issue 16)

WRK_SCRIPT = """
counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
request = function()
  counter = counter + 1
  local alerts = {}
  for i = 1, %(n)d do
    alerts[i] = string.format('{"status":"firing","fingerprint":"%%08x%%08x","labels":{"alertname":"Bench","instance":"h%%d-%%d:9100","job":"node"},"annotations":{"summary":"bench"},"startsAt":"2026-11-23T09:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus/graph"}', counter, i, counter, i)
  end
  local body = '{"version":"4","status":"firing","receiver":"remediator","groupKey":"{}:{alertname=\\\\"Bench\\\\"}","alerts":[' .. table.concat(alerts, ",") .. ']}'
  return wrk.format(nil, nil, nil, body)
end
"""


def notification(seq: int) -> bytes:
    alerts = [
        {
            "status": "firing",
            "fingerprint": f"{seq & 0xFFFFFFFF:08x}{i:08x}",
            "labels": {"alertname": "Bench", "instance": f"r{seq}-{i}:9100", "job": "node"},
            "annotations": {"summary": "bench"},
            "startsAt": "2026-11-23T09:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
        }
        for i in range(ALERTS_PER_NOTIFICATION)
    ]
    return json.dumps({"version": "4", "status": "firing", "alerts": alerts}).encode()


_SEQ = itertools.count(1_000_000)


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}")
        try:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            req = urllib.request.Request(url, data=notification(-1), headers=headers)  # noqa: S310
            with urllib.request.urlopen(req, timeout=2):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not become ready")


PAGE_ONLY = (
    "rules:\n  - name: page-only\n    match: [alertname = NeverSent]\n"
    "    steps:\n      - action: notify\n        params: {message: x}\n"
)


SQLITE = "sqlite:///state/remediator.db"
STORES = ("sqlite", "postgresql")


def start_remediator(
    workdir: Path, port: int, rules: str = PAGE_ONLY, store: str = SQLITE
) -> subprocess.Popen[bytes]:
    """`remediator serve` on `store` (SQLite in `workdir` unless given) with one rules file."""
    workdir.mkdir(exist_ok=True)
    (workdir / "rules").mkdir()
    (workdir / "rules" / "r.yml").write_text(rules)
    (workdir / "remediator.yml").write_text(
        f"server:\n  listen: 127.0.0.1:{port}\n  webhook_auth: {{bearer_token_env: TOKEN}}\n"
        f"store: {store}\nrules: rules/\n"
    )
    env = {**os.environ, "TOKEN": TOKEN}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "remediator",
            "serve",
            "-c",
            str(workdir / "remediator.yml"),
            "--log-level",
            "WARNING",
        ],
        env=env,
    )


def run_wrk(url: str, workdir: Path) -> float:
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT % {"token": TOKEN, "n": ALERTS_PER_NOTIFICATION})
    out = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{WRK_SECONDS}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"wrk saw {non2xx.group(1)} errors:\n{out}")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert m, out
    return float(m.group(1))


async def fixed_rate(url: str, seconds: int) -> tuple[float, float, int]:
    """p50 and p99 latency (ms) at RATE notifications/s, open loop."""
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:

        async def one(seq: int) -> None:
            nonlocal errors
            body = notification(next(_SEQ))
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    errors += 1
            latencies.append((time.perf_counter() - t0) * 1000)

        tasks = []
        start = time.perf_counter()
        for seq in range(RATE * seconds):
            delay = start + seq / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(seq)))
        await asyncio.gather(*tasks)
    q = statistics.quantiles(latencies, n=100)
    return q[49], q[98], errors


def backlog(metrics_url: str | None) -> float:
    """remediator's spool backlog (0 for the bare server)."""
    if metrics_url is None:
        return 0.0
    with urllib.request.urlopen(metrics_url, timeout=5) as r:  # noqa: S310 - loopback
        text = r.read().decode()
    m = re.search(r"^remediator_inbox_pending (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def drain(metrics_url: str | None) -> float:
    """Wait until the engine has applied everything acknowledged; returns seconds waited."""
    start = time.monotonic()
    while backlog(metrics_url) > 0:
        if time.monotonic() - start > 300:
            raise RuntimeError("backlog did not drain in 300 s")
        time.sleep(0.2)
    return time.monotonic() - start


@dataclass
class Server:
    """One server under test and what was measured of it."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    metrics_url: str | None  # where the spool backlog is read (None: nothing to drain)
    min_ratio: float = 0.0  # targets: throughput relative to bare, p99 at the fixed rate
    max_p99_ms: float = 0.0
    settle: Callable[[], None] = lambda: None  # after its backlog: finish background writes
    rounds: list[float] = field(default_factory=list)
    drained: list[float] = field(default_factory=list)
    p50: float = 0.0
    p99: float = 0.0


def drain_all(servers: list[Server]) -> None:
    """No server still works off an earlier round while another is measured."""
    for server in servers:
        drain(server.metrics_url)
        server.settle()


def settle_postgres(cluster: PostgresCluster, db: str) -> Callable[[], None]:
    """VACUUM ANALYZE and CHECKPOINT `db`: the work PostgreSQL's autovacuum and checkpointer
    would do in the background after a round (vacuuming the inbox's deleted rows, the
    statistics of a grown alerts table, its dirty pages) is done before the next round
    instead, so it does not fall on another server's measurement."""

    def settle() -> None:
        cluster.psql(db, "VACUUM ANALYZE")
        cluster.psql(db, "CHECKPOINT")

    return settle


def measure(servers: list[Server], workdir: Path) -> None:
    """Latency at the fixed rate, then throughput rounds alternating between the servers.

    Alternating (A B, B A, A B...) spreads the machine's drift over both servers, so
    the ratio compares like with like.
    """
    for server in servers:
        wait_ready(server.url, server.proc)
        asyncio.run(fixed_rate(server.url, seconds=2))  # warm-up, not measured
    for server in servers:
        drain_all(servers)
        server.p50, server.p99, errors = asyncio.run(fixed_rate(server.url, RATE_SECONDS))
        if errors:
            raise RuntimeError(f"{server.name}: {errors} non-200 answers at the fixed rate")
    for i in range(ROUNDS):
        for server in servers if i % 2 == 0 else servers[::-1]:
            drain_all(servers)
            server.rounds.append(run_wrk(server.url, workdir))
            server.drained.append(drain(server.metrics_url))


def stop(servers: list[Server]) -> None:
    """SIGTERM each server and wait for it."""
    for server in servers:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
    for server in servers:
        server.proc.wait(60)


def remediator(name: str, work: Path, store: str, min_ratio: float, max_p99_ms: float) -> Server:
    """A remediator server on `store`, started in `work`/`name`, with its targets."""
    port = free_port()
    return Server(
        name,
        start_remediator(work / name, port, store=store),
        f"http://127.0.0.1:{port}/webhook/alertmanager",
        f"http://127.0.0.1:{port}/metrics",
        min_ratio,
        max_p99_ms,
    )


def baseline(name: str) -> Server:
    """bench/`name`_server.py on a free port: nothing to drain, no target of its own."""
    port = free_port()
    return Server(
        name,
        subprocess.Popen([sys.executable, "-m", f"bench.{name}_server", str(port)]),
        f"http://127.0.0.1:{port}/webhook/alertmanager",
        None,
    )


def run(work: Path, cluster: PostgresCluster, stores: list[str]) -> list[Server]:
    """Start the baselines and remediator on each of `stores`; measure them all; stop them."""
    servers = [baseline("bare"), baseline("durable")]
    try:
        if "sqlite" in stores:
            servers.append(remediator("sqlite", work, SQLITE, 0.7, 10))
        if "postgresql" in stores:
            db = cluster.database()
            servers.append(remediator("postgresql", work, cluster.url(db), 0.7, 10))
            servers[-1].settle = settle_postgres(cluster, db)
        measure(servers, work)
    finally:
        stop(servers)
    return servers


def report(servers: list[Server]) -> bool:
    """Print the table and each store's figures beside their targets; True if all met."""
    print(
        f"ingest: {ALERTS_PER_NOTIFICATION} alerts per notification; throughput: median of "
        f"{ROUNDS} wrk -t1 -c32 {WRK_SECONDS}s rounds, alternating between the servers; "
        f"latency: {RATE}/s open loop for {RATE_SECONDS}s after a warm-up"
    )
    print(f"{'server':<12}{'notif/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'backlog drain s':>18}")
    for r in servers:
        notif = statistics.median(r.rounds)
        drain_s = statistics.median(r.drained)
        print(f"{r.name:<12}{notif:>10.0f}{r.p50:>10.2f}{r.p99:>10.2f}{drain_s:>18.1f}")
    bare, durable, *stores = servers
    ceiling = statistics.median(durable.rounds) / statistics.median(bare.rounds)
    rounds = ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(durable.rounds, bare.rounds, strict=True))
    print(f"rounds durable/bare notif/s: {rounds}")
    print(
        f"durable (bare plus remediator's durable write, nothing else): ratio to bare "
        f"{ceiling:.2f}, reported: what the write alone leaves of bare's rate on this machine"
    )
    ok = True
    for r in stores:
        rounds = ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(r.rounds, bare.rounds, strict=True))
        print(f"rounds {r.name}/bare notif/s: {rounds}")
        ratio = statistics.median(r.rounds) / statistics.median(bare.rounds)
        met = ratio >= r.min_ratio and r.p99 <= r.max_p99_ms
        to_durable = statistics.median(r.rounds) / statistics.median(durable.rounds)
        print(
            f"{r.name}: ratio to bare {ratio:.2f} (target >= {r.min_ratio}; to durable "
            f"{to_durable:.2f}); p99 at {RATE}/s "
            f"{r.p99:.2f} ms (target <= {r.max_p99_ms:g} ms): {'PASS' if met else 'FAIL'}"
        )
        drain_s = statistics.median(r.drained)
        drained = drain_s <= MAX_DRAIN_S
        print(
            f"{r.name}: backlog drain after a round {drain_s:.1f} s (rounds "
            f"{', '.join(f'{d:.1f}' for d in r.drained)}; target <= {MAX_DRAIN_S:g} s): "
            f"{'met' if drained else 'missed'}"
        )
        ok = ok and met and drained
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument(
        "--store",
        action="append",
        choices=STORES,
        help="measure remediator on this store only (repeatable; default: both), beside the baselines",
    )
    stores = parser.parse_args().store or list(STORES)
    if shutil.which("wrk") is None:
        print(
            "bench: wrk is missing (Debian package wrk); `make bench` installs it", file=sys.stderr
        )
        return 2
    with tempfile.TemporaryDirectory() as tmp, PostgresCluster.start(durable=True) as cluster:
        servers = run(Path(tmp), cluster, stores)
    return 0 if report(servers) else 1


if __name__ == "__main__":
    raise SystemExit(main())
