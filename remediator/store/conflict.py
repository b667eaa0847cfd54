"""Running a write transaction again when another replica wrote the same rows first."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from remediator.errors import StoreConflict

log = logging.getLogger(__name__)
T = TypeVar("T")
ATTEMPTS = 3  # the rerun reads what the winner committed; a third race in a row is rare


async def retry_conflict(run: Callable[[], Awaitable[T]], attempts: int = ATTEMPTS) -> T:
    """`run` (one whole write transaction) again after a StoreConflict, up to `attempts`
    times in all; the last conflict is raised (a StoreError: the caller's loop retries)."""
    for _ in range(attempts - 1):
        try:
            return await run()
        except StoreConflict as exc:
            log.info("store conflict: running the transaction again", extra={"error": str(exc)})
    return await run()
