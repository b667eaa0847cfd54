"""Intake applies a backlog in takes: few transactions and spool deletes for many
notifications, each label set matched once, unmatched alerts kept out of the store, and a
poison notification or alert within a big take failing alone."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from support import storeview
from support.daemon import write_config
from support.engine_harness import EngineHarness, notification, spooled

from remediator.config import load_config
from remediator.config.models import RuleSpec
from remediator.engine import intake
from remediator.store.base import Tx

PAGE = """\
rules:
  - name: page
    match: [alertname = NodeDown]
    steps: []
"""
ADDED = (
    PAGE
    + """\
  - name: page-disk
    match: [alertname = DiskFull]
    steps: []
"""
)


class Counted:
    """Counts the store's write transactions and spool deletes."""

    def __init__(self, h: EngineHarness, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writes = 0
        self.deletes = 0
        store = h.store
        write, delete = store.write, store.delete_inbox

        def counted_write() -> AbstractAsyncContextManager[Tx]:
            self.writes += 1  # consume_inbox's transaction is a write() too, on both stores
            return write()

        async def counted_delete(ids: list[int]) -> None:
            self.deletes += 1
            await delete(ids)

        monkeypatch.setattr(store, "write", counted_write)
        monkeypatch.setattr(store, "delete_inbox", counted_delete)


@pytest.fixture
async def h(tmp_path: Path, store_url: str) -> AsyncIterator[EngineHarness]:
    harness = await EngineHarness.start(tmp_path, PAGE, None, store_url=store_url)
    yield harness
    await harness.close()


def down(n: int, **labels: str) -> dict[str, str]:
    return {"alertname": "NodeDown", "instance": f"h{n}:9100", **labels}


async def test_a_backlog_is_applied_in_far_fewer_transactions_than_notifications(
    h: EngineHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 notifications, an incident each: applied in one transaction per APPLY alerts
    and taken out of the spool in one delete, not a transaction and a delete per 20."""
    monkeypatch.setattr(intake, "BUDGET_S", 3600.0)  # however slow the machine: one take
    await h.store.append_inbox([(1.0, spooled(notification(down(n)))) for n in range(300)])
    counted = Counted(h, monkeypatch)
    assert await h.engine.intake.drain() == 300
    assert counted.writes == math.ceil(300 / intake.APPLY)
    assert counted.deletes <= 1  # SQLite: one delete of the spool; PostgreSQL: in the commit
    assert len(h.incidents()) == 300
    assert await h.store.inbox_pending() == 0


async def test_alerts_no_rule_takes_cost_no_transaction_and_leave_no_row(
    h: EngineHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood of firing alerts no rule takes (1,000 in 100 notifications) is read and
    dropped: no write transaction, one spool delete, no alert row, nothing pending."""
    bodies = [_with_alerts(n, 10) for n in range(100)]
    await h.store.append_inbox([(1.0, spooled(body)) for body in bodies])
    counted = Counted(h, monkeypatch)
    assert await h.engine.intake.drain() == 100
    assert counted.writes == 0
    assert counted.deletes == 1
    assert await h.store.inbox_pending() == 0
    assert storeview.query(h.db, "SELECT count(*) AS n FROM alerts") == [{"n": 0}]


def _with_alerts(n: int, count: int) -> str:
    """A notification of `count` distinct firing `Noise` alerts."""
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": "Noise", "n": f"{n}-{i}"},
            "annotations": {},
            "startsAt": "2026-11-23T09:00:00Z",
        }
        for i in range(count)
    ]
    return json.dumps({"version": "4", "status": "firing", "alerts": alerts})


async def test_a_rule_added_by_a_reload_takes_an_unmatched_alert_at_its_next_notification(
    h: EngineHarness, tmp_path: Path
) -> None:
    """An alert no rule took was not kept, so once a reload adds a rule for it, its next
    notification (Alertmanager's repeat) opens the rule's incident; before, the stored
    status made that re-send a duplicate and the new rule never saw the alert."""
    disk = {"alertname": "DiskFull", "instance": "h1:9100"}
    await h.fire(disk)
    assert h.incidents() == []
    h.ctx.swap_config(load_config(write_config(tmp_path / "added", ADDED)))
    await h.fire(disk)
    assert [i["rule"] for i in h.incidents()] == ["page-disk"]


async def test_identical_label_sets_are_matched_once_per_take(
    h: EngineHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flapping alert (one label set, a new startsAt each time) sent 40 times, beside
    40 distinct alerts: the rules are matched once per distinct label set, 41 times."""
    matched: list[dict[str, str]] = []
    rules = h.ctx.rules
    match = rules.match

    def counted(labels: dict[str, str]) -> list[RuleSpec]:
        matched.append(labels)
        return match(labels)

    monkeypatch.setattr(rules, "match", counted)
    rows = []
    for n in range(40):
        starts = f"2026-11-23T09:{n:02d}:00Z"
        rows.append((1.0, spooled(notification(down(0), starts_at=starts))))
        rows.append((1.0, spooled(notification(down(n + 1)))))
    await h.store.append_inbox(rows)
    assert await h.engine.intake.drain() == 80
    assert len(matched) == 41
    assert len(h.incidents()) == 80  # each instance of the flapping alert has its incident


async def test_poison_within_a_big_take_fails_alone(
    h: EngineHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a take of 300 notifications: one whose body does not read is audited and
    dropped, one alert intake raises on is a dead letter, and one alert whose matching
    raises is another; every other alert, its siblings included, opens its incident."""
    transition = intake.Intake._transition

    async def faulty(self: intake.Intake, tx: Tx, previous: Any, alert: Any, *rest: Any) -> None:
        if alert.labels.get("fault") == "transition":
            raise RuntimeError("injected fault in a transition")
        await transition(self, tx, previous, alert, *rest)

    rules = h.ctx.rules
    match = rules.match

    def faulty_match(labels: dict[str, str]) -> list[RuleSpec]:
        if labels.get("fault") == "match":
            raise RuntimeError("injected fault in matching")
        return match(labels)

    monkeypatch.setattr(intake.Intake, "_transition", faulty)
    monkeypatch.setattr(rules, "match", faulty_match)
    rows = [(1.0, spooled(notification(down(n)))) for n in range(297)]
    unreadable = notification(down(297), starts_at="0001-01-01T00:00:00+01:00")
    rows.insert(100, (1.0, unreadable))
    for n, fault in ((298, "transition"), (299, "match")):
        body = json.loads(notification(down(n, fault=fault)))
        body["alerts"].append(json.loads(notification(down(n + 1000)))["alerts"][0])
        rows.insert(150, (1.0, json.dumps(body)))
    await h.store.append_inbox(rows)
    assert await h.engine.intake.drain() == 300
    assert await h.store.inbox_pending() == 0
    opened = {i["labels"]["instance"] for i in h.incidents() if "fault" not in i["labels"]}
    expected = {f"h{n}:9100" for n in [*range(297), 1298, 1299]}
    assert opened == expected
    async with h.store.read() as tx:
        assert await tx.dead_letter_count() == 2
    events = storeview.query(h.db, "SELECT event FROM audit WHERE incident_id IS NULL")
    assert [e["event"] for e in events].count("inbox_unreadable") == 1


async def test_a_take_past_its_time_budget_leaves_the_rest_for_the_next(
    h: EngineHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A take whose transactions run past the budget stops after the first and leaves
    the rest in the spool; the drain takes it again at once: every notification is
    applied, once, and the spool ends empty."""
    monkeypatch.setattr(intake, "BUDGET_S", 0.0)
    await h.store.append_inbox([(1.0, spooled(notification(down(n)))) for n in range(450)])
    takes: list[int] = []
    take = h.store.take_inbox

    async def counted(limit: int) -> Any:
        items = await take(limit)
        takes.append(len(items))
        return items

    monkeypatch.setattr(h.store, "take_inbox", counted)
    assert await h.engine.intake.drain() == 450
    assert takes == [450, 250, 50]
    incidents = h.incidents()
    assert len(incidents) == 450
    assert len({i["labels"]["instance"] for i in incidents}) == 450
    assert await h.store.inbox_pending() == 0
