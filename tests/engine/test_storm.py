"""An alert storm on a validator group: guards hold, nothing is lost, everything is audited."""

from __future__ import annotations

import itertools
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from support import storeview
from support.engine_harness import EngineHarness, spooled
from support.sshd import SshServer

RULE = """\
rules:
  - name: validator-restart
    match: ['alertname =~ "Storm.*"']
    target: "{{ labels.instance }}"
    steps:
      - action: ssh
        params: {argv: [probe-stub, "{{ labels.instance }}"]}
        verify: 5m
    escalate: critical
    cooldown: 10m
    hold_timeout: 20m
"""
POLICIES = """\
safety:
  max_actions_per_minute: 10
  groups:
    validators: {max_unavailable: 1}
"""
VALIDATORS = ("v1", "v2", "v3", "v4")
ALERTS = 1000
PER_NOTIFICATION = 10


def storm_bodies() -> list[str]:
    """1,000 distinct alerts over the four validators, 10 to a notification."""
    bodies = []
    for first in range(0, ALERTS, PER_NOTIFICATION):
        alerts = [
            {
                "status": "firing",
                "labels": {
                    "alertname": f"Storm{i % 25}",
                    "instance": VALIDATORS[i % 4],
                    "n": str(i),
                },
                "startsAt": "2026-11-23T09:00:00Z",
            }
            for i in range(first, first + PER_NOTIFICATION)
        ]
        bodies.append(json.dumps({"version": "4", "status": "firing", "alerts": alerts}))
    return bodies


def rows(db: storeview.Source, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r.values()) for r in storeview.query(db, sql)]


def remediation_windows(db: storeview.Source) -> list[tuple[float, float, str]]:
    """(start of step, end of verify window, target) of every step that ran."""
    events = storeview.query(
        db,
        "SELECT a.incident_id, a.at, a.event, a.detail, i.target FROM audit a"
        " JOIN incidents i ON i.id = a.incident_id"
        " WHERE a.event IN ('step_dispatching', 'verifying') ORDER BY a.id",
    )
    starts: dict[int, list[float]] = defaultdict(list)
    ends: dict[int, list[float]] = defaultdict(list)
    targets = {e["incident_id"]: e["target"] for e in events}
    for e in events:
        if e["event"] == "step_dispatching":
            starts[e["incident_id"]].append(e["at"])
        else:
            ends[e["incident_id"]].append(json.loads(e["detail"])["until"])
    out = []
    for incident, target in targets.items():
        out.extend((s, e, target) for s, e in zip(starts[incident], ends[incident], strict=True))
    return sorted(out)


async def test_storm_on_a_validator_group(tmp_path: Path, sshd: SshServer, store_url: str) -> None:
    """1,000 alerts in seconds: one validator at a time (and none after one that stays
    down), <= 10 actions a minute, all audited."""
    sshd.install_recorder("probe-stub")
    hosts = {
        n: {"address": "127.0.0.1", "port": sshd.port, "groups": ["validators"]} for n in VALIDATORS
    }
    h = await EngineHarness.start(
        tmp_path, RULE, sshd, hosts=hosts, policies=POLICIES, store_url=store_url
    )
    try:
        started = time.monotonic()
        for body in storm_bodies():  # as the receiver spools them
            await h.store.append_inbox([(h.clock.now(), spooled(body))])
        assert time.monotonic() - started < 5
        await h.engine.tick()
        for _ in range(2 * 3600 // 30):  # two hours of engine time
            await h.advance(30)
    finally:
        await h.close()

    db = h.db
    assert rows(db, "SELECT count(*) FROM alerts") == [(ALERTS,)]
    assert rows(db, "SELECT count(*) FROM incidents") == [(ALERTS,)]

    windows = remediation_windows(db)
    # Nothing resolves: v1, restarted first, stays exhausted and firing, so it keeps the
    # group's one slot; the other validators' steps wait, then page past hold_timeout.
    assert {target for _, _, target in windows} == {"v1"}
    for (_, end, target), (start, _, nxt) in itertools.pairwise(windows):
        assert start >= end, f"{target} and {nxt} were under remediation at the same time"

    starts = sorted(r[0] for r in rows(db, "SELECT started_at FROM steps"))
    for first, eleventh in zip(starts, starts[10:], strict=False):
        assert eleventh - first >= 60, "more than 10 actions within a minute"
    assert len(sshd.calls("probe-stub")) == len(starts)

    never_ran = rows(
        db,
        "SELECT id FROM incidents WHERE id NOT IN (SELECT incident_id FROM steps)",
    )
    assert len(never_ran) == ALERTS - len(starts)
    audited = {
        r[0]
        for r in rows(
            db, "SELECT incident_id FROM audit WHERE event IN ('guard_held', 'guard_refused')"
        )
    }
    assert {r[0] for r in never_ran} <= audited, "a held-back step without an audit row"
    states = dict(rows(db, "SELECT state, count(*) FROM incidents GROUP BY state"))
    assert set(states) <= {"exhausted", "escalating", "verifying"}, states
