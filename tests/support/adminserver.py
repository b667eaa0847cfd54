"""A real aiohttp server on a loopback address that records every request (http action tests)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class AdminServer:
    """Answers with the next status in `statuses` (then 200), after `delay_s`.

    `location` is sent as the Location header (for redirect statuses).
    """

    url: str
    host: str
    port: int
    seen: list[Seen] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    delay_s: float = 0.0
    location: str | None = None

    async def handle(self, request: web.Request) -> web.Response:
        text = await request.text()
        body = json.loads(text) if text else None
        self.seen.append(Seen(request.method, request.raw_path, dict(request.headers), body))
        await asyncio.sleep(self.delay_s)
        status = self.statuses.pop(0) if self.statuses else 200
        headers = {"Location": self.location} if self.location else {}
        return web.Response(status=status, text=f"answer {status}", headers=headers)


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def admin_server(host: str = "127.0.0.1") -> AsyncIterator[AdminServer]:
    """Serve on `host` (a loopback address) until the block ends."""
    port = _free_port(host)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    admin = AdminServer(f"http://{netloc}", host, port)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", admin.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    try:
        yield admin
    finally:
        await runner.cleanup()
