"""Two replicas inserting the same row at the same instant on one PostgreSQL store: the
second waits for the first's commit, then gets the store's "already there" answer (or
writes its value over it), never a conflict that would roll back its whole transaction
(a step's recorded outcome with it)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from remediator.store import open_store_url
from remediator.store.base import Tx
from remediator.store.payloads import Email, Pause
from remediator.store.records import TargetHealth

Op = Callable[[Tx, str], Awaitable[Any]]


async def _incident(tx: Tx, who: str) -> Any:
    return await tx.create_incident("r", "f", "t1", {}, {}, 2.0)


async def _approval(tx: Tx, who: str) -> Any:
    return (await tx.create_approval(1, 0, "ssh", {"who": who}, 1, 2.0, 60.0)).id


RACES: dict[str, tuple[Op, Callable[[Any, Any], bool]]] = {
    # name: (what both replicas do, what the first and the second get back)
    "incident": (_incident, lambda a, b: a is not None and b is None),
    "approval": (_approval, lambda a, b: a == b),
    "vote": (lambda tx, who: tx.add_vote(1, "ann", "approve", who, 2.0), lambda a, b: a and not b),
    "escalation": (
        lambda tx, who: tx.start_escalation(1, "ops", who, 2.0),
        lambda a, b: a and not b,
    ),
    "deduplicated notification": (
        lambda tx, who: tx.enqueue("x@example.com", Email(1), 1, 2.0, dedup_key="k"),
        lambda a, b: a is not None and b is None,
    ),
    "step": (
        lambda tx, who: tx.start_step(1, 0, "ssh", {"who": who}, 2.0),
        lambda a, b: (a.attempts, b.attempts) == (1, 2),
    ),
    "slack message": (
        lambda tx, who: tx.save_slack_message("k", "C1", who, 2.0),
        lambda a, b: True,
    ),
    "cooldown": (lambda tx, who: tx.set_cooldown("r", "h1", 50.0), lambda a, b: True),
    "pause switch": (lambda tx, who: tx.set_pause(Pause(True, who), 2.0), lambda a, b: True),
    "target health": (
        lambda tx, who: tx.save_target_health(TargetHealth("r", "h1", 1, None, who, 2.0)),
        lambda a, b: True,
    ),
}


@pytest.mark.parametrize("race", list(RACES))
async def test_two_replicas_inserting_one_row_at_once_do_not_conflict(
    pg_url: str, tmp_path: Path, race: str
) -> None:
    """Replica a inserts and has not committed yet when replica b inserts the same row:
    b waits for a, then completes without an error, with the store's answer for a row
    that exists."""
    op, answers = RACES[race]
    a, b = open_store_url(pg_url, tmp_path), open_store_url(pg_url, tmp_path)
    await a.open()
    await b.open()
    try:
        async with a.write() as tx:
            await tx.create_incident("r", "f", "t0", {}, {}, 1.0)
            await tx.create_approval(1, 1, "ssh", {}, 1, 1.0, 60.0)  # for "vote": id 1

        async def second() -> Any:
            async with b.write() as tx_b:
                return await op(tx_b, "b")

        async with a.write() as tx_a:
            first = await op(tx_a, "a")
            racing = asyncio.create_task(second())
            await asyncio.sleep(0.3)
            assert not racing.done()  # b waits for a's row
        async with asyncio.timeout(10):
            second_answer = await racing
    finally:
        await a.close()
        await b.close()
    assert answers(first, second_answer), (first, second_answer)
