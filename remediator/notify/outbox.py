"""Delivers the outbox: each notification retried (tenacity, then durable backoff), never lost.

A row is claimed with a lease, delivered outside any transaction, then marked sent. A
crash in between delivers it again after the lease (at least once; emails keep their
Message-ID so a receiver can drop the duplicate). Slack pages that cannot be delivered
after `notifications.slack_attempts` go to `email.fallback_to`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from remediator.actions.approval import policy_of
from remediator.clock import Clock
from remediator.config.models import Config
from remediator.deadletters import DeadLetters, describe
from remediator.errors import DeliveryError, StoreError
from remediator.metrics import Metrics
from remediator.notify.email import EmailSender, page_email
from remediator.notify.slack import SlackSender
from remediator.notify.slackmsg import approval_message, incident_message, page_message
from remediator.notify.views import IncidentView, load_approval, load_incident
from remediator.store.base import Store
from remediator.store.events import NotificationFailed, Notified
from remediator.store.payloads import (
    Email,
    SlackPost,
    SlackSync,
    SlackThread,
    Unreadable,
    fallback_email,
    to_json,
)
from remediator.store.records import OutboxItem, OutboxKind

log = logging.getLogger(__name__)
BATCH = 16
LEASE_S = 120.0
ATTEMPTS = 2  # in place, before the row's durable backoff
CALLS_PER_ROW = 2  # a thread reply may first post its incident's message
BACKOFF_MAX_S = 2.0
# Deliveries whose failure falls back to email: pages and approval requests.
FALLS_BACK = frozenset({OutboxKind.SLACK_POST, OutboxKind.SLACK_SYNC})


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, DeliveryError) and not exc.permanent and exc.retry_after is None


class Gone(Exception):
    """What the notification was about no longer exists: nothing to deliver."""


class PayloadError(Exception):
    """A stored payload is not its kind's type: the row is kept as a dead letter."""


@dataclass
class Outbox:
    """The delivery worker."""

    store: Store
    config: Config
    clock: Clock
    metrics: Metrics
    slack: SlackSender | None
    email: EmailSender | None
    ready: asyncio.Event  # set by whoever queues a notification (EngineContext.outbox_ready)
    dead: DeadLetters | None = None  # where a row that raises goes (built when not given)
    # Whose claims this worker's are (the daemon passes its engine's owner id, so work and
    # outbox rows name one replica).
    owner: str = field(default_factory=lambda: f"outbox-{uuid.uuid4().hex[:12]}")

    def __post_init__(self) -> None:
        self._url = self.config.file.server.external_url
        if self.dead is None:
            self.dead = DeadLetters(self.store, self.metrics, self.clock)

    async def recover(self) -> None:
        """On start: free claims a dead process left, when the store is ours alone (SQLite);
        on a shared one another replica may hold them: they expire by their lease."""
        if self.store.exclusive:
            async with self.store.write() as tx:
                await tx.release_outbox_claims()
        self.ready.set()

    def row_bound_s(self) -> float:
        """The longest one row's delivery may take: its attempts, each of up to two calls
        within its channel's timeout, and the back-off between them."""
        f = self.config.file
        timeout = max(f.slack.timeout if f.slack else 0.0, f.email.timeout if f.email else 0.0)
        return ATTEMPTS * CALLS_PER_ROW * timeout + BACKOFF_MAX_S

    def lease_s(self) -> float:
        """How long a claimed batch is this replica's: at least two rows' worst case."""
        return max(LEASE_S, 2 * self.row_bound_s())

    async def deliver_due(self, stopping: asyncio.Event | None = None) -> int:
        """Deliver everything due now (`stopping`: only the batch already claimed); returns
        how many rows were handled."""
        handled = 0
        while stopping is None or not stopping.is_set():
            claimed_at, lease = self.clock.now(), self.lease_s()
            async with self.store.write() as tx:
                items = await tx.claim_outbox(claimed_at, self.owner, BATCH, lease)
            if not items:
                return handled
            for item in items:
                if self.clock.now() + self.row_bound_s() > claimed_at + lease:
                    # Slow deliveries ate the lease: another replica may take the rest of
                    # the batch once it ends, and delivering them here too would post twice.
                    log.warning("outbox: lease running out; rest of the batch left to it")
                    return handled
                try:
                    await self._deliver(item)
                except StoreError:
                    raise
                except Exception as exc:
                    await self._poisoned(item, exc)
                handled += 1
        return handled

    async def loop(self, stopping: asyncio.Event, poll_s: float = 1.0) -> None:
        """Deliver as rows become due, until `stopping`."""
        while not stopping.is_set():
            try:
                await self.deliver_due(stopping)
                async with self.store.read() as tx:
                    due = await tx.next_outbox_due()
                    self.metrics.outbox_pending.set(await tx.outbox_pending())
            except StoreError as exc:
                log.error("outbox: store error", extra={"error": str(exc)})
                due = None
            wait = poll_s if due is None else min(poll_s, max(0.0, due - self.clock.now()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ready.wait(), wait)
            self.ready.clear()

    async def _deliver(self, item: OutboxItem) -> None:
        channel = "email" if item.kind is OutboxKind.EMAIL else "slack"
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(2),
                wait=wait_exponential(multiplier=0.2, max=2),
                retry=retry_if_exception(_transient),
                reraise=True,
            ):
                with attempt:
                    await self._send(item)
        except Gone as exc:
            async with self.store.write() as tx:
                await tx.outbox_sent(item.id, self.clock.now())
            log.info("outbox: nothing to deliver", extra={"outbox": item.id, "why": str(exc)})
            return
        except DeliveryError as exc:
            self.metrics.notifications.labels(channel=channel, result="error").inc()
            await self._failed(item, exc)
            return
        self.metrics.notifications.labels(channel=channel, result="sent").inc()
        async with self.store.write() as tx:
            now = self.clock.now()
            await tx.outbox_sent(item.id, now)
            if item.kind in (OutboxKind.SLACK_POST, OutboxKind.EMAIL) and item.incident_id:
                notified = Notified(item.kind.value, item.target, item.attempts)
                await tx.audit(item.incident_id, notified, now)

    async def _poisoned(self, item: OutboxItem, exc: Exception) -> None:
        """A row that raised (a bug, or content nothing foresaw): never delivered again.

        It is given up like an undeliverable one, so a page still falls back to email
        (built anew, and buried in turn if that raises too), then kept as a dead letter.
        """
        assert self.dead is not None
        given_up = DeliveryError(f"internal error: {describe(exc)}", permanent=True)
        try:
            await self._failed(item, given_up)
        except StoreError:
            raise
        except Exception:
            log.exception("outbox: giving up row %s failed too", item.id)
        await self.dead.bury(
            "outbox",
            f"outbox:{item.id}",
            exc,
            incident_id=item.incident_id,
            payload={"kind": item.kind.value, "to": item.target},
            mark=lambda tx, now: tx.outbox_failed(item.id, now, describe(exc)),
        )

    async def _failed(self, item: OutboxItem, exc: DeliveryError) -> None:
        n = self.config.file.notifications
        now = self.clock.now()
        is_slack = item.kind is not OutboxKind.EMAIL
        out_of_attempts = item.attempts >= n.slack_attempts if is_slack else False
        too_old = now - item.created_at >= n.give_up_after
        if not (exc.permanent or out_of_attempts or too_old):
            backoff = min(n.retry_max, n.retry_min * 2 ** (item.attempts - 1))
            due = now + max(backoff, exc.retry_after or 0.0)
            async with self.store.write() as tx:
                await tx.outbox_retry(item.id, self.owner, due, str(exc))
            log.warning(
                "notification not delivered; will retry",
                extra={"outbox": item.id, "kind": item.kind.value, "error": str(exc), "due": due},
            )
            return
        async with self.store.write() as tx:
            if item.incident_id is not None:
                # The incident before the row (whose dedup key an ack's update of the same
                # message waits on): the audit row below needs the incident's lock anyway.
                await tx.incident(item.incident_id)
            await tx.outbox_failed(item.id, now, str(exc))
            fallback = self._fallback_to(item)
            email = fallback_email(item.payload, str(exc)) if fallback else None
            if email is not None:
                for address in fallback:
                    await tx.enqueue(
                        address,
                        email,
                        item.incident_id,
                        now,
                        dedup_key=f"fallback:{item.id}:{address}",
                    )
            failed = NotificationFailed(
                item.kind.value,
                item.target,
                item.attempts,
                str(exc),
                fallback if email is not None else None,
            )
            if item.incident_id is not None:
                await tx.audit(item.incident_id, failed, now)
        self.metrics.notifications.labels(
            channel="email" if item.kind is OutboxKind.EMAIL else "slack", result="failed"
        ).inc()
        log.error("notification given up", extra={"outbox": item.id, **to_json(failed)})
        self.ready.set()

    def _fallback_to(self, item: OutboxItem) -> list[str]:
        email = self.config.file.email
        if item.kind not in FALLS_BACK or email is None or self.email is None:
            return []
        # The incident message (a SLACK_SYNC of "incident:N") is a status board: its pages
        # fall back themselves, and fallback_email has nothing for it.
        return list(email.fallback_to)

    # --- one delivery -----------------------------------------------------------------

    async def _incident(self, incident_id: int) -> IncidentView:
        async with self.store.read() as tx:
            view = await load_incident(tx, incident_id, self._url)
        if view is None:
            raise Gone(f"incident {incident_id} not found")
        return view

    async def _send(self, item: OutboxItem) -> None:
        p = item.payload
        if isinstance(p, Unreadable):
            raise PayloadError(f"outbox row {item.id} ({item.kind.value}): {p.error}")
        if isinstance(p, Email):
            await self._send_email(item, p)
            return
        slack = self._slack()
        if isinstance(p, SlackPost):
            view = await self._incident(p.incident_id)
            text, blocks = page_message(view, p.reason, p.position)
            await slack.post(item.target.lstrip("@"), text, blocks)
        elif isinstance(p, SlackSync):
            await self._sync(p.key, item.target)
        elif isinstance(p, SlackThread):
            parent = await self._sync(f"incident:{p.incident_id}", item.target, only_if_new=True)
            await slack.post(parent[0], p.text, [], thread_ts=parent[1])
        else:
            await slack.ephemeral(item.target, p.user, p.text)

    def _slack(self) -> SlackSender:
        if self.slack is None:
            raise DeliveryError("slack is not configured (no `slack:` section)", permanent=True)
        return self.slack

    async def _sync(self, key: str, channel: str, only_if_new: bool = False) -> tuple[str, str]:
        """Post the message kept for `key`, or update it in place; returns (channel, ts)."""
        kind, _, ident = key.partition(":")
        if kind == "approval":
            async with self.store.read() as tx:
                approval = await load_approval(tx, int(ident), self._url)
                known = await tx.slack_message(key)
            if approval is None:
                raise Gone(f"approval {ident} not found")
            text, blocks = approval_message(approval)
        else:
            view = await self._incident(int(ident))
            async with self.store.read() as tx:
                known = await tx.slack_message(key)
            text, blocks = incident_message(view)
        slack = self._slack()
        if known is not None:
            if not only_if_new:
                await slack.update(known[0], known[1], text, blocks)
            return known
        where = await slack.post(channel, text, blocks)
        async with self.store.write() as tx:
            await tx.save_slack_message(key, where[0], where[1], self.clock.now())
        return where

    async def _send_email(self, item: OutboxItem, p: Email) -> None:
        if self.email is None:
            raise DeliveryError("email is not configured (no `email:` section)", permanent=True)
        key_kind, _, key_id = (p.key or "").partition(":")
        waiting: Any = None
        if key_kind == "approval":
            view, reason, position, waiting = await self._approval_email(int(key_id), p)
        else:
            incident_id = p.incident_id or (int(key_id) if key_kind == "incident" else None)
            if incident_id is None:
                raise Gone("no incident")
            view = await self._incident(incident_id)
            reason, position = p.reason, p.position
            if p.fallback_for is not None:
                reason = f"{reason} (Slack failed: {p.error or ''})"
        subject, text, html_body = page_email(view, reason, position, waiting)
        domain = self.config.file.email.from_.rpartition("@")[2] if self.config.file.email else "x"
        await self.email.send(item.target, subject, text, html_body, f"<outbox-{item.id}@{domain}>")

    async def _approval_email(
        self, approval_id: int, payload: Email
    ) -> tuple[IncidentView, str, str, Any]:
        """An approval request Slack could not deliver: its command, how to decide without it."""
        async with self.store.read() as tx:
            approval = await load_approval(tx, approval_id, self._url)
        if approval is None:
            raise Gone("approval not found")
        a, view = approval.approval, approval.incident
        reason = (
            f"step {a.step_index + 1} ({a.action}) needs approval ({a.state.value}) by the "
            f"approvers of policy {policy_of(a.command)} to run the command below; Slack "
            f"failed ({payload.error or ''}): decide with "
            f"`remediator approve|deny {view.incident.id}`"
        )
        return view, reason, "approval", a.command
