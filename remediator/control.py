"""Operator switches on the store: pause/resume automation, list and release quarantines.

They write the store, not the daemon's memory: a pause survives a restart, and the
daemon (which checks the switch in the transaction that starts each step) obeys it
whether it was running at the time or not.
"""

from __future__ import annotations

from typing import Any

from remediator.engine.guards import PAUSE_KEY
from remediator.engine.quarantine import release
from remediator.store.base import Store
from remediator.store.records import DeadLetter, TargetHealth


async def set_paused(store: Store, paused: bool, reason: str | None, now: float) -> dict[str, Any]:
    """Pause or resume all automation; on resume, held steps become due at once."""
    async with store.write() as tx:
        old = await tx.get_setting(PAUSE_KEY) or {"paused": False}
        if bool(old.get("paused")) == paused:
            return old
        value = {"paused": paused, "reason": reason, "since": now}
        await tx.set_setting(PAUSE_KEY, value, now)
        detail: dict[str, Any] = {"reason": reason}
        if not paused:
            detail["steps_resumed"] = await tx.wake_held(["pause"], now)
        await tx.audit(None, "paused" if paused else "resumed", detail, now)
        return value


async def pause_state(store: Store) -> dict[str, Any]:
    """The stored pause switch."""
    async with store.read() as tx:
        return await tx.get_setting(PAUSE_KEY) or {"paused": False, "reason": None, "since": None}


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
    async with store.write() as tx:
        return await release(tx, rule, target, who, now)
