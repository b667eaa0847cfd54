"""Group commit of webhook bodies: concurrent requests share one transaction and fsync."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from remediator.deadletters import describe
from remediator.errors import StoreError, StoreUnavailable
from remediator.metrics import Metrics
from remediator.record import Recorder
from remediator.store.base import Store

log = logging.getLogger(__name__)
MAX_BATCH = 256
FLOOD = 4  # webhooks waiting on the store at once: the receiver is saturated
QUIET_S = 0.05  # ...until it has stayed below FLOOD this long (not between two commits)


class Ingestor:
    """`submit` returns once the body is durably stored, or raises StoreUnavailable."""

    def __init__(
        self,
        store: Store,
        on_stored: Callable[[], None],
        recorder: Recorder | None = None,
        metrics: Metrics | None = None,
        on_record_error: Callable[[], None] = lambda: None,
        depth: int = 1,
    ) -> None:
        self._store = store
        self._depth = depth
        self._slots = asyncio.Semaphore(depth)
        self._commits: set[asyncio.Task[None]] = set()
        self._metrics = metrics
        self._on_stored = on_stored
        self._recorder = recorder
        self._on_record_error = on_record_error
        self._pending: list[tuple[float, str, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._in_flight = 0
        self._headroom = asyncio.Event()
        self._headroom.set()
        self._flooded_at = -QUIET_S  # loop time the receiver was last saturated

    async def submit(self, received_at: float, body: str) -> None:
        """Queue a body for the next batch and wait for its commit."""
        if self._closed:
            raise StoreUnavailable("shutting down")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((received_at, body, fut))
        self._wake.set()
        self._in_flight += 1
        if self._in_flight >= FLOOD:
            self._headroom.clear()
            self._flooded_at = asyncio.get_running_loop().time()
        try:
            await fut
        finally:
            self._in_flight -= 1
            if self._in_flight < FLOOD:
                self._headroom.set()

    async def run(self) -> None:
        """Commit batches until closed and drained.

        With `depth` 1 a batch is sent once the one before it has committed. A store
        that commits batches in the order it was given them (the SQLite spool's writer
        process, which reads them from one pipe) takes up to `depth` at once: what
        arrives while a commit runs is sent straight away, and the writer commits all
        it has received in its next transaction as soon as the current one ends,
        without waiting for the daemon to hear of that commit and send more.
        """
        while not (self._closed and not self._pending):
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._slots.acquire()  # bodies arriving meanwhile join this batch
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                if self._depth == 1:
                    await self._commit_in_slot(batch)
                    continue
                task = asyncio.create_task(self._commit_in_slot(batch), name="ingest-commit")
                self._commits.add(task)
                task.add_done_callback(self._commits.discard)
        if self._commits:
            await asyncio.gather(*self._commits)

    async def _commit_in_slot(self, batch: list[tuple[float, str, asyncio.Future[None]]]) -> None:
        try:
            await self._commit(batch)
        finally:
            self._slots.release()

    async def _commit(self, batch: list[tuple[float, str, asyncio.Future[None]]]) -> None:
        try:
            await self._store.append_inbox([(at, body) for at, body, _ in batch])
        except StoreError as exc:
            log.error("webhook batch not stored", extra={"error": str(exc), "size": len(batch)})
            self._refuse(batch, str(exc))
            return
        except Exception as exc:
            # Nothing was acknowledged: Alertmanager retries on the 503, nothing is lost.
            if self._metrics is not None:
                self._metrics.poison_items.labels(loop="ingest").inc()
            log.exception("webhook batch not stored: internal error", extra={"size": len(batch)})
            self._refuse(batch, f"internal error: {describe(exc)}")
            return
        for _, _, fut in batch:
            if not fut.done():
                fut.set_result(None)
        self._on_stored()
        if self._recorder is not None:
            self._record([(at, body) for at, body, _ in batch])

    def _record(self, batch: list[tuple[float, str]]) -> None:
        """Append to the `record:` file; no failure of it may stop ingest."""
        assert self._recorder is not None
        try:
            self._recorder.write(batch)
        except Exception as exc:  # the recording is a convenience; the store has the alerts
            self._on_record_error()
            log.exception(
                "recording webhook bodies failed",
                extra={"error": f"{type(exc).__name__}: {exc}", "size": len(batch)},
            )

    @staticmethod
    def _refuse(batch: list[tuple[float, str, asyncio.Future[None]]], why: str) -> None:
        for _, _, fut in batch:
            if not fut.done():
                fut.set_exception(StoreUnavailable(why))

    async def wait_for_headroom(self, max_wait_s: float = 1.0) -> None:
        """Under a flood (FLOOD or more webhooks in flight within the last QUIET_S), wait
        until it ends, at most `max_wait_s`.

        The engine calls this between batches: acknowledging webhooks (so Alertmanager
        does not time out and resend) comes before expanding them, yet the engine still
        takes a batch at least every `max_wait_s`. A flood dips below FLOOD each time a
        commit answers its batch, for as long as the senders take to send again: that is
        no headroom. At ordinary rates nothing waits.
        """
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait_s):
                while not self._closed:
                    await self._headroom.wait()
                    quiet_for = loop.time() - self._flooded_at
                    if quiet_for >= QUIET_S:
                        return
                    await asyncio.sleep(QUIET_S - quiet_for)

    def close(self) -> None:
        """Stop taking new bodies; `run` returns once the queue is drained."""
        self._closed = True
        self._wake.set()
        self._headroom.set()
