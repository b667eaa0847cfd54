"""GET /api/audit: the whole audit trail, page by page, for people and SIEMs.

`cursor` (from the previous page) goes on after the last row seen, in commit order: a
collector that follows it misses no row and repeats none, on SQLite and on PostgreSQL
with several replicas writing (store/sqltx.py audit_page). `since` (a duration such as
`24h`, or an RFC 3339 time) and `incident` narrow it; `limit` caps a page.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from remediator import openapi
from remediator.apimodels import AuditPage, AuditRecord
from remediator.auditview import cursor_text, parse_cursor
from remediator.config.durations import parse_duration
from remediator.parsing import MAX_ID, whole_number
from remediator.store.base import Store

START = (0, 0)


class QueryError(ValueError):
    """A query parameter that is not what the route takes (the message says how)."""


def parse_since(value: str, now: float) -> float:
    """`24h` (ago) or an RFC 3339 time with its offset, as epoch seconds."""
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(
            f"since must be a duration such as 24h or 30m, or an RFC 3339 time such as "
            f"2026-11-30T00:00:00Z; got {value[:40]!r}"
        ) from None
    if moment.tzinfo is None:
        raise QueryError("since: an RFC 3339 time needs its offset (Z or +01:00)")
    try:
        return moment.astimezone(UTC).timestamp()
    except (OverflowError, ValueError):  # year 9999 with a negative offset, year 1 with +
        raise QueryError(f"since: {value[:40]!r} is outside the calendar once in UTC") from None


async def audit_page(store: Store, query: dict[str, str], now: float) -> AuditPage:
    """The page `query` asks for (QueryError when a parameter is wrong)."""
    after = START
    if "cursor" in query:
        parsed = parse_cursor(query["cursor"])
        if parsed is None:
            raise QueryError("cursor must be one a previous page returned (XACT-ID)")
        after = parsed
    incident = None
    if "incident" in query:
        incident = whole_number(query["incident"], MAX_ID, least=1)
        if incident is None:
            raise QueryError("incident must be an incident id")
    since = parse_since(query["since"], now) if "since" in query else None
    limit = openapi.DEFAULT_LIMIT
    if "limit" in query:
        limit = whole_number(query["limit"], openapi.MAX_LIMIT, least=1) or 0
        if not limit:
            raise QueryError(f"limit must be a number from 1 to {openapi.MAX_LIMIT}")
    async with store.read() as tx:
        rows = await tx.audit_page(after, limit, incident_id=incident, since=since)
    entries = [AuditRecord.of_row(r) for r in rows]
    last = entries[-1].cursor if entries else cursor_text(*after)
    return AuditPage(entries=entries, cursor=last)


async def handle(store: Store, request: web.Request, now: float) -> web.Response:
    """GET /api/audit."""
    try:
        page = await audit_page(store, dict(request.query), now)
    except QueryError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(page.model_dump(mode="json"))
