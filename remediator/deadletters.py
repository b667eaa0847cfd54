"""Dead letters: an item a loop fails on is kept, audited, counted, and its incident paged.

Job queues keep failed jobs apart (arq, Celery, Sidekiq); so does remediator. An
unexpected exception while handling one item (a webhook body, an alert, a work row, an
outbox row) must neither end the loop nor come back to fail it again: the item is
marked failed in the same transaction that stores the dead letter, and an incident it
belonged to goes to humans through its escalation chain.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from remediator.clock import Clock
from remediator.errors import StoreError
from remediator.metrics import Metrics
from remediator.store.base import Store, Tx
from remediator.store.events import PoisonItem

log = logging.getLogger(__name__)
MAX_ERROR_CHARS = 500

Mark = Callable[[Tx, float], Awaitable[None]]
Escalate = Callable[[Tx, int, str, float], Awaitable[None]]


def describe(exc: BaseException) -> str:
    """`Type: message`, bounded: what the audit, the log and the page say went wrong."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


@dataclass
class DeadLetters:
    """Where every loop puts the item it failed on."""

    store: Store
    metrics: Metrics
    clock: Clock
    escalate: Escalate | None = None  # hands an incident to humans (the engine sets it)

    async def bury(
        self,
        loop: str,
        item: str,
        exc: BaseException,
        *,
        incident_id: int | None = None,
        payload: Any = None,
        mark: Mark | None = None,
        settle: Mark | None = None,
    ) -> None:
        """Keep `item` as a dead letter: `mark` retires it, `settle` does what the item
        would have done that must not be lost (the next page of a chain), and its incident
        goes to humans, all in one transaction, so no crash can leave the incident behind.
        Should settling or the hand-over raise too, the dead letter is kept without them.

        Raises StoreError when the store cannot record it: the caller's item then stays
        where it was (an unacknowledged webhook, a claim whose lease lapses).
        """
        error = describe(exc)
        self.metrics.poison_items.labels(loop=loop).inc()
        log.error(
            "%s loop: %s failed; kept as a dead letter, the loop goes on",
            loop,
            item,
            exc_info=exc,
            extra={"loop": loop, "item": item, "incident": incident_id, "error": error},
        )
        letter = (loop, item, incident_id, error, payload)
        try:
            await self._keep(letter, mark, settle, hand_over=True)
        except StoreError:
            raise
        except Exception:
            log.exception("%s: settling its incident failed too; kept without", item)
            await self._keep(letter, mark, None, hand_over=False)

    async def _keep(
        self,
        letter: tuple[str, str, int | None, str, Any],
        mark: Mark | None,
        settle: Mark | None,
        *,
        hand_over: bool,
    ) -> None:
        loop, item, incident_id, error, payload = letter
        async with self.store.write() as tx:
            now = self.clock.now()
            if incident_id is not None:
                # Locked before the item's row, in the order every decision on an incident
                # takes them (the hand-over below locks it anyway): no deadlock with an ack.
                await tx.incident(incident_id)
            if mark is not None:
                await mark(tx, now)
            await tx.dead_letter(loop, item, incident_id, error, payload, now)
            await tx.audit(incident_id, PoisonItem(loop, item, error), now)
            if settle is not None:
                await settle(tx, now)
            if hand_over and incident_id is not None and self.escalate is not None:
                await self.escalate(
                    tx, incident_id, f"internal error in the {loop} loop: {error}", now
                )

    async def hand_over(self, incident_id: int, reason: str) -> None:
        """Page humans for an incident automation could not carry on, in a transaction of
        its own; never raises but StoreError (a failure here is logged)."""
        if self.escalate is None:
            return
        escalate = self.escalate
        try:
            async with self.store.write() as tx:
                await escalate(tx, incident_id, reason, self.clock.now())
        except StoreError:
            raise
        except Exception:
            log.exception("could not hand incident %s to its escalation chain", incident_id)
