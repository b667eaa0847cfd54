"""Hand-overs that happen around automation (a dead letter, an acknowledgement) settle it.

After a hand-over nothing automation had under way may carry on by itself: a pending
approval is cancelled, a step that finishes afterwards does not start the verify window
and the next step, its host stays locked while its command may run, and a step a crash
left in flight is settled on the next start.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from support import storeview
from support.engine_harness import EngineHarness, notification

from remediator.engine import approvals, escalation
from remediator.engine.decisions import Result, Voter
from remediator.store.records import StepState, WorkItem, WorkKind

APPROVAL_RULE = """\
rules:
  - name: risky
    match: [alertname = Risky]
    steps:
      - action: script
        params: {argv: [/usr/bin/touch, "OUT"], timeout: 10s}
        approval: required
    escalate: critical
"""
POLICY = "approvals:\n  default: {approvers: [alice], timeout: 15m}\n"
SLOW_RULE = """\
rules:
  - name: slow
    match: [alertname = Slow]
    steps:
      - action: script
        params: {argv: [/bin/sleep, "1"], timeout: 10s}
        verify: 5m
      - action: script
        params: {argv: [/usr/bin/touch, "OUT"], timeout: 10s}
    escalate: critical
"""


async def test_a_hand_over_cancels_the_pending_approval(tmp_path: Path, store_url: str) -> None:
    """Handed over while waiting for approvers (say its request could not be built): a
    late Approve changes nothing and the step never runs."""
    out = tmp_path / "ran"
    rules = APPROVAL_RULE.replace("OUT", str(out))
    h = await EngineHarness.start(tmp_path, rules, None, policies=POLICY, store_url=store_url)
    try:
        await h.send(notification({"alertname": "Risky"}))
        assert h.incidents()[0]["state"] == "awaiting_approval"
        await h.engine.dead.hand_over(1, "internal error in the outbox loop")
        assert h.incidents()[0]["state"] == "escalating"
        async with h.store.write() as tx:
            [approval] = await tx.approvals_of(1)
            outcome = await approvals.decide(
                h.ctx, tx, approval.id, Voter.person("alice", "api"), "approve", None, 1.0
            )
        assert outcome.result is Result.ALREADY_DECIDED
        await h.advance(60)
        assert not out.exists()
        assert h.incidents()[0]["state"] == "escalating"
    finally:
        await h.close()


async def test_a_step_finishing_after_a_hand_over_starts_nothing(
    tmp_path: Path, store_url: str
) -> None:
    """Handed over while its command runs: the step's outcome is recorded and the incident
    stays with humans (no verify window, no next step)."""
    out = tmp_path / "second-step-ran"
    h = await EngineHarness.start(
        tmp_path, SLOW_RULE.replace("OUT", str(out)), None, store_url=store_url
    )
    try:
        await h.store.append_inbox([(h.clock.now(), notification({"alertname": "Slow"}))])
        ticking = asyncio.create_task(h.engine.tick())
        for _ in range(100):
            if "step_executing" in h.events(1):
                break
            await asyncio.sleep(0.02)
        await h.engine.dead.hand_over(1, "internal error in the outbox loop")
        async with h.store.read() as tx:
            [step] = await tx.steps(1)
        assert step.state is StepState.EXECUTING
        await ticking
        assert h.incidents()[0]["state"] == "escalating"
        async with h.store.read() as tx:
            [step] = await tx.steps(1)
        assert step.state is StepState.SUCCEEDED
        await h.advance(400)
        assert not out.exists()
        assert "verifying" not in h.events(1)
    finally:
        await h.close()


async def test_a_step_left_in_flight_after_a_hand_over_is_settled_on_start(
    tmp_path: Path, store_url: str
) -> None:
    """The daemon died while a handed-over incident's command ran: on the next start the
    step is `unknown` (never re-sent) and holds its host no more. On PostgreSQL too: no
    work row claims it (test_shared_store has the step a live replica still holds)."""
    h = await EngineHarness.start(tmp_path, SLOW_RULE, None, store_url=store_url)
    try:
        async with h.store.write() as tx:
            incident = await tx.create_incident("slow", "f", "t", {}, {}, 1.0)
            assert incident is not None
            step = await tx.start_step(incident.id, 0, "script", {}, 1.0)
            await tx.update_step(step.id, StepState.EXECUTING, executing_at=1.0)
            crashed = await tx.create_incident("slow", "g", "t", {}, {}, 1.0)
            assert crashed is not None  # an ordinary crash: its work row is still pending
            other = await tx.start_step(crashed.id, 0, "script", {}, 1.0)
            await tx.update_step(other.id, StepState.EXECUTING, executing_at=1.0)
            await tx.schedule(WorkKind.RUN_STEP, crashed.id, 0, 1.0)
        await h.engine.recover()
        async with h.store.read() as tx:
            [settled] = await tx.steps(incident.id)
            [left] = await tx.steps(crashed.id)
        assert settled.state is StepState.UNKNOWN
        assert "step_settled" in h.events(incident.id)
        assert left.state is StepState.EXECUTING  # for the runner: recorded unknown there
    finally:
        await h.close()


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_a_dead_replicas_step_is_settled_once_its_lease_is_over(
    tmp_path: Path, store_url: str
) -> None:
    """Another replica died while a handed-over incident's step ran: this replica's engine
    leaves the step alone while that replica's claim lasts, then settles it `unknown`, all
    on the engine's clock. PostgreSQL only: an SQLite store is exclusive, a restart
    settles it there (the test above)."""
    h = await EngineHarness.start(tmp_path, SLOW_RULE, None, store_url=store_url)
    try:
        now = h.clock.now()
        async with h.store.write() as tx:
            incident = await tx.create_incident("slow", "f", "t", {}, {}, now)
            assert incident is not None
            await tx.schedule(WorkKind.RUN_STEP, incident.id, 0, now)
            assert await tx.claim_due(now, "remediator-dead-replica", 1, 300.0)
            step = await tx.start_step(incident.id, 0, "script", {}, now)
            await tx.update_step(step.id, StepState.EXECUTING, executing_at=now)
            await tx.cancel_work(incident.id, now)  # handed over mid-step
        await h.advance(299)
        assert storeview.steps(h.db, 1)[0]["state"] == "executing"
        await h.advance(31)  # the claim ended at 300 s; orphans are looked for every 30 s
        assert storeview.steps(h.db, 1)[0]["state"] == "unknown"
        assert "step_settled" in h.events(1)
    finally:
        await h.close()


PAGE_RULE = """\
rules:
  - name: page
    match: [alertname = Page]
    escalate: twostep
"""
TWO_STEP_CHAIN = """\
  twostep:
    steps:
      - notify: ['slack:#first']
      - after: 10m
        notify: ['slack:#second']
"""


async def test_a_chain_step_that_raises_does_not_end_the_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    """The first page of a chain raises: it is a dead letter, and the chain's next step
    still pages on time."""
    run_step = escalation.run_step

    async def first_fails(ctx: Any, tx: Any, item: WorkItem, now: float) -> None:
        if item.step_index == 0:
            raise RuntimeError("injected fault in a chain step")
        await run_step(ctx, tx, item, now)

    monkeypatch.setattr(escalation, "run_step", first_fails)
    h = await EngineHarness.start(
        tmp_path, PAGE_RULE, None, policies=TWO_STEP_CHAIN, store_url=store_url
    )
    try:
        await h.send(notification({"alertname": "Page"}))
        assert "poison_item" in h.events(1)
        await h.advance(600)
        pages = storeview.query(h.db, "SELECT target FROM outbox WHERE kind='slack_post'")
        assert [p["target"] for p in pages] == ["#second"]
    finally:
        await h.close()


async def test_a_hand_over_whose_rule_is_gone_still_cancels_the_approval(
    tmp_path: Path, store_url: str
) -> None:
    """The rule was reloaded away before the poison item: no chain to page, but the
    pending approval is cancelled all the same and no timer of automation is left."""
    rules = APPROVAL_RULE.replace("OUT", str(tmp_path / "ran"))
    h = await EngineHarness.start(tmp_path, rules, None, policies=POLICY, store_url=store_url)
    try:
        await h.send(notification({"alertname": "Risky"}))
        h.ctx.swap_config(h.ctx.config.model_copy(update={"rules": ()}))
        await h.engine.dead.hand_over(1, "internal error in the outbox loop")
        assert h.incidents()[0]["state"] == "exhausted"
        async with h.store.read() as tx:
            [approval] = await tx.approvals_of(1)
        assert approval.state.value == "cancelled"
        pending = storeview.query(h.db, "SELECT kind FROM work WHERE done_at IS NULL")
        assert pending == []
    finally:
        await h.close()
