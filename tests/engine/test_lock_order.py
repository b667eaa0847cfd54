"""Replicas on one PostgreSQL database lock an incident before its other rows, in the
order a human decision (a click, an ack) takes them: a transaction racing a decision
waits for it and acts on what it committed, instead of deadlocking with it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import TypeVar

from support.daemon import write_config
from support.engine_harness import notification
from support.replica_engines import Gated, replicas
from support.replicas import APPROVED_RULE, APPROVERS
from support.replicas import NOTIFY_RULE as RULE

from remediator.actions import build_registry
from remediator.alerts import parse_alerts
from remediator.clock import FakeClock
from remediator.config import load_config
from remediator.config.models import Config
from remediator.engine import Engine, EngineContext, approvals, decisions
from remediator.engine.decisions import Result, Voter
from remediator.errors import DeliveryError
from remediator.metrics import Metrics
from remediator.notify.outbox import Outbox
from remediator.store.base import Store, Tx
from remediator.store.records import (
    ApprovalState,
    EscalationState,
    OutboxKind,
    State,
    StepState,
    WorkItem,
)

T = TypeVar("T")
PAGE_RULE = "rules:\n  - name: page\n    match: [alertname = NodeDown]\n    escalate: critical\n"


async def decided_while(
    b: Store, decide: Callable[[Tx], Awaitable[decisions.Outcome]], racing: Awaitable[T]
) -> tuple[decisions.Outcome, T]:
    """Replica b's human decision has locked incident 1 (a click, an ack) when replica a
    starts `racing` on the same incident; b then decides and commits. Both are returned:
    a transaction that locked a work row before the incident deadlocked with b's, and
    PostgreSQL aborted one of the two (StoreConflict)."""
    async with b.write() as tx:
        await tx.incident(1)
        task: asyncio.Task[T] = asyncio.ensure_future(racing)
        await asyncio.sleep(0.3)
        decided = await decide(tx)
    return decided, await task


def acking(
    b: Store, config: Config, clock: FakeClock
) -> Callable[[Tx], Awaitable[decisions.Outcome]]:
    """Replica b's ack of incident 1 (by U1), in the transaction it is given."""
    ctx = EngineContext(config, b, build_registry(None), clock, Metrics())
    voter = Voter.person("U1", "slack")
    return lambda tx: approvals.acknowledge(ctx, tx, 1, voter, clock.now())


async def claim_one(one: Engine, clock: FakeClock) -> WorkItem:
    """The one work item due, claimed by replica a."""
    async with one.ctx.store.write() as tx:
        [item] = await tx.claim_due(clock.now(), one.owner, 5, 30.0)
    return item


async def test_an_approval_timeout_waits_for_an_approve_being_recorded(
    pg_url: str, tmp_path: Path
) -> None:
    """The approval's timeout falls due on replica a while U1's Approve is being recorded
    on replica b: a waits for b's decision on the incident, reads the approval afresh
    (approved) and expires nothing; the approve stands. Before, a marked its timer done
    first and read the approval as pending: b's click and a's timer each waited on the
    other's row, and PostgreSQL aborted one (the click dropped, or an approved step
    reported expired to the humans while it ran)."""
    config = load_config(write_config(tmp_path / "cfg", APPROVED_RULE, policies=APPROVERS))
    async with replicas(pg_url, tmp_path, config, build_registry(None)) as (one, b, clock):
        await one.tick()  # asks for approval
        clock.advance(15 * 60 + 1)
        timeout = await claim_one(one, clock)
        ctx_b = EngineContext(config, b, build_registry(None), clock, Metrics())
        voter = Voter.person("U1", "slack")
        approve = partial(approvals.decide, ctx_b, approval_id=1, voter=voter, decision="approve")
        decided, _ = await decided_while(
            b, lambda tx: approve(tx=tx, reason=None, now=clock.now()), one.runner.run(timeout)
        )
        assert decided.result is Result.APPROVED
        async with one.ctx.store.read() as tx:
            [approval] = await tx.approvals_of(1)
            incident = await tx.incident(1)
            events = [r.event for r in await tx.audit_for(1)]
        assert approval.state is ApprovalState.APPROVED
        assert incident is not None
        assert incident.state is State.PENDING
        assert "approval_expired" not in events


async def test_a_page_due_while_an_ack_is_recorded_pages_nobody(
    pg_url: str, tmp_path: Path
) -> None:
    """The chain's page falls due on replica a while a human's ack is being recorded on
    replica b: a waits for the ack, finds the chain stopped and queues no page. Before,
    a paged (and finished the chain) without looking at the incident, the ack's moment."""
    config = load_config(write_config(tmp_path / "cfg", PAGE_RULE))
    async with replicas(pg_url, tmp_path, config, build_registry(None)) as (one, b, clock):
        page = await claim_one(one, clock)
        acked, _ = await decided_while(b, acking(b, config, clock), one.runner.run(page))
        assert acked.result is Result.ACKNOWLEDGED
        async with one.ctx.store.read() as tx:
            esc = await tx.escalation(1)
            events = [r.event for r in await tx.audit_for(1)]
        assert esc is not None
        assert esc.state is EscalationState.ACKNOWLEDGED
        assert "escalation_notified" not in events


async def test_a_poison_work_item_is_buried_after_an_ack_being_recorded(
    pg_url: str, tmp_path: Path
) -> None:
    """A step raised a bug on replica a while a human's ack is being recorded on replica b:
    the dead letter waits for the ack and is kept, the ack stands. Before, the burial
    locked the step's work row first and the ack (which cancels it) then the incident:
    a deadlock, one of the two aborted."""
    config = load_config(write_config(tmp_path / "cfg", RULE))
    async with replicas(pg_url, tmp_path, config, build_registry(None)) as (one, b, clock):
        step = await claim_one(one, clock)
        buried = one.bury_work(step, RuntimeError("a bug"))
        acked, _ = await decided_while(b, acking(b, config, clock), buried)
        assert acked.result is Result.ACKNOWLEDGED
        async with one.ctx.store.read() as tx:
            [letter] = await tx.dead_letters(5)
            incident = await tx.incident(1)
        assert letter.item == f"work:{step.id}"
        assert incident is not None
        assert incident.state is State.ACKNOWLEDGED


async def test_a_resolve_closing_an_incident_alone_waits_for_an_ack_being_recorded(
    pg_url: str, tmp_path: Path
) -> None:
    """Intake closes one incident of a resolved alert in a transaction of its own (after
    the alert's batch failed) while a human's ack is being recorded on replica b: it waits,
    reads the incident afresh and closes it; both stand. Before, it cancelled the work rows
    before locking the incident, and deadlocked with the ack."""
    config = load_config(write_config(tmp_path / "cfg", RULE))
    async with replicas(pg_url, tmp_path, config, build_registry(None)) as (one, b, clock):
        async with one.ctx.store.read() as tx:
            found = await tx.incident(1)
        assert found is not None
        closing = one.intake._close_alone(found)
        acked, closed = await decided_while(b, acking(b, config, clock), closing)
        assert acked.result is Result.ACKNOWLEDGED
        assert closed
        async with one.ctx.store.read() as tx:
            incident = await tx.incident(1)
            events = [r.event for r in await tx.audit_for(1)]
        assert incident is not None
        assert incident.state is State.RESOLVED
        assert events.count("resolved") == 1


async def test_a_step_about_to_send_waits_for_an_ack_being_recorded(
    pg_url: str, tmp_path: Path
) -> None:
    """Replica a is about to send a dispatched step (it checks its claim and records the
    step executing) while a human's ack is being recorded on replica b: a waits for the
    ack, then finds the step's work cancelled and does not send it (`step_not_sent`);
    the human has it now. Before, a locked the step's work row and then waited for the incident to write its
    audit row, while the ack waited for that work row: a deadlock, one aborted."""
    config = load_config(write_config(tmp_path / "cfg", RULE))
    slow = Gated()
    async with replicas(pg_url, tmp_path, config, {"notify": slow}) as (one, b, clock):
        running = asyncio.create_task(one.tick())  # dispatches the step, waits to connect
        await asyncio.sleep(0.3)

        async def send() -> None:
            slow.gate.set()
            await running

        acked, _ = await decided_while(b, acking(b, config, clock), send())
        assert acked.result is Result.ACKNOWLEDGED
        assert not slow.sent
        async with one.ctx.store.read() as tx:
            [step] = await tx.steps(1)
            incident = await tx.incident(1)
        assert step.state is StepState.FAILED
        assert incident is not None
        assert incident.state is State.ACKNOWLEDGED


async def test_a_notification_given_up_while_an_ack_is_recorded_waits_for_it(
    pg_url: str, tmp_path: Path
) -> None:
    """Replica a gives up the incident's Slack message (Slack refused it for good) while
    a human's ack is being recorded on replica b, whose update of that same message waits
    on a's row: a waits for the ack first, and both stand. Before, a changed the row and
    then waited for the incident to audit the failure: a deadlock, one aborted."""
    config = load_config(write_config(tmp_path / "cfg", PAGE_RULE))
    async with replicas(pg_url, tmp_path, config, build_registry(None)) as (one, b, clock):
        async with one.ctx.store.write() as tx:
            items = await tx.claim_outbox(clock.now(), one.owner, 10, 60.0)
        [message] = [i for i in items if i.kind is OutboxKind.SLACK_SYNC]
        outbox = Outbox(one.ctx.store, config, clock, Metrics(), None, None, asyncio.Event())
        refused = DeliveryError("channel_not_found", permanent=True)
        acked, _ = await decided_while(
            b, acking(b, config, clock), outbox._failed(message, refused)
        )
        assert acked.result is Result.ACKNOWLEDGED
        async with one.ctx.store.read() as tx:
            events = [r.event for r in await tx.audit_for(1)]
        assert "acknowledged" in events
        assert "notification_failed" in events


async def test_handing_over_an_alert_intake_failed_on_waits_for_a_replica_applying_it(
    pg_url: str, tmp_path: Path
) -> None:
    """Replica b is applying h1's resolve (it saved the alert's status and is about to
    lock its incident) when replica a, whose intake raised on the same notification,
    hands the alert over: a saves the status first too, so it waits for b's commit, then
    closes the incident. Before, a locked the incident before the alert's row and b the
    reverse: a deadlock, one aborted."""
    config = load_config(write_config(tmp_path / "cfg", RULE))
    async with replicas(pg_url, tmp_path, config, build_registry(None)) as (one, b, clock):
        body = notification({"alertname": "NodeDown", "instance": "h1:9100"}, "resolved")
        [alert] = parse_alerts(body)
        async with b.write() as tx:  # b's intake between its two steps
            await tx.save_alerts([], [{**asdict(alert), "at": clock.now()}])
            handing = asyncio.create_task(one.intake._hand_over_alert(alert, "a bug"))
            await asyncio.sleep(0.3)
            await tx.open_incidents_for(alert.fingerprint, alert.starts_at)
        await handing
        async with one.ctx.store.read() as tx:
            incident = await tx.incident(1)
        assert incident is not None
        assert incident.state is State.RESOLVED
