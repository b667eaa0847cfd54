"""The outbox on a store two replicas share: a batch whose deliveries are slow is not
delivered past its lease, so a row the other replica takes then is posted once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from support.daemon import write_config

from remediator.clock import FakeClock
from remediator.config import load_config
from remediator.metrics import Metrics
from remediator.notify.outbox import Outbox
from remediator.store import open_store_url
from remediator.store.payloads import SlackEphemeral

ROWS = 8
SLOW_S = 30.0  # each Slack call takes this long (of the fake clock)


class SlowSlack:
    """A Slack whose every call takes `took_s`; once the fake clock passes `deadline` it
    lets the other replica's outbox run (as it would, concurrently)."""

    def __init__(self, clock: FakeClock, took_s: float, sent: list[str]) -> None:
        self.clock = clock
        self.took_s = took_s
        self.sent = sent
        self.deadline = float("inf")
        self.meanwhile: Callable[[], Awaitable[int]] | None = None

    async def ephemeral(self, channel: str, user: str, text: str) -> None:
        self.clock.advance(self.took_s)
        if self.clock.now() > self.deadline and self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            await meanwhile()
        self.sent.append(text)


async def test_a_slow_batch_is_not_delivered_past_its_lease(pg_url: str, tmp_path: Path) -> None:
    """Replica a claims eight ephemeral replies and Slack takes 30 s per call: a stops
    delivering before a row's worst case would outlast the batch's lease, replica b takes
    the rest once the lease is over, and every reply is posted exactly once (before, a
    went on posting rows b had taken and posted too)."""
    config = load_config(write_config(tmp_path / "cfg", "rules: []\n"))
    a, b = open_store_url(pg_url, tmp_path), open_store_url(pg_url, tmp_path)
    await a.open()
    await b.open()
    clock = FakeClock()
    sent: list[str] = []
    slow, quick = SlowSlack(clock, SLOW_S, sent), SlowSlack(clock, 0.0, sent)
    one = Outbox(a, config, clock, Metrics(), slow, None, asyncio.Event())  # type: ignore[arg-type]
    two = Outbox(b, config, clock, Metrics(), quick, None, asyncio.Event())  # type: ignore[arg-type]
    try:
        async with a.write() as tx:
            for n in range(ROWS):
                payload = SlackEphemeral(user="U1", text=f"reply {n}")
                await tx.enqueue("C1", payload, None, clock.now())
        slow.deadline = clock.now() + one.lease_s()
        slow.meanwhile = two.deliver_due
        await one.deliver_due()
        clock.advance(one.lease_s())
        await two.deliver_due()
        assert sorted(sent) == sorted(f"reply {n}" for n in range(ROWS))
    finally:
        await a.close()
        await b.close()
