"""Keeps the daemon's background loops running: a loop that dies is restarted with backoff.

Each loop already contains the failure of one item (see deadletters.py); a loop that
still raises is a bug. A TaskGroup would end the daemon with it; the supervisor logs
it, marks the loop down (`/readyz` names it, `remediator_loop_up` drops to 0) and starts
it again after a backoff. Only a lost store (StoreGone) ends the daemon, through `fatal`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from remediator.deadletters import describe
from remediator.errors import StoreGone
from remediator.metrics import Metrics

log = logging.getLogger(__name__)
LoopFactory = Callable[[], Coroutine[Any, Any, None]]
HEALTHY_AFTER_S = 60.0  # a loop that ran this long before dying starts its backoff afresh


class Supervisor:
    """Runs named loops; restarts one that raises, ends everything on a lost store."""

    def __init__(
        self, metrics: Metrics, *, min_backoff_s: float = 0.5, max_backoff_s: float = 30.0
    ) -> None:
        self._metrics = metrics
        self._min_s = min_backoff_s
        self._max_s = max_backoff_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self.fatal_event = asyncio.Event()
        self.fatal: StoreGone | None = None
        self.down: dict[str, str] = {}  # loop -> why, while it waits to be restarted

    def start(self, name: str, factory: LoopFactory) -> None:
        """Run `factory()` as the loop `name`, restarted whenever it raises."""
        self._metrics.loop_up.labels(loop=name).set(1)
        self._track(asyncio.create_task(self._keep(name, factory), name=name))

    def spawn(self, name: str, coro: Coroutine[Any, Any, object]) -> None:
        """Run a one-off task (a SIGHUP reload) whose failure is logged, never fatal."""
        self._track(asyncio.create_task(self._once(name, coro), name=name))

    def not_ready(self) -> str | None:
        """Why the daemon is not ready because of its loops, or None."""
        if not self.down:
            return None
        return "; ".join(f"loop {name} is down ({why})" for name, why in sorted(self.down.items()))

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Let the loops finish (they watch their own stop signals), then cancel stragglers."""
        self._stopping.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in pending:
            log.warning("loop did not stop in time; cancelled", extra={"loop": task.get_name()})
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _once(self, name: str, coro: Coroutine[Any, Any, object]) -> None:
        try:
            await coro
        except StoreGone as exc:
            self._lost(exc)
        except Exception:
            log.exception("%s failed", name)

    async def _keep(self, name: str, factory: LoopFactory) -> None:
        loop = asyncio.get_running_loop()
        delay = self._min_s
        while True:
            started = loop.time()
            try:
                await factory()
                return
            except StoreGone as exc:
                self._lost(exc)
                return
            except Exception as exc:
                if self._stopping.is_set():
                    log.exception("%s loop failed while stopping", name)
                    return
                if loop.time() - started >= HEALTHY_AFTER_S:
                    delay = self._min_s
                self.down[name] = describe(exc)
                self._metrics.loop_up.labels(loop=name).set(0)
                self._metrics.loop_restarts.labels(loop=name).inc()
                log.exception("%s loop died; restarting in %.1f s", name, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            delay = min(delay * 2, self._max_s)
            del self.down[name]
            self._metrics.loop_up.labels(loop=name).set(1)
            log.warning("%s loop restarted", name)

    def _lost(self, exc: StoreGone) -> None:
        log.critical("the store is gone; stopping: %s", exc)
        self.fatal = exc
        self.fatal_event.set()
