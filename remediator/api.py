"""The admin API: incidents, approve/deny/ack (for when Slack is down), pause/resume.

Every route needs `Authorization: Bearer <admin token>` (server.admin_token_env); with
no admin token configured the routes answer 403 and say how to enable them.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from remediator import control
from remediator.engine import approvals
from remediator.engine.context import EngineContext
from remediator.errors import StoreError
from remediator.store.records import CLOSED_STATES, OPEN_STATES, Incident, State

Handler = Callable[[web.Request], Awaitable[web.Response]]
MAX_LIMIT = 1000


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def incident_json(i: Incident) -> dict[str, Any]:
    """An incident as the API lists it."""
    return {
        "id": i.id,
        "rule": i.rule,
        "target": i.target,
        "state": i.state.value,
        "labels": i.labels,
        "started_at": i.created_at,
        "updated_at": i.updated_at,
    }


def _states(value: str | None) -> list[State] | None:
    if value is None:
        return None
    if value == "open":
        return sorted(OPEN_STATES)
    if value == "closed":
        return sorted(CLOSED_STATES)
    return [State(value)]


@dataclass
class AdminApi:
    """Routes under /api."""

    ctx: EngineContext
    token: bytes | None

    def routes(self, app: web.Application) -> None:
        """Register every route."""
        table: list[tuple[str, str, Handler]] = [
            ("GET", "/api/incidents", self.list_incidents),
            ("GET", "/api/incidents/{id}", self.show_incident),
            ("POST", "/api/incidents/{id}/approve", self.approve),
            ("POST", "/api/incidents/{id}/deny", self.deny),
            ("POST", "/api/incidents/{id}/ack", self.ack),
            ("POST", "/api/pause", self.pause),
            ("POST", "/api/resume", self.resume),
        ]
        for method, path, handler in table:
            app.router.add_route(method, path, self._guarded(handler))

    def _guarded(self, handler: Handler) -> Handler:
        async def run(request: web.Request) -> web.Response:
            if self.token is None:
                return _error(403, "the admin API is off: set server.admin_token_env")
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                value.strip().encode(), self.token
            ):
                return _error(401, "missing or wrong admin token")
            try:
                return await handler(request)
            except StoreError as exc:
                return _error(503, f"store unavailable: {exc}")

        return run

    @staticmethod
    def _id(request: web.Request) -> int | None:
        raw = request.match_info["id"]
        return int(raw) if raw.isdigit() else None

    @staticmethod
    async def _body(request: web.Request, need_by: bool) -> dict[str, Any] | web.Response:
        """`{"by": "...", "reason": "..."}` (`by` only when `need_by`), or a 400."""
        shape = '{"by": "...", "reason": "..."}' if need_by else '{"reason": "..."}'
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError):
            return _error(400, f"body must be JSON: {shape}")
        if not isinstance(body, dict):
            return _error(400, f"body must be a JSON object: {shape}")
        by, reason = body.get("by"), body.get("reason")
        if need_by and (not isinstance(by, str) or not by.strip()):
            return _error(400, '"by" (who decides: an approver name or Slack user id) is required')
        if reason is not None and not isinstance(reason, str):
            return _error(400, '"reason" must be a string')
        return {"by": by.strip() if isinstance(by, str) else None, "reason": reason}

    async def list_incidents(self, request: web.Request) -> web.Response:
        """GET /api/incidents[?state=open|closed|STATE][&limit=N]."""
        try:
            states = _states(request.query.get("state"))
        except ValueError:
            names = ", ".join(["open", "closed", *sorted(s.value for s in State)])
            return _error(400, f"state must be one of {names}")
        raw_limit = request.query.get("limit", "100")
        if not raw_limit.isdigit() or not 0 < int(raw_limit) <= MAX_LIMIT:
            return _error(400, f"limit must be a number from 1 to {MAX_LIMIT}")
        async with self.ctx.store.read() as tx:
            rows = await tx.incidents(states, int(raw_limit))
        return web.json_response({"incidents": [incident_json(i) for i in rows]})

    async def show_incident(self, request: web.Request) -> web.Response:
        """GET /api/incidents/{id}: with steps, approvals, escalation and audit."""
        incident_id = self._id(request)
        async with self.ctx.store.read() as tx:
            incident = await tx.incident(incident_id) if incident_id is not None else None
            if incident is None:
                return _error(404, f"incident {request.match_info['id']} does not exist")
            steps = await tx.steps(incident.id)
            audit = await tx.audit_for(incident.id)
            esc = await tx.escalation(incident.id)
            asked = await tx.approvals_of(incident.id)
        out = incident_json(incident)
        out["steps"] = [
            {
                "step": s.step_index,
                "action": s.action,
                "state": s.state.value,
                "command": s.command,
                "started_at": s.started_at,
                "finished_at": s.finished_at,
                "exit_status": s.exit_status,
                "error": s.error,
            }
            for s in steps
        ]
        out["approvals"] = [
            {
                "id": a.id,
                "step": a.step_index,
                "action": a.action,
                "state": a.state.value,
                "required": a.required,
                "expires_at": a.expires_at,
                "decided_by": a.decided_by,
            }
            for a in asked
        ]
        out["escalation"] = (
            {
                "chain": esc.chain,
                "state": esc.state.value,
                "started_at": esc.started_at,
                "stopped_by": esc.stopped_by,
            }
            if esc
            else None
        )
        out["audit"] = [{"at": a.at, "event": a.event, "detail": a.detail} for a in audit]
        return web.json_response(out)

    async def _decide(self, request: web.Request, decision: str) -> web.Response:
        incident_id = self._id(request)
        body = await self._body(request, need_by=True)
        if isinstance(body, web.Response):
            return body
        async with self.ctx.store.write() as tx:
            now = self.ctx.clock.now()
            incident = await tx.incident(incident_id) if incident_id is not None else None
            if incident is None:
                return _error(404, f"incident {request.match_info['id']} does not exist")
            if decision == "ack":
                outcome = await approvals.acknowledge(
                    self.ctx, tx, incident.id, body["by"], "api", now
                )
            else:
                pending = await approvals.pending_approval(tx, incident.id)
                if pending is None:
                    return _error(409, f"incident {incident.id} has no step waiting for approval")
                outcome = await approvals.decide(
                    self.ctx, tx, pending.id, body["by"], decision, "api", body["reason"], now
                )
        return web.json_response(outcome.as_json(), status=outcome.status)

    async def approve(self, request: web.Request) -> web.Response:
        """POST /api/incidents/{id}/approve."""
        return await self._decide(request, approvals.APPROVE)

    async def deny(self, request: web.Request) -> web.Response:
        """POST /api/incidents/{id}/deny."""
        return await self._decide(request, approvals.DENY)

    async def ack(self, request: web.Request) -> web.Response:
        """POST /api/incidents/{id}/ack."""
        return await self._decide(request, "ack")

    async def _switch(self, request: web.Request, paused: bool) -> web.Response:
        body = await self._body(request, need_by=False)
        if isinstance(body, web.Response):
            return body
        reason = body["reason"]
        state = await control.set_paused(self.ctx.store, paused, reason, self.ctx.clock.now())
        if not paused:
            self.ctx.work_ready.set()
        return web.json_response(
            {
                "paused": bool(state.get("paused")),
                "reason": state.get("reason"),
                "since": state.get("since"),
            }
        )

    async def pause(self, request: web.Request) -> web.Response:
        """POST /api/pause."""
        return await self._switch(request, True)

    async def resume(self, request: web.Request) -> web.Response:
        """POST /api/resume."""
        return await self._switch(request, False)
