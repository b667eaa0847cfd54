"""A webhook receiver (the real aiohttp app, SQLite store and ingestor) on loopback."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from remediator.alerts import Alert, parse_alerts
from remediator.auth import WebhookAuthenticator
from remediator.http import Receiver, build_app
from remediator.ingest import Ingestor
from remediator.metrics import Metrics
from remediator.store import SqliteStore

TOKEN = "s3cret-token"
LIMIT = 4096


@dataclass
class Harness:
    url: str
    session: ClientSession
    db: Path
    metrics: Metrics

    async def post(
        self,
        body: bytes | str,
        headers: dict[str, str] | None = None,
        path: str = "/webhook/alertmanager",
    ) -> tuple[int, Any]:
        hdrs = {"Authorization": f"Bearer {TOKEN}", **(headers or {})}
        async with self.session.post(self.url + path, data=body, headers=hdrs) as r:
            return r.status, await r.json()

    def stored(self) -> list[list[Alert]]:
        """The alerts of each spooled notification, read by another connection."""
        conn = sqlite3.connect(self.db.with_name("r.spool.db"))
        try:
            return [parse_alerts(r[0]) for r in conn.execute("SELECT body FROM inbox ORDER BY id")]
        finally:
            conn.close()


async def start(tmp_path: Path, auth: WebhookAuthenticator) -> AsyncIterator[Harness]:
    store = SqliteStore(tmp_path / "r.db")
    await store.open()
    metrics = Metrics()
    ingestor = Ingestor(store, on_stored=lambda: None)
    task = asyncio.create_task(ingestor.run())
    app = build_app(Receiver(auth, ingestor, metrics, LIMIT), store, metrics, lambda: None)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with ClientSession() as session:
        yield Harness(str(server.make_url("")), session, tmp_path / "r.db", metrics)
    await server.close()
    ingestor.close()
    await task
    await store.close()
