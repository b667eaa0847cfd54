"""Slack Socket Mode (slack.mode: socket): button clicks without a public endpoint.

The daemon opens the websocket itself (slack-sdk's aiohttp Socket Mode client, with the
app-level token), acknowledges each envelope at once, and hands its click to the same
ClickDecisions as POST /slack/interactions: same approver checks, same idempotence, same
answers to late clicks. The websocket is authenticated by the token that opened it, so
there is no signature to check; who clicked is still checked against the approvers.

Reconnection is this module's alone: the SDK's own (its retries every ping interval, and
the new socket it opens on Slack's `disconnect` message) is turned off, so there is only
ever one socket, and every envelope Slack sends arrives where it is read. A dropped or
stale socket, or a `disconnect` from Slack, is replaced at once; while replacing fails
the wait doubles from `reconnect_min` to `reconnect_max`.
`remediator_slack_socket_connected` shows the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from remediator.metrics import Metrics
from remediator.slackapp import ANSWER_WITHIN_S, ClickDecisions, click_of

log = logging.getLogger(__name__)
CHECK_S = 0.5  # how often the connection's state is looked at (local checks only)
SEEN = 1000  # envelope ids remembered: Slack redelivers one it saw no ack for


@dataclass(frozen=True)
class SocketSettings:
    """What the Socket Mode link needs from `slack:`."""

    app_token: str
    api_url: str
    timeout_s: float
    ping_s: float
    reconnect_min_s: float
    reconnect_max_s: float


class _Client(SocketModeClient):
    """The SDK's client with its reconnecting handed to SlackSocket.loop."""

    on_reconnect_wanted: Callable[[], None] = staticmethod(lambda: None)

    async def connect_to_new_endpoint(self, force: bool = False) -> None:
        # Called by the SDK on Slack's `disconnect` message (and on drops, were its
        # auto-reconnect on): the loop replaces the socket, closing this one first.
        self.on_reconnect_wanted()


class SlackSocket:
    """One Socket Mode connection, kept up until `loop`'s stop event is set."""

    def __init__(self, decisions: ClickDecisions, settings: SocketSettings, metrics: Metrics):
        self.decisions = decisions
        self.settings = settings
        self.metrics = metrics
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._wake = asyncio.Event()
        self._replace = False  # Slack asked for a new socket (`disconnect`)

    async def loop(self, stopping: asyncio.Event) -> None:
        """Connect, and reconnect whenever the socket is down, until `stopping`."""
        s = self.settings
        web = AsyncWebClient(token=None, base_url=s.api_url, timeout=int(max(1, s.timeout_s)))
        client = _Client(
            app_token=s.app_token,
            web_client=web,
            auto_reconnect_enabled=False,
            ping_interval=s.ping_s,
            logger=logging.getLogger("remediator.slacksocket.sdk"),
        )
        client.on_reconnect_wanted = self._replace_socket
        client.socket_mode_request_listeners.append(self._on_request)
        client.on_close_listeners.append(self._on_close)
        client.on_error_listeners.append(self._on_close)
        delay = s.reconnect_min_s
        try:
            while not stopping.is_set():
                if not self._replace and await client.is_connected():
                    self.metrics.slack_socket_connected.set(1)
                    await _wait_any(stopping, self._wake, CHECK_S)
                    self._wake.clear()
                    continue
                self.metrics.slack_socket_connected.set(0)
                self._replace = False
                try:
                    await self._connect(client)
                except Exception as exc:  # Slack unreachable, a refused token: try again
                    log.warning(
                        "slack socket: cannot connect; retrying",
                        extra={"error": f"{type(exc).__name__}: {exc}", "retry_in_s": delay},
                    )
                    await _wait_any(stopping, None, delay)
                    delay = min(delay * 2, s.reconnect_max_s)
                    continue
                delay = s.reconnect_min_s
                self.metrics.slack_socket_connects.inc()
                log.info("slack socket: connected")
        finally:
            self.metrics.slack_socket_connected.set(0)
            await client.close()  # type: ignore[no-untyped-call]  # slack-sdk: untyped

    async def _connect(self, client: SocketModeClient) -> None:
        """A fresh URL (apps.connections.open) and a websocket to it, within the timeout;
        the SDK's connect() closes the socket it replaces first."""
        timeout = self.settings.timeout_s
        async with client.connect_operation_lock:
            client.wss_uri = await asyncio.wait_for(client.issue_new_wss_url(), timeout)
            # The SDK's connect() retries a failing websocket by itself, forever: bounded
            # here, so the backoff above is the one that applies.
            await asyncio.wait_for(client.connect(), timeout)  # type: ignore[no-untyped-call]
        receiver = client.message_receiver
        if receiver is None or receiver.done() or not await client.is_connected():
            # Cut short between opening the socket and starting its reader: nothing would
            # read it, so it must not count as connected.
            await client.disconnect()  # type: ignore[no-untyped-call]
            raise ConnectionError("the websocket closed as it opened, or has no reader")

    def _replace_socket(self) -> None:
        self._replace = True
        self._wake.set()

    async def _on_close(self, *_: object) -> None:
        self._wake.set()  # look at the connection now, not at the next check

    async def _on_request(
        self, client: AsyncBaseSocketModeClient, request: SocketModeRequest
    ) -> None:
        # Acknowledged whatever it holds (an envelope Slack sees no ack for within 3 s is
        # sent again, and a bad one would come back for ever), and after its decision is
        # stored when that takes under ANSWER_WITHIN_S, as /slack/interactions answers.
        try:
            self.metrics.slack_socket_envelopes.labels(type=str(request.type)[:40]).inc()
            task = self._decide(request)
            if task is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), ANSWER_WITHIN_S)
        finally:
            await client.send_socket_mode_response(SocketModeResponse(request.envelope_id))

    def _decide(self, request: SocketModeRequest) -> asyncio.Task[None] | None:
        if request.envelope_id in self._seen:
            return None  # redelivered: decided (or being decided) already
        self._seen[request.envelope_id] = None
        if len(self._seen) > SEEN:
            self._seen.popitem(last=False)
        if request.type != "interactive":
            return None  # events and slash commands: this app asks for none
        try:
            return self.decisions.submit(click_of(request.payload))
        except ValueError as exc:
            log.warning("slack socket: envelope refused", extra={"reason": str(exc)})
            return None


async def _wait_any(stopping: asyncio.Event, wake: asyncio.Event | None, for_s: float) -> None:
    """Until `stopping` or `wake` is set, or `for_s` seconds."""
    waits = [asyncio.ensure_future(stopping.wait())]
    if wake is not None:
        waits.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waits, timeout=for_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await w
