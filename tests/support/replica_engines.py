"""Two replicas of the engine in one process, on one PostgreSQL database: replica a's
engine and replica b's store, driven with interleaved transactions by the race tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from remediator.actions.base import Action, BeforeSend, Outcome, Plan
from remediator.actions.notify import NotifyAction
from remediator.clock import FakeClock
from remediator.config.models import Config
from remediator.engine import Engine, EngineContext
from remediator.metrics import Metrics
from remediator.store import open_store_url
from remediator.store.base import Store
from support.engine_harness import notification, spooled

OTHER = "remediator-other-replica"


@asynccontextmanager
async def replicas(
    pg_url: str, tmp_path: Path, config: Config, actions: dict[str, Action]
) -> AsyncIterator[tuple[Engine, Store, FakeClock]]:
    """Replica a's engine, h1's NodeDown applied (its step due), and replica b's store."""
    a, b = open_store_url(pg_url, tmp_path), open_store_url(pg_url, tmp_path)
    await a.open()
    await b.open()
    clock = FakeClock()
    one = Engine(EngineContext(config, a, actions, clock, Metrics()))
    try:
        body = spooled(notification({"alertname": "NodeDown", "instance": "h1:9100"}))
        await a.append_inbox([(clock.now(), body)])
        await one.intake.drain()
        yield one, b, clock
    finally:
        await a.close()
        await b.close()


class Gated(NotifyAction):
    """`notify` that connects slowly: it waits for `gate` before it would send."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.sent = False

    async def execute(self, plan: Plan, before_send: BeforeSend) -> Outcome:
        await self.gate.wait()
        await before_send()
        self.sent = True
        return Outcome(ok=True)
