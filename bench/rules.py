"""Rule matching and memory benchmark.

1. Time to match one alert against 10, 1,000 and 10,000 rules (in-process, best of 5
   rounds), and the ratio 10,000 / 10 (target <= 3: matching does not scan every rule).
2. RSS of the real daemon, its spool writer process included, after a 10,000-alert
   storm through its webhook, once the engine has applied all of it (target < 150 MB).
"""

from __future__ import annotations

import json
import random
import signal
import tempfile
import time
import timeit
import urllib.request
from pathlib import Path

from support.procs import children

from bench.ingest import TOKEN, backlog, drain, free_port, start_remediator, wait_ready
from remediator.config.models import RuleSpec
from remediator.rules import RuleSet

SIZES = (10, 1_000, 10_000)
ALERTS = 10_000
PER_NOTIFICATION = 10


def make_rules(n: int) -> list[RuleSpec]:
    """n rules as operators write them, plus a few without an equality matcher."""
    rules = [
        RuleSpec.model_validate(
            {
                "name": f"rule-{i}",
                "match": [f"alertname = Alert{i}", 'severity =~ "critical|high"'],
            }
        )
        for i in range(n)
    ]
    for i in range(3):
        rules.insert(
            i * (n // 3),
            RuleSpec.model_validate(
                {"name": f"catch-{i}", "match": [f'job =~ "batch{i}-.*"', "severity != low"]}
            ),
        )
    return rules


def per_alert_us(n: int) -> float:
    """Best-of-5 time per alert matched against n rules, in microseconds."""
    ruleset = RuleSet(make_rules(n))
    rng = random.Random(1)
    alerts = [
        {
            "alertname": f"Alert{rng.randrange(n * 2)}",  # half match a rule, half none
            "severity": rng.choice(["critical", "high", "low"]),
            "job": rng.choice(["node", "api", "batch1-x"]),
            "instance": f"h{rng.randrange(100)}:9100",
        }
        for _ in range(2_000)
    ]

    def run() -> None:
        for labels in alerts:
            ruleset.match(labels)

    return min(timeit.repeat(run, number=5, repeat=5)) / (5 * len(alerts)) * 1e6


def rss_mb(pid: int) -> float:
    """RSS of `pid` and its child processes (the spool writer), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024 + sum(rss_mb(c) for c in children(pid))
    raise RuntimeError("no VmRSS")


def storm_rss() -> tuple[float, float, float]:
    """(RSS before, RSS after a 10,000-alert storm, seconds to apply it)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        proc = start_remediator(
            work,
            port,
            "rules:\n  - name: storm\n    match: [alertname = Storm0]\n    dry_run: true\n"
            "    steps:\n      - action: notify\n        params: {message: '{{ labels.n }}'}\n",
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(f"{url}/webhook/alertmanager", proc)
            before = rss_mb(proc.pid)
            started = time.monotonic()
            for first in range(0, ALERTS, PER_NOTIFICATION):
                post(f"{url}/webhook/alertmanager", first)
            drain(f"{url}/metrics")
            elapsed = time.monotonic() - started
            time.sleep(2)
            assert backlog(f"{url}/metrics") == 0
            return before, rss_mb(proc.pid), elapsed
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def post(url: str, first: int) -> None:
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": f"Storm{i % 25}", "instance": f"h{i % 400}:9100", "n": str(i)},
            "annotations": {"summary": "storm"},
            "startsAt": "2026-11-23T09:00:00Z",
        }
        for i in range(first, first + PER_NOTIFICATION)
    ]
    body = json.dumps({"version": "4", "status": "firing", "alerts": alerts}).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    req = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310 - loopback
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback
        assert r.status == 200


def main() -> int:
    times = {n: per_alert_us(n) for n in SIZES}
    print("rule matching: time per alert (best of 5 rounds of 5 x 2,000 alerts)")
    for n, us in times.items():
        print(f"  {n:>6} rules: {us:8.2f} us")
    ratio = times[10_000] / times[10]
    print(f"  ratio 10,000 / 10 rules: {ratio:.2f} (target <= 3)")
    before, after, elapsed = storm_rss()
    print(
        f"memory: RSS {before:.0f} MB idle, {after:.0f} MB after a {ALERTS:,}-alert storm "
        f"(applied in {elapsed:.1f} s) (target < 150 MB)"
    )
    ok = ratio <= 3 and after < 150
    print("rules benchmark:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
