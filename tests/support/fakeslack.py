"""A local fake of the Slack Web API: chat.postMessage / chat.update / chat.postEphemeral,
and Socket Mode (apps.connections.open and the websocket it hands out, speaking Slack's
envelopes: `hello`, `interactive` envelopes the test sends, the client's acks).

It speaks Slack's HTTP shape (JSON bodies, `ok`, `error`, 429 with Retry-After), checks
the bot token, records every call, and can be told to fail. slack-sdk's client makes
real HTTP calls to it; only Slack itself cannot be reached from here.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

APP_TOKEN = "xapp-1-A0TEST-1-test"


@dataclass
class Call:
    """One recorded API call."""

    method: str
    body: dict[str, Any]
    answer: dict[str, Any] = field(default_factory=dict)  # what a success answered
    at: float = field(default_factory=time.monotonic)


@dataclass
class FakeSlack:
    """Runs on its own thread and loop (so sync tests and child daemons can reach it).

    `FakeSlack.start(token)`; `api_url` goes into remediator.yml; `close()` at the end.
    """

    token: str
    calls: list[Call] = field(default_factory=list)
    # What to answer instead of success: ("status", 500) / ("error", "channel_not_found")
    # / ("ratelimited", seconds); consumed per call while `failures` > 0 (None: forever).
    fail: tuple[str, Any] | None = None
    failures: int | None = None
    port: int = 0
    app_token: str = APP_TOKEN
    sockets_opened: int = 0
    acks: list[str] = field(default_factory=list)  # envelope ids the client acknowledged
    refuse_sockets: bool = False  # apps.connections.open answers an error while set
    socket_delay_s: float = 0.0  # a websocket handshake this slow (Slack's is not instant)
    _sockets: list[tuple[web.WebSocketResponse, Any]] = field(default_factory=list)
    _envelopes: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    @classmethod
    def start(cls, token: str) -> FakeSlack:
        fake = cls(token)
        ready = threading.Event()
        fake._thread = threading.Thread(target=fake._serve, args=(ready,), daemon=True)
        fake._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake Slack did not start")
        return fake

    def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/api/apps.connections.open", self._open_connection)
        app.router.add_post("/api/{method}", self._handle)
        app.router.add_get("/link/", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def close(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def wait_for(self, what: str, check: Callable[[], Any], timeout_s: float = 20) -> Any:
        """Poll (blocking) until `check()` is truthy."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if value := check():
                return value
            time.sleep(0.05)
        raise AssertionError(f"fake Slack: timed out waiting for {what}; calls: {self.calls}")

    def failing(self, kind: str, value: Any, times: int | None = None) -> None:
        self.fail, self.failures = (kind, value), times

    def healthy(self) -> None:
        self.fail, self.failures = None, None

    def of(self, method: str) -> list[dict[str, Any]]:
        """The bodies of recorded calls to `method`."""
        return [c.body for c in self.calls if c.method == method]

    # Socket Mode ----------------------------------------------------------------------

    async def _open_connection(self, request: web.Request) -> web.Response:
        """apps.connections.open: a websocket URL for the app-level token."""
        if request.headers.get("Authorization") != f"Bearer {self.app_token}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        self.calls.append(Call("apps.connections.open", {}))
        if self.refuse_sockets:
            return web.json_response({"ok": False, "error": "internal_error"})
        url = f"ws://127.0.0.1:{self.port}/link/?ticket={len(self.calls)}"
        return web.json_response({"ok": True, "url": url})

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        await asyncio.sleep(self.socket_delay_s)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.sockets_opened += 1
        self._sockets.append((ws, request.transport))
        await ws.send_json({"type": "hello", "num_connections": 1, "debug_info": {}})
        async for message in ws:
            if message.type.name == "TEXT":
                envelope_id = json.loads(message.data).get("envelope_id")
                if envelope_id:
                    self.acks.append(envelope_id)
        self._sockets = [(w, t) for w, t in self._sockets if w is not ws]
        return ws

    def sockets_open(self) -> int:
        return sum(1 for ws, _ in self._sockets if not ws.closed)

    def send_envelope(self, payload: dict[str, Any], envelope_id: str | None = None) -> str:
        """Send an `interactive` envelope on the newest open socket; its id."""
        eid = envelope_id or f"env-{next(self._envelopes)}"
        envelope = {
            "envelope_id": eid,
            "type": "interactive",
            "payload": payload,
            "accepts_response_payload": False,
        }

        async def send() -> None:
            ws = next(w for w, _ in reversed(self._sockets) if not w.closed)
            await ws.send_json(envelope)

        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(send(), self._loop).result(10)
        return eid

    def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Slack's notice that it will close this socket soon: the client opens a new one."""

        async def send() -> None:
            ws = next(w for w, _ in reversed(self._sockets) if not w.closed)
            await ws.send_json({"type": "disconnect", "reason": reason, "debug_info": {}})

        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(send(), self._loop).result(10)

    def drop_sockets(self) -> None:
        """Cut every open socket at the TCP level (no close frame), as a network drop does."""

        async def drop() -> None:
            for _, transport in self._sockets:
                if transport is not None:
                    transport.abort()

        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(drop(), self._loop).result(10)

    # Web API --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        body = await request.json()
        call = Call(method, body)
        self.calls.append(call)
        if self.fail is not None and (self.failures is None or self.failures > 0):
            if self.failures is not None:
                self.failures -= 1
            kind, value = self.fail
            if kind == "status":
                return web.Response(status=value, text="upstream error")
            if kind == "ratelimited":
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(value)},
                )
            return web.json_response({"ok": False, "error": value})
        if method == "chat.postMessage":
            channel = body["channel"]
            channel_id = "C" + hashlib.sha1(channel.encode()).hexdigest()[:8].upper()  # noqa: S324
            ts = f"{int(time.time())}.{next(self._ts):06d}"
            call.answer = {"channel": channel_id, "ts": ts}
            return web.json_response(
                {"ok": True, **call.answer, "message": {"text": body.get("text", "")}}
            )
        if method == "chat.update":
            return web.json_response({"ok": True, "channel": body["channel"], "ts": body["ts"]})
        if method == "chat.postEphemeral":
            return web.json_response({"ok": True, "message_ts": "1.000001"})
        return web.json_response({"ok": False, "error": "unknown_method"})


def click_body(action_id: str, value: str, user: str, channel: str = "C0APPROVAL") -> bytes:
    """A block_actions interaction payload as Slack posts it (form-encoded)."""
    payload = click_payload(action_id, value, user, channel)
    return urlencode({"payload": json.dumps(payload)}).encode()


def click_payload(
    action_id: str, value: str, user: str, channel: str = "C0APPROVAL"
) -> dict[str, Any]:
    """A block_actions interaction payload (what a Socket Mode envelope carries)."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower()},
        "channel": {"id": channel},
        "actions": [{"action_id": action_id, "value": value, "type": "button"}],
        "response_url": "https://hooks.slack.invalid/actions/1",
        "trigger_id": "1.2.3",
    }


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack would send for `body`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = f"v0:{ts}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
