"""Two replicas deciding on one incident at the same moment, on one PostgreSQL database:
the second waits for the first's commit and decides on what it wrote."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import generate_latest
from support.daemon import write_config
from support.metrics import sample
from support.replica_engines import OTHER, Gated, replicas
from support.replicas import APPROVED_RULE, APPROVERS
from support.replicas import NOTIFY_RULE as RULE

from remediator.actions import build_registry
from remediator.config import load_config
from remediator.engine import EngineContext, approvals, decisions
from remediator.engine.decisions import Result, Voter
from remediator.metrics import Metrics
from remediator.store.records import State


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
    async with replicas(pg_url, tmp_path, config, build_registry(None)) as (one, b, clock):
        async with one.ctx.store.write() as tx:
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
        async with one.ctx.store.read() as tx:
            after = await tx.incident(1)
            assert after is not None
            assert after.state is State.RESOLVED
            assert await tx.steps(1) == []
            assert "step_dispatching" not in [r.event for r in await tx.audit_for(1)]


async def test_a_live_replica_renews_its_claims_and_a_taken_step_is_not_sent(
    pg_url: str, tmp_path: Path
) -> None:
    """While a replica runs a step it renews the claim every third of `store.lease`, so a
    step longer than the lease stays its own; once its renewals stop for a whole lease
    (the store unreachable) another replica takes the step, and the first then sends
    nothing: it checks its claim right before sending (ClaimLost, logged, not a bug)."""
    config = load_config(write_config(tmp_path / "cfg", RULE))
    lease = config.file.store.lease
    slow = Gated()
    async with replicas(pg_url, tmp_path, config, {"notify": slow}) as (one, b, clock):
        running = asyncio.create_task(one.tick())  # claims the step, waits to connect
        await asyncio.sleep(0.3)
        for _ in range(6):  # two leases long, renewed all along
            clock.advance(lease / 3)
            await one.renew_claims()
            async with b.write() as tx:
                assert await tx.claim_due(clock.now(), OTHER, 5, lease) == []
        clock.advance(lease + 1)  # then unrenewed past its end: another replica takes it
        async with b.write() as tx:
            assert len(await tx.claim_due(clock.now(), OTHER, 5, lease)) == 1
        slow.gate.set()
        await running
        assert not slow.sent
        async with one.ctx.store.read() as tx:
            events = [r.event for r in await tx.audit_for(1)]
        assert "step_dispatching" in events
        assert "step_executing" not in events
        exposed = generate_latest(one.ctx.metrics.registry).decode()
        assert sample(exposed, "remediator_engine_errors_total") == 0


async def test_a_stopping_replica_keeps_the_claims_of_the_steps_it_finishes(
    pg_url: str, tmp_path: Path
) -> None:
    """A replica asked to stop lets its running step finish within the shutdown grace and
    renews the step's claim all the while: another replica does not take a step that is
    still running (it would run it again, or record it unknown), however long the grace."""
    store = "{url: 'sqlite:///unused.db', lease: 3s}"
    config = load_config(write_config(tmp_path / "cfg", RULE, store=store))
    lease = config.file.store.lease
    slow = Gated()
    async with replicas(pg_url, tmp_path, config, {"notify": slow}) as (one, b, clock):
        working = asyncio.create_task(one.work_loop())
        await asyncio.sleep(0.3)  # the step is claimed and waits to connect
        stopping = asyncio.create_task(one.stop(grace_s=30))
        await working
        for _ in range(6):  # two leases long, the step still running
            clock.advance(lease / 3)
            await asyncio.sleep(lease / 3 + 0.1)
            async with b.write() as tx:
                assert await tx.claim_due(clock.now(), OTHER, 5, lease) == []
        slow.gate.set()
        await stopping
        assert slow.sent


async def test_two_approvals_through_two_replicas_at_once_approve_once(
    pg_url: str, tmp_path: Path
) -> None:
    """U1's Approve reaches replica b and U2's replica a at the same moment (one approval
    is required): a's decision waits for b's commit on the incident, then reads the
    approval afresh and answers `already approved`; one `approved`, one step scheduled.
    Before, a decided on the approval as it read it before the wait (pending), and
    scheduled the step a second time (two replicas could then each send its command)."""
    cfg = write_config(tmp_path / "cfg", APPROVED_RULE, policies=APPROVERS)
    config = load_config(cfg)
    async with replicas(pg_url, tmp_path, config, build_registry(None)) as (one, b, clock):
        await one.tick()  # asks for approval
        ctx_b = EngineContext(config, b, build_registry(None), clock, Metrics())
        async with b.write() as tx:  # b's Slack click, decided, not committed yet
            first = await approvals.decide(
                ctx_b, tx, 1, Voter.person("U1", "slack"), "approve", None, clock.now()
            )
            assert first.result is Result.APPROVED

            async def click_on_a() -> decisions.Outcome:
                async with one.ctx.store.write() as tx_a:
                    voter = Voter.person("U2", "slack")
                    return await approvals.decide(
                        one.ctx, tx_a, 1, voter, "approve", None, clock.now()
                    )

            racing = asyncio.create_task(click_on_a())
            await asyncio.sleep(0.3)
            assert not racing.done()  # a waits for b's decision on the incident
        second = await racing
        assert second.result is Result.ALREADY_DECIDED, second
        async with one.ctx.store.read() as tx:
            events = [r.event for r in await tx.audit_for(1)]
        assert events.count("approved") == 1
        async with b.write() as tx:
            assert len(await tx.claim_due(clock.now(), OTHER, 5, 30.0)) == 1
