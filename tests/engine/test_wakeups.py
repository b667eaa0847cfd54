"""The engine's loops wake on events and due times, never on their poll interval: a
stored webhook is taken at once, and work falling due between two polls runs when due."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from support.daemon import write_config
from support.engine_harness import notification

from remediator.actions import build_registry
from remediator.clock import SystemClock
from remediator.config import load_config
from remediator.engine import Engine, EngineContext
from remediator.ingest import Ingestor
from remediator.metrics import Metrics
from remediator.store.base import Store
from remediator.store.records import StepState

# Far longer than anything below waits: a test that waits for the poll times out instead.
POLL_S = 60.0
WITHIN_S = 10.0
VERIFY = "300ms"
RULE = f"""\
rules:
  - name: two-notes
    match: [alertname = NodeDown]
    steps:
      - action: notify
        params: {{message: first}}
        verify: {VERIFY}
      - action: notify
        params: {{message: second}}
"""
DOWN = {"alertname": "NodeDown", "instance": "web1:9100"}


@contextlib.asynccontextmanager
async def running(store: Store, tmp_path: Path) -> AsyncIterator[tuple[Engine, Ingestor]]:
    """The engine's intake and work loops on the real clock, fed by an Ingestor wired as
    the daemon wires it; their poll interval longer than any wait here."""
    config = load_config(write_config(tmp_path / "cfg", RULE))
    ctx = EngineContext(config, store, build_registry(None), SystemClock(), Metrics())
    engine = Engine(ctx, poll_s=POLL_S)
    ingestor = Ingestor(store, on_stored=engine.stored)
    loops = [
        asyncio.create_task(coro)
        for coro in (ingestor.run(), engine.intake_loop(), engine.work_loop())
    ]
    try:
        yield engine, ingestor
    finally:
        await engine.stop(grace_s=5)
        ingestor.close()
        await asyncio.wait(loops, timeout=5)
        for loop in loops:
            loop.cancel()


async def step_states(store: Store) -> list[StepState]:
    async with store.read() as tx:
        incidents = await tx.incidents(None, 10)
        return [s.state for i in incidents for s in await tx.steps(i.id)]


async def wait_steps(store: Store, count: int) -> list[StepState]:
    """The steps once `count` have finished, polled; fails after WITHIN_S."""
    deadline = time.monotonic() + WITHIN_S
    while time.monotonic() < deadline:
        states = await step_states(store)
        if len([s for s in states if s is StepState.SUCCEEDED]) >= count:
            return states
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} steps not finished within {WITHIN_S}s: {states}")


async def test_a_stored_webhook_wakes_intake_at_once(store: Store, tmp_path: Path) -> None:
    """When the receiver's commit answers (the sender gets its 200), the engine's intake
    is already woken: no timer stands between the stored alert and its incident."""
    async with running(store, tmp_path) as (engine, ingestor):
        engine.inbox_ready.clear()
        await ingestor.submit(time.time(), notification(DOWN))
        assert engine.inbox_ready.is_set()
        assert await wait_steps(store, 1)


async def test_work_falling_due_between_polls_runs_when_due(store: Store, tmp_path: Path) -> None:
    """Step 1's verify window (300 ms) ends while the work loop sleeps: the loop wakes
    when it ends, not at its next poll (a minute away), and step 2 runs."""
    async with running(store, tmp_path) as (_, ingestor):
        await ingestor.submit(time.time(), notification(DOWN))
        assert await wait_steps(store, 2) == [StepState.SUCCEEDED, StepState.SUCCEEDED]
