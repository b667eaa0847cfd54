"""Offline tools benchmark: `remediator test` and `remediator replay`, in one process.

1. Rule tests: every shipped test file of the five configurations (remediator.yml and
   examples/*/remediator.yml), time per case. Baseline in the same run: the top-level
   config's cases on the store each case had before (a new file migrated per case, its
   spool appended by a writer process), alternated with the current store (current,
   before, current). Target: current <= 0.75 x before.
2. Replay of a generated 10,000-notification recording (one alert each, 6 s apart:
   each alert instance fires, is re-sent 8 times, resolves; over the fleet of
   remediator.yml), time per notification. Baseline in the same run: one write
   transaction of one statement (`SELECT 1`) on the same kind of store (what any store
   round trip of the engine costs at least; an empty one no longer reaches SQLite).
   Target: a notification costs <= 150 such round trips: the engine makes about 9 store
   transactions per notification (82 calls into the SQLite driver's thread before each
   statement became one call, store/sqlitetrips.py).
No subprocess is started: the test suite pins it (tests/test_offline_tools.py).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from remediator import replay, ruletest, simulate
from remediator.config.loader import load_config
from remediator.simstore import SimStore
from remediator.store import SqliteStore

REPO = Path(__file__).resolve().parent.parent
CONFIGS = [REPO / "remediator.yml", *sorted(REPO.glob("examples/*/remediator.yml"))]
NOTIFICATIONS = 10_000
ONE = text("SELECT 1")  # the baseline transaction's one statement
CASE_RATIO = 0.75
ROUND_TRIPS = 150
EPISODE = 10  # notifications per alert instance: it fires, is re-sent 8 times, resolves
START = 1_767_607_200.0
# (alertname, severity, hosts) the shipped rules of remediator.yml act on.
FLEET = [
    ("NodeDown", "critical", ["api1", "api2", "validator1", "bootstrap2"]),
    ("HighMemoryUsage", "critical", ["validator4", "api3"]),
    ("DiskSpaceLow", "warning", ["validator2", "bootstrap2"]),
    ("HighCPUUsage", "warning", ["validator2", "api1"]),
    ("BlockProductionStopped", "critical", ["validator1", "validator3"]),
    ("peer_count_low", "high", ["bootstrap3"]),
    ("HighErrorRate", "critical", ["api2"]),
]


class BeforeStore(SqliteStore):
    """The store each case had before: a new file migrated, a spool writer process."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="remediator-bench-")
        super().__init__(Path(self._tmp.name) / "sim.db", lock=False)

    async def close(self) -> None:
        await super().close()
        self._tmp.cleanup()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def write_recording(path: Path, n: int) -> None:
    """n notifications 6 s apart, cycling over the fleet's alerts: each label set fires
    three times (a new instance, then two re-sends), then resolves."""
    pairs = [(name, sev, host) for name, sev, hosts in FLEET for host in hosts]
    started: dict[tuple[str, str], float] = {}
    with path.open("w") as out:
        for i in range(n):
            name, severity, host = pairs[i % len(pairs)]
            at = START + i * 6.0
            status = "resolved" if (i // len(pairs)) % EPISODE == EPISODE - 1 else "firing"
            key = (name, host)
            begun = started.setdefault(key, at)
            if status == "resolved":
                del started[key]
            labels = {"alertname": name, "severity": severity, "instance": f"{host}:9100"}
            if name == "DiskSpaceLow":
                labels["mountpoint"] = "/"
            alert = {"status": status, "labels": labels, "startsAt": _iso(begun)}
            body = {"version": "4", "status": status, "alerts": [alert]}
            out.write(json.dumps({"received_at": at, "body": body}) + "\n")


async def run_tests(config_path: Path) -> tuple[int, int, float]:
    """(cases, failed, seconds) of every test file next to the config."""
    config = load_config(config_path)
    files = sorted((config_path.parent / "rules" / "tests").glob("*.test.yml"))
    cases = failed = 0
    began = time.perf_counter()
    for file in files:
        results, problems = await ruletest.run_file(file, config)
        cases += len(results)
        failed += len(problems) + sum(not r.ok for r in results)
    return cases, failed, time.perf_counter() - began


async def before_tests(config_path: Path) -> tuple[int, int, float]:
    """run_tests on the store each case had before."""
    simulate.SimStore = BeforeStore  # type: ignore[misc]
    try:
        return await run_tests(config_path)
    finally:
        simulate.SimStore = SimStore  # type: ignore[misc]


async def round_trip_ms() -> float:
    """Median time of a one-statement write transaction on a simulation's store: its
    BEGIN, the statement and its COMMIT (an empty transaction sends SQLite nothing)."""
    store = SimStore()
    await store.open()
    try:
        times = []
        for _ in range(300):
            began = time.perf_counter()
            async with store.write() as tx:
                await tx.conn.execute(ONE)
            times.append(time.perf_counter() - began)
        return statistics.median(times) * 1000
    finally:
        await store.close()


async def run_replay(recording: Path) -> tuple[int, float]:
    config = load_config(CONFIGS[0])
    began = time.perf_counter()
    replayed, skipped = await replay.replay(config, recording, 3600.0, io.StringIO(), sys.stderr)
    assert skipped == 0
    return replayed, time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=NOTIFICATIONS)
    args = parser.parse_args()
    # Quieter than the CLI (errors): the engine's warnings and errors (a quarantine,
    # an escalation) are the cases' decisions, not the benchmark's output.
    logging.basicConfig(level=logging.CRITICAL, format="remediator: %(message)s")
    ok = True
    print("rule tests (`remediator test`), in one process:")
    total_cases = total_s = 0.0
    for config in CONFIGS:
        cases, failed, seconds = asyncio.run(run_tests(config))
        total_cases, total_s = total_cases + cases, total_s + seconds
        name = config.relative_to(REPO)
        print(
            f"  {name}: {cases} cases in {seconds:.1f} s, {seconds / cases * 1000:.0f} ms per case"
            + (f", {failed} FAILED" if failed else "")
        )
        ok = ok and not failed
    print(f"  all: {total_cases:.0f} cases, {total_s / total_cases * 1000:.0f} ms per case")
    top = CONFIGS[0]
    now1 = asyncio.run(run_tests(top))
    before = asyncio.run(before_tests(top))
    now2 = asyncio.run(run_tests(top))
    per_now = (now1[2] + now2[2]) / (now1[0] + now2[0]) * 1000
    per_before = before[2] / before[0] * 1000
    ratio = per_now / per_before
    met = ratio <= CASE_RATIO
    print(
        f"  remediator.yml per case {per_now:.0f} ms, before (a migrated file and a spool "
        f"writer process per case) {per_before:.0f} ms: ratio {ratio:.2f} "
        f"(target <= {CASE_RATIO}): {'met' if met else 'MISSED'}"
    )
    ok = ok and met
    with tempfile.TemporaryDirectory() as tmp:
        recording = Path(tmp) / "recording.jsonl"
        write_recording(recording, args.notifications)
        trip = asyncio.run(round_trip_ms())
        replayed, seconds = asyncio.run(run_replay(recording))
        trip = (trip + asyncio.run(round_trip_ms())) / 2
    per = seconds / replayed * 1000
    trips = per / trip
    met = trips <= ROUND_TRIPS
    print(f"replay (`remediator replay`) of {replayed:,} notifications:")
    print(
        f"  {seconds:.1f} s, {per:.2f} ms per notification = {trips:.1f} store round trips "
        f"of {trip:.3f} ms (target <= {ROUND_TRIPS}): {'met' if met else 'MISSED'}"
    )
    ok = ok and met
    print("offline tools benchmark:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
