"""A store whose next write transactions lose a race at their commit, as on PostgreSQL a
deadlock's victim or a unique key's loser does: rolled back whole, StoreConflict raised."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from remediator.engine import EngineContext
from remediator.errors import StoreConflict
from remediator.store.base import Store, Tx
from support.engine_harness import EngineHarness
from support.replicas import APPROVED_RULE, APPROVERS


class LosesRaces:
    """Wraps a real store; its first `losses` write transactions run, then roll back with
    StoreConflict instead of committing. Everything else is the wrapped store's."""

    def __init__(self, store: Store, losses: int = 1) -> None:
        self.store = store
        self.losses = losses
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        async with self.store.write() as tx:
            yield tx
            if self.lost < self.losses:
                self.lost += 1
                raise StoreConflict("another replica wrote the same rows first (test)")


async def approval_asked(tmp_path: Path, store_url: str) -> EngineHarness:
    """An engine whose incident 1 waits for approval 1 (the caller closes it)."""
    h = await EngineHarness.start(
        tmp_path, APPROVED_RULE, None, policies=APPROVERS, store_url=store_url
    )
    await h.fire({"alertname": "NodeDown"})
    return h


def losing(h: EngineHarness, losses: int = 1) -> tuple[EngineContext, LosesRaces]:
    """`h`'s engine context on a store whose next `losses` writes lose a race."""
    store = LosesRaces(h.store, losses)
    ctx = EngineContext(h.ctx.config, store, h.ctx.actions, h.clock, h.ctx.metrics)  # type: ignore[arg-type]
    return ctx, store


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """A client of `app` served on loopback."""
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client
