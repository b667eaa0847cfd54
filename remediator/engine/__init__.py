"""The engine: drains the inbox into incidents and runs due work, in two loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from functools import partial

from remediator.deadletters import DeadLetters, describe
from remediator.engine.context import EngineContext
from remediator.engine.escalation import hand_over_in, schedule_next, wake_each_scope
from remediator.engine.guards import FREED_BY_STEP
from remediator.engine.intake import Intake
from remediator.engine.runner import Runner
from remediator.errors import ClaimLost, StoreError
from remediator.store.base import Tx
from remediator.store.conflict import retry_conflict
from remediator.store.events import StepSettled
from remediator.store.records import StepState, WorkItem, WorkKind

log = logging.getLogger(__name__)
SETTLE_EVERY_S = 30.0  # shared store: how often orphans a dead replica left are looked for
# Held steps wait for their scope's slot to free; this often the oldest of each scope looks
# again anyway (one step per scope, not per held step), in case a wake was missed.
HELD_NET_S = 300.0


class Engine:
    """Owns intake and runner; `tick` is one pass of both (tests drive it directly)."""

    def __init__(self, ctx: EngineContext, *, max_parallel: int = 8, poll_s: float = 1.0) -> None:
        self.ctx = ctx
        self.dead = DeadLetters(ctx.store, ctx.metrics, ctx.clock, partial(hand_over_in, ctx))
        self.intake = Intake(ctx, self.dead)
        self.owner = f"remediator-{uuid.uuid4().hex[:12]}"
        self.runner = Runner(ctx, self.owner)
        self.inbox_ready = asyncio.Event()
        self._max_parallel = max_parallel
        self._poll_s = poll_s
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._next_settle = 0.0
        self._next_net = 0.0
        self._next_renew = 0.0
        self._next_due: float | None = None  # when pending work can next be claimed
        self._held: set[int] = set()  # work items being run here: the claims to renew
        # The daemon sets this to let webhook acknowledgements go first under a flood.
        self.before_intake_batch: Callable[[], Awaitable[None]] | None = None

    def lease_s(self) -> float:
        """How long a claim holds unrenewed (`store.lease`); running items are renewed."""
        return self.ctx.config.file.store.lease

    async def recover(self) -> int:
        """On start: free claims a dead process left when the store is ours alone (SQLite).
        On a shared store (PostgreSQL) claims are left to expire by their lease: another
        replica may be running them; only orphans whose lease is over are settled."""
        exclusive = self.ctx.store.exclusive
        async with self.ctx.store.write() as tx:
            released = await tx.release_claims() if exclusive else 0
            await settle_orphans(tx, self.ctx.clock.now(), exclusive=exclusive)
        if released:
            log.warning("resuming work left by a previous run", extra={"items": released})
        self.inbox_ready.set()
        self.ctx.work_ready.set()
        return released

    async def tick(self) -> None:
        """Drain the inbox, then claim and run all due work to completion."""
        await self.intake.drain()
        await self._settle_expired()
        while items := await self._claim(self._max_parallel):
            await asyncio.gather(*(self._run_one(i) for i in items))

    async def _claim(self, limit: int) -> list[WorkItem]:
        async with self.ctx.store.write() as tx:
            return await tx.claim_due(self.ctx.clock.now(), self.owner, limit, self.lease_s())

    def stored(self) -> None:
        """The receiver's callback once webhook bodies are durably stored: intake takes
        them at once (under a flood it defers to ingest: `before_intake_batch`)."""
        self.inbox_ready.set()

    async def intake_loop(self) -> None:
        """Expand stored webhook bodies as they arrive."""
        while not self._stopping.is_set():
            await _wait(self.inbox_ready, self._poll_s)
            self.inbox_ready.clear()
            try:
                await self.intake.drain(self.before_intake_batch)
            except StoreError as exc:
                self._error("intake", exc)

    async def work_loop(self) -> None:
        """Claim due work while slots are free; each item runs in its own task. Between
        passes it sleeps until woken (work scheduled or finished here) or until the next
        work falls due, whichever comes first."""
        while not self._stopping.is_set():
            await self._sleep()
            self.ctx.work_ready.clear()
            try:
                await self.renew_claims()
                await self._settle_expired()
                await self.held_net()
                await self._dispatch_due()
            except StoreError as exc:
                self._error("work", exc)

    async def _sleep(self) -> None:
        """Until woken or the next work falls due. That time is read (a read, not behind
        the store's writer) only when the loop would sleep with a slot free: when woken
        already, or when only a finishing step can free a slot, it is not needed."""
        self._next_due = None
        if not self.ctx.work_ready.is_set() and len(self._running) < self._max_parallel:
            try:
                async with self.ctx.store.read() as tx:
                    self._next_due = await tx.next_work_due()
            except StoreError as exc:
                self._error("work", exc)
        await _wait(self.ctx.work_ready, self._sleep_s())

    def _sleep_s(self) -> float:
        """How long the work loop may sleep unless woken: until the next work falls due,
        a claim renewal or a search for orphans is due; at most `poll_s`, for what other
        replicas schedule in a shared store (no event here tells of it). Work due and not
        taken (a peer is claiming it) is left to them until then too."""
        now = self.ctx.clock.now()
        wake = [now + self._poll_s]
        if self._next_due is not None and self._next_due > now:
            wake.append(self._next_due)
        if self._held:
            wake.append(self._next_renew)
        if not self.ctx.store.exclusive:
            wake.append(self._next_settle)
        wake.append(self._next_net)
        return max(0.0, min(wake) - now)

    async def renew_claims(self) -> None:
        """Every third of the lease, extend this replica's claims: a step that runs longer
        than the lease stays ours while we live, and is taken by another once we die."""
        now = self.ctx.clock.now()
        if now < self._next_renew:
            return
        lease = self.lease_s()
        if self._held:  # not behind a write waiting for a lock: the claims must not lapse
            await self.ctx.store.renew_claims(self.owner, sorted(self._held), now + lease)
        self._next_renew = now + lease / 3

    async def held_net(self) -> None:
        """Every HELD_NET_S, the oldest held step of each guard scope looks again."""
        now = self.ctx.clock.now()
        if now < self._next_net:
            return
        async with self.ctx.store.write() as tx:
            await wake_each_scope(self.ctx, tx, now)
        self._next_net = now + HELD_NET_S

    async def _settle_expired(self) -> None:
        """On a shared store, steps a dead replica left in flight (incident handed over
        mid-step) are settled once their lease is over; on SQLite a restart does it."""
        now = self.ctx.clock.now()
        if self.ctx.store.exclusive or now < self._next_settle:
            return
        self._next_settle = now + SETTLE_EVERY_S
        async with self.ctx.store.write() as tx:
            await settle_orphans(tx, now, exclusive=False)

    async def _dispatch_due(self) -> None:
        free = self._max_parallel - len(self._running)
        if free <= 0 or self._stopping.is_set():
            return
        items = await self._claim(free)
        if self._stopping.is_set() and items:
            # Claimed while the stop began, too late for it to wait for them: handed back
            # at once (the lease ended now) for another replica, never left to lapse.
            now = self.ctx.clock.now()
            await self.ctx.store.renew_claims(self.owner, [item.id for item in items], now)
            return
        for item in items:
            task = asyncio.create_task(self._run_one(item), name=f"work-{item.id}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run_one(self, item: WorkItem) -> None:
        self._held.add(item.id)
        try:
            # Another replica wrote the same rows first: the transaction rolled back whole,
            # so running the item again at once is what its lease's end would do later.
            await retry_conflict(partial(self.runner.run, item))
        except ClaimLost as exc:
            log.warning("step not sent", extra={"error": str(exc)})
        except StoreError as exc:
            # The claim lapses after its lease and the item is retried; a step already
            # marked executing is then recorded as unknown, never re-sent.
            self._error("work item", exc)
        except Exception as exc:
            await self.bury_work(item, exc)
        finally:
            # An item left unfinished (the store failed) is not renewed: its lease runs
            # out and it is claimed again, here or by another replica.
            self._held.discard(item.id)
            self.ctx.work_ready.set()

    async def bury_work(self, item: WorkItem, exc: Exception) -> None:
        """A work item that raised: retired as a dead letter, its step and incident settled."""

        async def retire(tx: Tx, now: float) -> None:
            await tx.finish_work(item.id, now, "poison")
            if item.kind is not WorkKind.RUN_STEP:
                return
            step = await tx.step(item.incident_id, item.step_index)
            why = f"internal error: {describe(exc)}"
            if step is not None and step.state is StepState.DISPATCHING:
                await tx.update_step(step.id, StepState.FAILED, finished_at=now, error=why)
            elif step is not None and step.state is StepState.EXECUTING:
                # The command may have been sent: its outcome is unknown, never re-sent.
                await tx.update_step(step.id, StepState.UNKNOWN, finished_at=now, error=why)

        async def page_on(tx: Tx, now: float) -> None:
            if item.kind is WorkKind.ESCALATE:
                await schedule_next(self.ctx, tx, item, now)

        payload = {"kind": item.kind.value, "step": item.step_index + 1}
        try:
            await self.dead.bury(
                "work",
                f"work:{item.id}",
                exc,
                incident_id=item.incident_id,
                payload=payload,
                mark=retire,
                settle=page_on,
            )
        except StoreError as store_exc:
            self._error("work item", store_exc)
        except Exception as bug:  # retiring it raised too: its claim lapses, it is retried
            self._error("work item", bug)
            log.exception("work item %s could not be retired", item.id)

    def _error(self, where: str, exc: BaseException) -> None:
        self.ctx.metrics.engine_errors.inc()
        log.error(f"{where} error", extra={"error": str(exc)})

    async def stop(self, grace_s: float) -> None:
        """Stop claiming; let running steps finish within `grace_s`, then cancel them."""
        self._stopping.set()
        self.inbox_ready.set()
        self.ctx.work_ready.set()
        if self._running:
            log.info("waiting for running steps", extra={"count": len(self._running)})
            pending = await self._finish_running(grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def _finish_running(self, grace_s: float) -> set[asyncio.Task[None]]:
        """Wait up to `grace_s` for running steps, renewing their claims meanwhile: they
        are still this replica's, and another must not take them while they finish."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        pending = set(self._running)
        while pending and (left := deadline - loop.time()) > 0:
            _, pending = await asyncio.wait(pending, timeout=min(left, self.lease_s() / 3))
            try:
                await self.renew_claims()
            except StoreError as exc:
                self._error("work", exc)
        return pending


async def settle_orphans(tx: Tx, now: float, *, exclusive: bool = True) -> None:
    """Steps left in flight by a crash after their incident was handed over: executing is
    `unknown` (never re-sent), dispatching `failed` (nothing was sent); the target is free.
    Not `exclusive` (replicas share the store): only steps whose work's claim expired."""
    orphans = await tx.orphan_steps(None if exclusive else now)
    for step in orphans:
        executing = step.state is StepState.EXECUTING
        state = StepState.UNKNOWN if executing else StepState.FAILED
        why = "the daemon stopped while the step ran, after its incident was handed over"
        await tx.incident(step.incident_id)  # locked first, in every decision's lock order
        await tx.update_step(step.id, state, finished_at=now, error=why)
        await tx.audit(step.incident_id, StepSettled(step.step_index, state.value, why), now)
    if orphans:  # their targets, group slots and concurrency slots are free: look again
        await tx.wake_held(list(FREED_BY_STEP), now)


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout_s)


__all__ = ["Engine", "EngineContext"]
