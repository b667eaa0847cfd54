"""An in-process engine on a fake clock, acting on a real sshd, on either store backend."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remediator.actions import SshPool, build_registry
from remediator.alerts import parse_alerts
from remediator.clock import FakeClock
from remediator.config import load_config
from remediator.daemon import ssh_settings
from remediator.engine import Engine, EngineContext
from remediator.metrics import Metrics
from remediator.notify.outbox import Outbox
from remediator.notify.setup import build_notifiers
from remediator.store import PostgresStore, SqliteStore, open_store_url
from support import storeview
from support.daemon import SECRETS, STARTS, webhook, write_config
from support.smtpsink import SMTP_ENV
from support.sshd import SshServer


def notification(
    labels: dict[str, str], status: str = "firing", starts_at: str = STARTS, **extra: Any
) -> str:
    return json.dumps(webhook(labels, status, starts_at, **extra))


def spooled(body: str) -> str:
    """What the receiver spools for a webhook body: the body itself, once validated."""
    parse_alerts(body)
    return body


@dataclass
class EngineHarness:
    engine: Engine
    store: SqliteStore | PostgresStore
    clock: FakeClock
    pool: SshPool | None
    db: storeview.Source  # what storeview reads the evidence from
    outbox: Outbox
    closed: bool = False

    @classmethod
    async def start(
        cls,
        tmp_path: Path,
        rules: str,
        sshd: SshServer | None,
        *,
        store_url: str | None = None,
        **config_kwargs: Any,
    ) -> EngineHarness:
        """An engine on `store_url` (the `store_url` fixture's; an SQLite file in `tmp_path`
        unless given), its config written from `rules` and `config_kwargs`."""
        config = load_config(write_config(tmp_path / "cfg", rules, sshd=sshd, **config_kwargs))
        url = store_url or f"sqlite:///{tmp_path / 'engine.db'}"
        store = open_store_url(url, tmp_path)
        await store.open()
        db = store.path if isinstance(store, SqliteStore) else url
        settings = ssh_settings(config)
        pool = SshPool(settings) if settings else None
        clock = FakeClock()
        metrics = Metrics()
        ctx = EngineContext(config, store, build_registry(pool), clock, metrics)
        notifiers = build_notifiers(config, {**SECRETS, **SMTP_ENV})
        outbox = Outbox(
            store, config, clock, metrics, notifiers.slack, notifiers.email, ctx.outbox_ready
        )
        return cls(Engine(ctx), store, clock, pool, db, outbox)

    @property
    def ctx(self) -> EngineContext:
        return self.engine.ctx

    async def deliver(self) -> int:
        """Deliver every notification due now (the daemon's outbox loop does this)."""
        return await self.outbox.deliver_due()

    async def send(self, body: str) -> None:
        """Store a webhook body as the receiver would, then let the engine run."""
        await self.store.append_inbox([(self.clock.now(), spooled(body))])
        await self.engine.tick()

    async def send_many(self, alerts: list[dict[str, str]]) -> None:
        """Several notifications stored before the engine runs: their steps start together."""
        rows = [(self.clock.now(), spooled(notification(labels))) for labels in alerts]
        await self.store.append_inbox(rows)
        await self.engine.tick()

    async def fire(self, labels: dict[str, str], starts_at: str = STARTS) -> None:
        await self.send(notification(labels, "firing", starts_at))

    async def resolve(self, labels: dict[str, str], starts_at: str = STARTS) -> None:
        await self.send(notification(labels, "resolved", starts_at))

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.engine.tick()

    def incidents(self) -> list[dict[str, Any]]:
        return storeview.incidents(self.db)

    def events(self, incident_id: int = 1) -> list[str]:
        return storeview.events(self.db, incident_id)

    def audit(self, incident_id: int = 1) -> list[tuple[str, dict[str, Any]]]:
        return storeview.audit(self.db, incident_id)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.pool is not None:
            await self.pool.close()
        if self.outbox.slack is not None:
            await self.outbox.slack.close()
        await self.store.close()
