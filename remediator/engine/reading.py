"""Spooled notifications read for intake: the alerts each one has store work for.

The receiver validated every body before its 200, so each is decoded once here, times
as text, and an `Alert` is built only for the alerts the store has work for: those some
rule matches, and resolves (an alert's rule may have been removed since its incident
opened). A firing alert no rule matches changes nothing (no incident opens, and its
status is not kept: see `Intake._apply`), so it costs a match and no store round trip.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from remediator.alerts import Alert, read_stored
from remediator.config.models import RuleSpec
from remediator.rules import MatchCache, RuleSet
from remediator.store.records import InboxItem

# The rules an alert matched, read with its body; None: matching raised, so the alert is
# matched again in its transaction, where it fails alone (a dead letter) as any other.
Found = tuple[RuleSpec, ...] | None
YIELD_S = 0.005  # reading a take gives the event loop (the receiver) a turn this often


@dataclass(frozen=True)
class Read:
    """One spooled notification as intake needs it."""

    item: InboxItem
    alerts: list[tuple[Alert, Found]]  # the alerts with store work, in body order
    unreadable: str | None = None  # why the body does not read: audited, then dropped
    fault: Exception | None = None  # reading it raised otherwise: a dead letter

    @property
    def work(self) -> int:
        """What it asks of an applying transaction: its alerts, and an unreadable's audit."""
        return len(self.alerts) + (self.unreadable is not None)


def read(item: InboxItem, matches: MatchCache) -> Read:
    """The alerts of one spooled body that the store has work for."""
    try:
        alerts: list[tuple[Alert, Found]] = []
        for sent in read_stored(item.body):
            rules: Found
            try:
                rules = matches(sent.labels, sent.fingerprint)
            except Exception:
                rules = None
            if rules is None or rules or sent.status == "resolved":
                alerts.append((Alert.from_webhook(sent), rules))
        return Read(item, alerts)
    except (ValueError, OverflowError) as exc:  # msgspec's errors are ValueErrors
        # Validated on receipt; only corruption or an older receiver's gap gets here
        # (a time that does not read, in an alert with work). One bad row must not stop
        # the rows behind it.
        return Read(item, [], unreadable=str(exc)[:500])
    except Exception as exc:
        return Read(item, [], fault=exc)


async def read_all(items: list[InboxItem], rules: RuleSet) -> list[Read]:
    """`read` each of a take, matching each distinct label set once; the receiver gets
    the event loop every YIELD_S meanwhile."""
    matches = MatchCache(rules)
    out = []
    turn = time.perf_counter()
    for item in items:
        out.append(read(item, matches))
        if time.perf_counter() - turn >= YIELD_S:
            await asyncio.sleep(0)
            turn = time.perf_counter()
    return out
