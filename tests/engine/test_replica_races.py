"""Two replicas deciding on one incident at the same moment, on one PostgreSQL database:
the second waits for the first's commit and decides on what it wrote."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.daemon import write_config
from support.engine_harness import notification, spooled

from remediator.actions import build_registry
from remediator.clock import FakeClock
from remediator.config import load_config
from remediator.engine import Engine, EngineContext
from remediator.errors import ClaimLost
from remediator.metrics import Metrics
from remediator.store import open_store_url
from remediator.store.records import State

RULE = """\
rules:
  - name: restart
    match: [alertname = NodeDown]
    steps:
      - action: notify
        params: {message: down}
"""


async def test_a_step_does_not_start_on_an_incident_another_replica_is_resolving(
    pg_url: str, tmp_path: Path
) -> None:
    """Replica b is applying a resolve (its transaction has read the open incident,
    cancelled its work and closed it, not committed yet) when replica a's runner, which
    claimed the step a moment before, prepares it: a waits for b's commit on the
    incident's row, then finds it resolved and starts nothing. Without the row lock a read
    it as pending, started the step and wrote `running` over `resolved` (a lost update:
    a command sent for an alert already gone, an incident open forever)."""
    config = load_config(write_config(tmp_path / "cfg", RULE))
    a, b = open_store_url(pg_url, tmp_path), open_store_url(pg_url, tmp_path)
    await a.open()
    await b.open()
    clock = FakeClock()
    one = Engine(EngineContext(config, a, build_registry(None), clock, Metrics()))
    try:
        body = spooled(notification({"alertname": "NodeDown", "instance": "h1:9100"}))
        await a.append_inbox([(clock.now(), body)])
        await one.intake.drain()
        async with a.write() as tx:
            [item] = await tx.claim_due(clock.now(), one.owner, 5, 30.0)
        async with b.write() as tx:  # replica b's intake, between its read and its commit
            first = await tx.incident(1)
            assert first is not None
            [incident] = await tx.open_incidents_for(first.fingerprint, first.starts_at)
            await tx.cancel_work(incident.id, clock.now())
            await tx.update_incident(incident.id, clock.now(), state=State.RESOLVED)
            racing = asyncio.create_task(one.runner.run(item))
            await asyncio.sleep(0.3)
            assert not racing.done()  # a waits for b's decision on the incident
        await racing
        async with a.read() as tx:
            after = await tx.incident(1)
            assert after is not None
            assert after.state is State.RESOLVED
            assert await tx.steps(1) == []
            assert "step_dispatching" not in [r.event for r in await tx.audit_for(1)]
    finally:
        await a.close()
        await b.close()


async def test_a_live_replica_renews_its_claims_and_a_taken_step_is_not_sent(
    pg_url: str, tmp_path: Path
) -> None:
    """A replica renews its claims every third of `store.lease`, so a step that runs
    longer than the lease stays its own; one whose lease ran out unrenewed (the store was
    unreachable) is taken by another replica, and the first then sends nothing: its
    runner checks the claim right before sending and stops (ClaimLost)."""
    config = load_config(write_config(tmp_path / "cfg", RULE))
    lease = config.file.store.lease
    a, b = open_store_url(pg_url, tmp_path), open_store_url(pg_url, tmp_path)
    await a.open()
    await b.open()
    clock = FakeClock()
    one = Engine(EngineContext(config, a, build_registry(None), clock, Metrics()))
    two = Engine(EngineContext(config, b, build_registry(None), clock, Metrics()))
    try:
        body = spooled(notification({"alertname": "NodeDown", "instance": "h1:9100"}))
        await a.append_inbox([(clock.now(), body)])
        await one.intake.drain()
        async with a.write() as tx:
            [item] = await tx.claim_due(clock.now(), one.owner, 5, lease)
        for _ in range(6):  # two leases long, renewed all along
            clock.advance(lease / 3)
            await one.renew_claims()
            async with b.write() as tx:
                assert await tx.claim_due(clock.now(), two.owner, 5, lease) == []
        clock.advance(lease + 1)  # then unrenewed past its end: replica b takes it
        async with b.write() as tx:
            assert len(await tx.claim_due(clock.now(), two.owner, 5, lease)) == 1
        with pytest.raises(ClaimLost):
            await one.runner.run(item)
        async with a.read() as tx:
            events = [r.event for r in await tx.audit_for(1)]
        assert "step_executing" not in events
    finally:
        await a.close()
        await b.close()
