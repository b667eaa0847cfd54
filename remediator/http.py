"""The HTTP surface: webhook receiver, health, readiness and metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from remediator.alerts import ALERTMANAGER, GRAFANA, Dialect, PayloadError
from remediator.auth import WebhookAuthenticator
from remediator.errors import StoreError
from remediator.ingest import Ingestor
from remediator.metrics import Metrics
from remediator.store.base import Store

log = logging.getLogger(__name__)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


@dataclass
class Receiver:
    """POST /webhook/alertmanager (or /grafana, as `dialect`): 200 only once stored."""

    auth: WebhookAuthenticator
    ingestor: Ingestor
    metrics: Metrics
    max_body_bytes: int
    clock: Callable[[], float] = time.time
    dialect: Dialect = ALERTMANAGER

    async def handle(self, request: web.Request) -> web.Response:
        """Authenticate, bound, validate, store; never a 500 for bad input."""
        started = time.perf_counter()
        response = await self._handle(request)
        self.metrics.webhook_latency.observe(time.perf_counter() - started)
        self.metrics.count_webhook_response(response.status)
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        if not self.auth.check(request.headers.get("Authorization")):
            return web.json_response(
                {"error": "missing or wrong credentials for the webhook"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="remediator"'},
            )
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            return self._too_large()
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large()
        try:
            text, alerts = self.dialect.decode(body.decode("utf-8"))
        except UnicodeDecodeError:
            return _error(400, "malformed JSON", detail="not valid UTF-8")
        except PayloadError as exc:
            return self._bad_request(exc)
        try:
            await self.ingestor.submit(self.clock(), text)
        except StoreError as exc:
            log.error("webhook refused: store unavailable", extra={"error": str(exc)})
            return _error(503, "store unavailable; retry later")
        total = len(alerts)
        firing = sum(1 for a in alerts if a.status == "firing")
        self.metrics.count_alerts(firing=firing, resolved=total - firing)
        body_out = f'{{"status": "stored", "alerts": {total}}}'
        return web.Response(text=body_out, content_type="application/json")

    def _too_large(self) -> web.Response:
        return _error(413, f"body larger than server.max_body_bytes ({self.max_body_bytes})")

    def _bad_request(self, exc: PayloadError) -> web.Response:
        if exc.malformed:
            return _error(400, "malformed JSON", detail=exc.message)
        details = [{"path": exc.path, "message": exc.message}]
        return _error(400, f"not {self.dialect.name} payload", details=details)


def build_app(
    receiver: Receiver,
    store: Store,
    metrics: Metrics,
    not_ready: Callable[[], str | None],
    extra_routes: Callable[[web.Application], None] | None = None,
    replicas: Callable[[], Awaitable[dict[str, object]]] | None = None,
) -> web.Application:
    """The aiohttp application with every route."""
    app = web.Application(client_max_size=receiver.max_body_bytes)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        why = not_ready()
        if why is not None:
            return _error(503, f"not ready: {why}")
        try:
            await store.ping()
            seen = await replicas() if replicas is not None else {}
        except StoreError as exc:
            return _error(503, f"not ready: {exc}")
        return web.json_response({"status": "ready", **seen})

    async def metrics_handler(_: web.Request) -> web.Response:
        try:
            async with store.read() as tx:
                metrics.set_incident_counts(await tx.incident_counts())
                metrics.set_quarantined([(q.rule, q.target) for q in await tx.quarantined()])
                metrics.paused.set(1 if (await tx.pause()).paused else 0)
                metrics.dead_letters.set(await tx.dead_letter_count())
            metrics.inbox_pending.set(await store.inbox_pending())
        except StoreError as exc:
            log.warning("metrics: incident counts unavailable", extra={"error": str(exc)})
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    handlers: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
        ("POST", "/webhook/alertmanager", receiver.handle),
        ("POST", "/webhook/grafana", replace(receiver, dialect=GRAFANA).handle),
        ("GET", "/healthz", healthz),
        ("GET", "/readyz", readyz),
        ("GET", "/metrics", metrics_handler),
    ]
    for method, path, handler in handlers:
        app.router.add_route(method, path, handler)
    if extra_routes is not None:
        extra_routes(app)
    return app
