"""The retention pass: the store keeps what the daemon still needs and forgets the rest.

What goes, every 10 minutes (the first pass a minute after start):

- Incidents closed longer than `store.retention` ago (default 90 days), with every row
  of theirs: steps, approvals and votes, escalation, work and holds, audit, outbox,
  Slack message refs. Open incidents and their rows never go, nor a closed incident
  with work or a notification still pending. The retention is stretched to the longest
  `max_runs` window of the running rules, whose guard counts past steps.
- Alert instances (fingerprint x startsAt) that no open incident belongs to, once
  deduplication no longer needs them: resolved ones a day after they resolved
  (Alertmanager re-sends a resolved alert until one notification carrying it succeeds,
  then forgets it), firing ones after `retention` without a change (Alertmanager re-sends
  firing alerts every repeat_interval, so a still-firing alert must stay known, or a
  rule added since would take it up as new). If one comes back after all, it is stored
  as new and changes nothing: incidents are unique per rule and alert instance.
- Audit rows and delivered notifications of no incident (pause, reload...) older than
  `retention`; cooldowns that ended before it; replicas (heartbeat rows) not seen for a
  day.

Deletes run in transactions of at most `batch` rows (500) with a pause between them,
so intake, which takes the same write lock in turn, waits for one small batch at most.
Afterwards `remediator_store_rows{table}` is refreshed with one count per table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from remediator.clock import Clock
from remediator.config.models import DAY_S, Config
from remediator.errors import StoreError
from remediator.metrics import Metrics
from remediator.store.base import Store
from remediator.store.prunetx import INCIDENT_TABLES

if TYPE_CHECKING:
    from remediator.engine.context import EngineContext

log = logging.getLogger(__name__)
BATCH = 500
INCIDENTS_PER_ROUND = 100
RESOLVED_KEEP_S = DAY_S
REPLICA_KEEP_S = DAY_S  # a replica gone this long is forgotten
INTERVAL_S = 600.0
FIRST_PASS_S = 60.0
PAUSE_S = 0.01
# Tables pruned one row at a time per batch, not per incident.
_BOUNDED = frozenset({"holds", "work", "audit", "outbox", "steps", "approvals"})


def keep_s(config: Config) -> float:
    """How long closed incidents stay: the retention, or the longest max_runs window."""
    windows = [r.max_runs.window_s for r in config.rules if r.max_runs is not None]
    return max([config.file.store.retention, *windows])


class Pruner:
    """Deletes what the store no longer needs, a small batch per transaction."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        keep: Callable[[], float],
        *,
        batch: int = BATCH,
        pause_s: float = PAUSE_S,
    ) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.keep = keep
        self.batch = batch
        self.pause_s = pause_s
        self._stopping: asyncio.Event | None = None

    @classmethod
    def for_context(cls, ctx: EngineContext) -> Pruner:
        """A pruner on the engine's store, following its config through reloads."""
        return cls(ctx.store, ctx.clock, ctx.metrics, lambda: keep_s(ctx.config))

    async def loop(self, stopping: asyncio.Event, first_s: float = FIRST_PASS_S) -> None:
        """A pass shortly after start, then every 10 minutes, until `stopping`."""
        self._stopping = stopping
        delay = first_s
        while not await _wait(stopping, delay):
            delay = INTERVAL_S
            try:
                await self.prune_once(self.clock.now())
            except StoreError as exc:
                log.error("retention: store error", extra={"error": str(exc)})
            except Exception:  # a bug here must not take the daemon down; next pass retries
                log.exception("retention pass failed")

    async def prune_once(self, now: float) -> dict[str, int]:
        """One pass; returns the rows deleted per table (tables with none left out)."""
        keep = self.keep()
        deleted: Counter[str] = Counter()
        await self._incidents(now - keep, deleted)
        await self._alerts("resolved", now - RESOLVED_KEEP_S, deleted)
        await self._alerts("firing", now - keep, deleted)
        await self._global(now - keep, deleted)
        async with self.store.write() as tx:
            deleted["replicas"] += await tx.delete_replicas(now - REPLICA_KEEP_S)
        async with self.store.read() as tx:
            sizes = await tx.table_sizes()
        for table, rows in sizes.items():
            self.metrics.store_rows.labels(table=table).set(rows)
        gone = {table: rows for table, rows in deleted.items() if rows}
        for table, rows in gone.items():
            self.metrics.store_pruned.labels(table=table).inc(rows)
        if gone:
            log.info("retention pass", extra={"deleted": gone})
        return gone

    async def _incidents(self, closed_before: float, deleted: Counter[str]) -> None:
        while not self._stopped():
            async with self.store.read() as tx:
                ids = await tx.prunable_incidents(closed_before, INCIDENTS_PER_ROUND)
            if not ids:
                return
            for table in INCIDENT_TABLES:
                limit = self.batch if table in _BOUNDED else None
                while not self._stopped():
                    async with self.store.write() as tx:
                        rows = await tx.delete_incident_rows(table, ids, limit)
                    deleted[table] += rows
                    await self._pause()
                    if limit is None or rows < limit:
                        break
            if self._stopped():
                return
            async with self.store.write() as tx:
                deleted["incidents"] += await tx.delete_incidents(ids, closed_before)
            await self._pause()

    async def _alerts(self, status: str, updated_before: float, deleted: Counter[str]) -> None:
        while not self._stopped():
            async with self.store.write() as tx:
                rows = await tx.delete_alerts(status, updated_before, self.batch)
            deleted["alerts"] += rows
            await self._pause()
            if rows < self.batch:
                return

    async def _global(self, before: float, deleted: Counter[str]) -> None:
        for table in ("audit", "outbox", "dead_letters"):
            while not self._stopped():
                async with self.store.write() as tx:
                    if table == "audit":
                        rows = await tx.delete_global_audit(before, self.batch)
                    elif table == "outbox":
                        rows = await tx.delete_global_outbox(before, self.batch)
                    else:
                        rows = await tx.delete_global_dead_letters(before, self.batch)
                deleted[table] += rows
                await self._pause()
                if rows < self.batch:
                    break
        async with self.store.write() as tx:
            deleted["cooldowns"] += await tx.delete_cooldowns(before)

    def _stopped(self) -> bool:
        return self._stopping is not None and self._stopping.is_set()

    async def _pause(self) -> None:
        # Let whoever waits for the write lock (intake, the runner) go first.
        await asyncio.sleep(self.pause_s)


async def _wait(event: asyncio.Event, timeout_s: float) -> bool:
    """Whether `event` was set within `timeout_s`."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout_s)
    return event.is_set()
