"""Notifications of one alert reaching the engine out of order, as they can when
Alertmanager peers post to different replicas: a resolve is final for its alert instance."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.daemon import write_config
from support.engine_harness import notification, spooled

from remediator.actions import build_registry
from remediator.alerts import Alert, fingerprint
from remediator.clock import FakeClock
from remediator.config import load_config
from remediator.engine import Engine, EngineContext
from remediator.metrics import Metrics
from remediator.store.base import Store, Tx

RULE = """\
rules:
  - name: notify-down
    match: [alertname = NodeDown]
    steps:
      - action: notify
        params: {message: down}
"""
DOWN = {"alertname": "NodeDown", "instance": "web1:9100"}
LATER = "2026-01-01T00:05:00Z"


async def test_a_firing_copy_arriving_after_the_resolve_opens_nothing(
    store: Store, tmp_path: Path
) -> None:
    """The resolve is applied first, then a late firing copy of the same instance (same
    startsAt): no incident opens and the alert stays resolved. The alert firing again
    (a new startsAt) opens its incident as usual."""
    config = load_config(write_config(tmp_path / "cfg", RULE))
    clock = FakeClock()
    engine = Engine(EngineContext(config, store, build_registry(None), clock, Metrics()))
    for status in ("resolved", "firing"):
        await store.append_inbox([(clock.now(), spooled(notification(DOWN, status)))])
    await engine.intake.drain()
    async with store.read() as tx:
        assert await tx.incidents(None, 10) == []
        statuses = await tx.alert_statuses([fingerprint(DOWN)])
    assert list(statuses.values()) == ["resolved"]
    await store.append_inbox([(clock.now(), spooled(notification(DOWN, starts_at=LATER)))])
    await engine.intake.drain()
    async with store.read() as tx:
        [incident] = await tx.incidents(None, 10)
    assert incident.starts_at.startswith("2026-01-01T00:05:00")


async def test_a_late_firing_copy_that_intake_fails_on_pages_nobody(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Intake failing on the late firing copy (a poison item) buries it and pages for an
    alert that still fires; this one resolved already, so no incident opens and its
    status stays resolved."""
    config = load_config(write_config(tmp_path / "cfg", RULE))
    clock = FakeClock()
    engine = Engine(EngineContext(config, store, build_registry(None), clock, Metrics()))
    await store.append_inbox([(clock.now(), spooled(notification(DOWN, "resolved")))])
    await engine.intake.drain()

    async def poison(tx: Tx, alerts: list[Alert]) -> None:
        raise RuntimeError("poison")

    monkeypatch.setattr(engine.intake, "_apply", poison)
    await store.append_inbox([(clock.now(), spooled(notification(DOWN, "firing")))])
    await engine.intake.drain()
    async with store.read() as tx:
        assert await tx.incidents(None, 10) == []
        assert await tx.dead_letter_count() == 1
        statuses = await tx.alert_statuses([fingerprint(DOWN)])
    assert list(statuses.values()) == ["resolved"]
