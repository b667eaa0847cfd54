"""Ingest benchmark: remediator's webhook vs a bare aiohttp handler, same run, same tools.

Throughput: wrk (closed loop, 1 thread, 32 connections), each request a distinct
notification of 10 alerts. Latency: an open-loop Python sender at a fixed 200
notifications/s. Prints both servers' numbers and their ratio.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

TOKEN = "bench-token"
ALERTS_PER_NOTIFICATION = 10
WRK_SECONDS = 10
RATE = 200
RATE_SECONDS = 10
ROUNDS = 3

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def start_remediator(workdir: Path, port: int, rules: str = PAGE_ONLY) -> subprocess.Popen[bytes]:
    """`remediator serve` on an SQLite store in `workdir` with one rules file."""
    (workdir / "rules").mkdir()
    (workdir / "rules" / "r.yml").write_text(rules)
    (workdir / "remediator.yml").write_text(
        f"server:\n  listen: 127.0.0.1:{port}\n  webhook_auth: {{bearer_token_env: TOKEN}}\n"
        "store: sqlite:///state/remediator.db\nrules: rules/\n"
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


def measure(
    name: str, proc: subprocess.Popen[bytes], url: str, workdir: Path, metrics_url: str | None
) -> dict[str, float]:
    try:
        wait_ready(url, proc)
        asyncio.run(fixed_rate(url, seconds=2))  # warm-up, not measured
        drain(metrics_url)
        p50, p99, errors = asyncio.run(fixed_rate(url, seconds=RATE_SECONDS))
        if errors:
            raise RuntimeError(f"{name}: {errors} non-200 answers at the fixed rate")
        rounds, drained = [], []
        for _ in range(ROUNDS):
            drain(metrics_url)
            rounds.append(run_wrk(url, workdir))
            drained.append(drain(metrics_url))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return {
        "rps": statistics.median(rounds),
        "p50": p50,
        "p99": p99,
        "drain_s": statistics.median(drained),
    }


def main() -> int:
    if shutil.which("wrk") is None:
        print(
            "bench: wrk is missing (Debian package wrk); `make bench` installs it", file=sys.stderr
        )
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        bare = subprocess.Popen([sys.executable, "-m", "bench.bare_server", str(port)])
        base = measure("bare", bare, f"http://127.0.0.1:{port}/webhook/alertmanager", work, None)
        port = free_port()
        (work / "r").mkdir()
        real = start_remediator(work / "r", port)
        rem = measure(
            "remediator",
            real,
            f"http://127.0.0.1:{port}/webhook/alertmanager",
            work,
            f"http://127.0.0.1:{port}/metrics",
        )
    ratio = rem["rps"] / base["rps"]
    print(
        f"ingest: {ALERTS_PER_NOTIFICATION} alerts per notification; throughput: median of "
        f"{ROUNDS} wrk -t1 -c32 {WRK_SECONDS}s rounds; latency: {RATE}/s open loop for "
        f"{RATE_SECONDS}s after a warm-up"
    )
    print(f"{'server':<12}{'notif/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'backlog drain s':>18}")
    for name, r in (("bare", base), ("remediator", rem)):
        print(f"{name:<12}{r['rps']:>10.0f}{r['p50']:>10.2f}{r['p99']:>10.2f}{r['drain_s']:>18.1f}")
    ok = ratio >= 0.5 and rem["p99"] <= 10
    print(
        f"ratio remediator/bare: {ratio:.2f} (target >= 0.5); p99 {rem['p99']:.2f} ms (target <= 10): "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
