"""Operator switches on the store: pause/resume automation, list and release quarantines.

They write the store, not the daemon's memory: a pause survives a restart, and the
daemon (which checks the switch in the transaction that starts each step) obeys it
whether it was running at the time or not.
"""

from __future__ import annotations

from functools import partial

from remediator.engine.guards import GLOBAL
from remediator.engine.quarantine import release
from remediator.store.base import Store
from remediator.store.conflict import retry_conflict
from remediator.store.events import Paused, Resumed
from remediator.store.payloads import Pause
from remediator.store.records import DeadLetter, TargetHealth


async def set_paused(
    store: Store,
    paused: bool,
    reason: str | None,
    now: float,
    *,
    by: str | None = None,
    via: str | None = None,
) -> Pause:
    """Pause or resume all automation; on resume, held steps become due at once. The
    audit row says who (`by`) and through what (`via`: api, cli)."""
    # A replica waking the same held steps (or pausing too) at once: run again, not lost.
    return await retry_conflict(partial(_set_paused, store, paused, reason, now, by, via))


async def _set_paused(
    store: Store, paused: bool, reason: str | None, now: float, by: str | None, via: str | None
) -> Pause:
    async with store.write() as tx:
        old = await tx.pause()
        if old.paused == paused:
            return old
        new = Pause(paused=paused, reason=reason, since=now)
        await tx.set_pause(new, now)
        if paused:
            await tx.audit(None, Paused(reason, by, via), now)
        else:
            await tx.lock_scopes([GLOBAL])  # a pause check under way is held first
            woken = await tx.wake_held(["pause"], now)
            await tx.audit(None, Resumed(reason, woken, by, via), now)
        return new


async def pause_state(store: Store) -> Pause:
    """The stored pause switch."""
    async with store.read() as tx:
        return await tx.pause()


async def quarantines(store: Store) -> list[TargetHealth]:
    """Every quarantined (rule, target)."""
    async with store.read() as tx:
        return await tx.quarantined()


async def dead_letters(store: Store, limit: int) -> list[DeadLetter]:
    """The newest dead letters: items a loop failed on, kept and never retried."""
    async with store.read() as tx:
        return await tx.dead_letters(limit)


async def release_quarantine(store: Store, rule: str, target: str, who: str, now: float) -> bool:
    """Lift a quarantine; False when that pair was not quarantined."""

    async def lift() -> bool:
        async with store.write() as tx:
            return await release(tx, rule, target, who, now)

    # An engine recording a failure of the same pair at once: run again on its commit.
    return await retry_conflict(lift)
