"""Block Kit button clicks (Approve, Deny, Acknowledge): POST /slack/interactions, or over
Socket Mode (slacksocket.py), decided the same way by ClickDecisions.

The request is verified (Slack's `v0` signature over `v0:{timestamp}:{raw body}`, a
5-minute window, constant-time comparison) before anything is parsed. The decision is
recorded in one store transaction; Slack gets its 200 within 3 s even if the store is
slow (the decision then finishes in the background). Replies to the clicking user (a
refusal, a redundant click) go out through the outbox as ephemeral messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from remediator.engine import approvals
from remediator.engine.context import EngineContext
from remediator.engine.decisions import Outcome, Voter
from remediator.engine.notices import ephemeral
from remediator.errors import StoreError
from remediator.parsing import MAX_EPOCH_S, MAX_ID, whole_number
from remediator.store.conflict import retry_conflict

log = logging.getLogger(__name__)
WINDOW_S = 300
MAX_BODY = 64 * 1024
ANSWER_WITHIN_S = 2.5


def verify_signature(
    secret: bytes, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> str | None:
    """None when the request is Slack's; otherwise why not."""
    sent_at = whole_number(timestamp, int(MAX_EPOCH_S))
    if timestamp is None or sent_at is None:
        return "missing or non-numeric X-Slack-Request-Timestamp (epoch seconds, ASCII digits)"
    if abs(now - sent_at) > WINDOW_S:
        return "X-Slack-Request-Timestamp is outside the 5-minute window"
    if not signature:
        return "missing X-Slack-Signature"
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return "signature does not match"
    return None


@dataclass(frozen=True)
class Click:
    """One button click from a block_actions payload."""

    action_id: str
    value: str
    user: str
    channel: str


def parse_click(body: bytes) -> Click:
    """The click in a form-encoded `payload=`; ValueError when it is not one."""
    form = parse_qs(body.decode("utf-8"), strict_parsing=False)
    raw = form.get("payload", [""])[0]
    try:
        payload: Any = json.loads(raw)
    except RecursionError:
        raise ValueError("payload nested too deeply") from None
    return click_of(payload)


def click_of(payload: Any) -> Click:
    """The click in a decoded interaction payload (HTTP or Socket Mode); ValueError if none."""
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise ValueError("not a block_actions payload")
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise ValueError("no action in the payload")
    user = payload.get("user") or {}
    channel = payload.get("channel") or {}
    return Click(
        action_id=_text(actions[0].get("action_id", "")),
        value=_text(actions[0].get("value", "")),
        user=_text(user.get("id", "")) if isinstance(user, dict) else "",
        channel=_text(channel.get("id", "")) if isinstance(channel, dict) else "",
    )


def _text(value: Any) -> str:
    """A payload field as text the store can hold (json.loads lets `\\ud800` through)."""
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not UTF-8 (a lone surrogate)") from None
    return text


@dataclass
class ClickDecisions:
    """Decides clicks, however they arrived, through engine.approvals like the API's."""

    ctx: EngineContext
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    def submit(self, click: Click) -> asyncio.Task[None] | None:
        """Start deciding `click`; None when it is no decision of ours (a link button or
        another app's action); ValueError when its value is no approval id."""
        if click.action_id not in ("approve", "deny", "ack"):
            return None
        approval_id = whole_number(click.value, MAX_ID, least=1)
        if approval_id is None:
            shown = json.dumps(click.value[:40])
            raise ValueError(f"button value {shown} is not an id (ASCII digits, 1 to 2^63-1)")
        task = asyncio.create_task(self._decide(click, approval_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _record(self, click: Click, approval_id: int) -> Outcome:
        async with self.ctx.store.write() as tx:
            now = self.ctx.clock.now()
            voter = Voter.person(click.user, "slack")
            if click.action_id == "ack":
                outcome = await approvals.acknowledge(self.ctx, tx, approval_id, voter, now)
            else:
                outcome = await approvals.decide(
                    self.ctx, tx, approval_id, voter, click.action_id, None, now
                )
            if not outcome.changed:  # the message itself shows a click that did something
                await ephemeral(self.ctx, tx, click.channel, click.user, outcome.message, now)
            return outcome

    async def _decide(self, click: Click, approval_id: int) -> None:
        try:
            # Another replica wrote the incident first (PostgreSQL aborted this one): the
            # click is decided again on what it committed, not dropped.
            outcome = await retry_conflict(partial(self._record, click, approval_id))
        except StoreError as exc:
            log.error("slack click not recorded", extra={"error": str(exc), "user": click.user})
            return
        except Exception:  # a bug: this click fails alone, on record; Slack still gets its 200
            self.ctx.metrics.poison_items.labels(loop="slack").inc()
            log.exception("slack click failed", extra={"user": click.user, "id": approval_id})
            return
        log.info(
            "slack click",
            extra={"action": click.action_id, "user": click.user, "result": outcome.message},
        )

    async def close(self) -> None:
        """Let decisions in flight finish."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=10)


@dataclass
class SlackInteractions:
    """The HTTP handler (slack.mode: http): verify the signature, then decide."""

    decisions: ClickDecisions
    signing_secret: bytes

    async def handle(self, request: web.Request) -> web.Response:
        """Verify, parse, decide (in the background past ANSWER_WITHIN_S)."""
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _error(413, f"body larger than {MAX_BODY} bytes")
        body = await request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return _error(413, f"body larger than {MAX_BODY} bytes")
        problem = verify_signature(
            self.signing_secret,
            request.headers.get("X-Slack-Request-Timestamp"),
            request.headers.get("X-Slack-Signature"),
            body,
            self.decisions.ctx.clock.now(),
        )
        if problem is not None:
            log.warning("slack interaction refused", extra={"reason": problem})
            return _error(401, problem)
        try:
            click = parse_click(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, f"not a Slack block_actions payload: {exc}")
        try:
            task = self.decisions.submit(click)
        except ValueError as exc:
            return _error(400, str(exc))
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), ANSWER_WITHIN_S)
        return web.Response(status=200)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
