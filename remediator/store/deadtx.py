"""Dead letters: items a loop failed on, kept apart so they never come back to fail again."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from remediator.store import schema as t
from remediator.store.records import DeadLetter

MAX_ERROR_CHARS = 2000


class DeadLetterQueries:
    """Mixed into SqlTx."""

    conn: AsyncConnection

    async def dead_letter(
        self,
        loop: str,
        item: str,
        incident_id: int | None,
        error: str,
        payload: Any,
        now: float,
    ) -> int:
        """Keep one failed item (`payload`: what is needed to look at it or replay it)."""
        res = await self.conn.execute(
            insert(t.dead_letters)
            .values(
                loop=loop,
                item=item[:64],
                incident_id=incident_id,
                error=error[:MAX_ERROR_CHARS],
                payload=payload,
                at=now,
            )
            .returning(t.dead_letters.c.id)
        )
        return int(res.scalar_one())

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        """The newest dead letters first."""
        d = t.dead_letters.c
        q = select(t.dead_letters).order_by(d.id.desc()).limit(limit)
        return [
            DeadLetter(
                id=m["id"],
                loop=m["loop"],
                item=m["item"],
                incident_id=m["incident_id"],
                error=m["error"],
                payload=m["payload"],
                at=m["at"],
            )
            for m in (r._mapping for r in await self.conn.execute(q))
        ]

    async def dead_letter_count(self) -> int:
        """How many dead letters are kept."""
        q = select(func.count()).select_from(t.dead_letters)
        return int((await self.conn.execute(q)).scalar_one())
