"""The admin API: incidents, approve/deny/ack (for when Slack is down), pause/resume.

Every route needs `Authorization: Bearer <admin token>`: a personal token
(server.admin_tokens, whose NAME is who decides with it) or the shared one
(server.admin_token_env, one identity whatever `by` says); with no admin token
configured the routes answer 403 and say how to enable them. The one exception is
GET /api/openapi.json, the document describing them (openapi.py): it holds no data, and
API tooling fetches it before it has credentials. The engine answers decisions in its own
terms (engine.decisions.Result); `DECISION_STATUS` maps them to HTTP.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from remediator import auditapi, control, openapi
from remediator.apimodels import (
    ApprovalOut,
    AuditEntry,
    DecisionBody,
    DecisionReply,
    ErrorReply,
    EscalationOut,
    IncidentDetail,
    IncidentList,
    IncidentSummary,
    LinkOut,
    PauseBody,
    PauseState,
    ReplicaList,
    ReplicaOut,
    Reply,
    StepOut,
)
from remediator.auth import AdminTokens, TokenHolder
from remediator.config.names import SHARED_TOKEN_NAME
from remediator.engine import approvals
from remediator.engine.context import EngineContext
from remediator.engine.decisions import Outcome, Result, Voter
from remediator.errors import StoreError
from remediator.links import links_of
from remediator.parsing import MAX_ID, whole_number
from remediator.replicas import SEEN_WITHIN_S
from remediator.store.conflict import retry_conflict
from remediator.store.records import CLOSED_STATES, OPEN_STATES, State

Handler = Callable[[web.Request], Awaitable[web.Response]]
BodyT = TypeVar("BodyT", DecisionBody, PauseBody)
# The request key _guarded stores the TokenHolder under (typed: a str key warns).
HOLDER = web.RequestKey("remediator.token_holder", TokenHolder)
BY_HINT = "who decides: an approver name or Slack user id"
DECISION_STATUS = {
    Result.APPROVED: 200,
    Result.VOTE_RECORDED: 200,
    Result.DENIED: 200,
    Result.ACKNOWLEDGED: 200,
    Result.NOT_AN_APPROVER: 403,
    Result.NOT_AN_ACKNOWLEDGER: 403,
    Result.UNKNOWN_INCIDENT: 404,
    Result.UNKNOWN_APPROVAL: 404,
    Result.ALREADY_VOTED: 409,
    Result.ALREADY_DECIDED: 409,
    Result.NOTHING_WAITING: 409,
}


def _error(status: int, message: str) -> web.Response:
    return _reply(ErrorReply(error=message), status)


def _reply(body: Reply, status: int = 200) -> web.Response:
    return web.json_response(body.model_dump(mode="json"), status=status)


def _states(value: str | None) -> list[State] | None:
    if value is None:
        return None
    if value == "open":
        return sorted(OPEN_STATES)
    if value == "closed":
        return sorted(CLOSED_STATES)
    return [State(value)]


async def _body(request: web.Request, model: type[BodyT]) -> BodyT | web.Response:
    """The JSON body as `model` (no body: all defaults), or a 400 saying what is wrong."""
    raw = await request.read()
    try:
        return model.model_validate_json(raw if raw.strip() else b"{}")
    except ValidationError as exc:
        return _error(400, _body_problem(model, exc))


def _via(request: web.Request) -> str:
    """Through what a person decided: the CLI says so in a header; else the API."""
    return "cli" if request.headers.get(openapi.CLIENT_HEADER) == "cli" else "api"


def _voter(holder: TokenHolder, by: str | None, via: str) -> Voter | web.Response:
    """Who decides: a personal token's owner (`by` must match if given); with the shared
    token, `by` (required) is checked against approvers but all its votes are one person."""
    if holder.owner is None:
        if by is None:
            return _error(
                400,
                f'"by" ({BY_HINT}) is required with the shared admin token;'
                " a personal token (server.admin_tokens) decides as its owner",
            )
        return Voter.shared_token(by, via)
    if by is not None and by != holder.owner:
        return _error(
            403,
            f"this admin token is {holder.owner}'s: it decides as {holder.owner}, not as {by}"
            f' (leave "by" out, or send "by": "{holder.owner}")',
        )
    return Voter.person(holder.owner, via)


def _decided(outcome: Outcome) -> web.Response:
    status = DECISION_STATUS[outcome.result]
    if status != 200 or outcome.incident_id is None:
        return _error(status, outcome.message)
    return _reply(
        DecisionReply(
            result="ok", message=outcome.message, incident=outcome.incident_id, state=outcome.state
        )
    )


def _body_problem(model: type[BaseModel], exc: ValidationError) -> str:
    shape = '{"by": "...", "reason": "..."}' if "by" in model.model_fields else '{"reason": "..."}'
    first = exc.errors(include_url=False, include_input=False)[0]
    if first["type"] == "json_invalid":
        return f"body must be JSON (UTF-8, no lone surrogates): {shape}"
    if not first["loc"]:
        return f"body must be a JSON object: {shape}"
    if first["loc"][0] == "by":
        return f'"by" ({BY_HINT}), when given, must be a non-blank string'
    where = ".".join(str(part) for part in first["loc"])
    return f'"{where}": {first["msg"]} (body: {shape})'


@dataclass
class AdminApi:
    """Routes under /api."""

    ctx: EngineContext
    tokens: AdminTokens | None
    replica_id: str = ""  # the engine's owner id: which listed replica is this one

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
            ("GET", "/api/replicas", self.list_replicas),
            ("GET", "/api/audit", self.audit),
        ]
        for method, path, handler in table:
            app.router.add_route(method, path, self._guarded(handler))
        app.router.add_get(openapi.DOCUMENT_PATH, self.openapi_document, allow_head=False)

    def _guarded(self, handler: Handler) -> Handler:
        async def run(request: web.Request) -> web.Response:
            if self.tokens is None:
                return _error(
                    403,
                    "the admin API is off: set server.admin_tokens (a token per person)"
                    " or server.admin_token_env",
                )
            holder = self.tokens.identify(request.headers.get("Authorization"))
            if holder is None:
                return _error(401, "missing or wrong admin token")
            request[HOLDER] = holder
            try:
                return await handler(request)
            except StoreError as exc:
                return _error(503, f"store unavailable: {exc}")

        return run

    @staticmethod
    def _id(request: web.Request) -> int | None:
        return whole_number(request.match_info["id"], MAX_ID)

    @staticmethod
    async def openapi_document(_: web.Request) -> web.Response:
        """GET /api/openapi.json: public, it describes the routes and holds no data."""
        return web.json_response(openapi.document())

    async def list_incidents(self, request: web.Request) -> web.Response:
        """GET /api/incidents[?state=open|closed|STATE][&limit=N]."""
        try:
            states = _states(request.query.get("state"))
        except ValueError:
            names = ", ".join(["open", "closed", *sorted(s.value for s in State)])
            return _error(400, f"state must be one of {names}")
        limit = whole_number(request.query.get("limit", ""), openapi.MAX_LIMIT)
        if "limit" in request.query and not limit:
            return _error(400, f"limit must be a number from 1 to {openapi.MAX_LIMIT}")
        async with self.ctx.store.read() as tx:
            rows = await tx.incidents(states, limit or openapi.DEFAULT_LIMIT)
        return _reply(IncidentList(incidents=[IncidentSummary.of(i) for i in rows]))

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
        detail = IncidentDetail(
            **IncidentSummary.of(incident).model_dump(),
            links=[LinkOut(title=x.title, url=x.url) for x in links_of(incident.annotations)],
            steps=[StepOut.of(s) for s in steps],
            approvals=[ApprovalOut.of(a) for a in asked],
            escalation=EscalationOut.of(esc) if esc else None,
            audit=[AuditEntry.of_row(a) for a in audit],
        )
        return _reply(detail)

    async def _decide(self, request: web.Request, decision: str) -> web.Response:
        incident_id = self._id(request)
        body = await _body(request, DecisionBody)
        if isinstance(body, web.Response):
            return body
        holder = request[HOLDER]
        assert isinstance(holder, TokenHolder)  # _guarded put it there
        voter = _voter(holder, body.by.strip() if body.by is not None else None, _via(request))
        if isinstance(voter, web.Response):
            return voter
        reason = body.reason

        async def record() -> Outcome | None:
            async with self.ctx.store.write() as tx:
                now = self.ctx.clock.now()
                incident = await tx.incident(incident_id) if incident_id is not None else None
                if incident is None:
                    return None
                return await approvals.decide_incident(
                    self.ctx, tx, incident.id, decision, voter, reason, now
                )

        # Lost a race to another replica (rolled back whole): decided again on its commit.
        outcome = await retry_conflict(record)
        if outcome is None:
            return _error(404, f"incident {request.match_info['id']} does not exist")
        return _decided(outcome)

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
        body = await _body(request, PauseBody)
        if isinstance(body, web.Response):
            return body
        holder: TokenHolder = request[HOLDER]
        who = holder.owner or SHARED_TOKEN_NAME
        now = self.ctx.clock.now()
        state = await control.set_paused(
            self.ctx.store, paused, body.reason, now, by=who, via=_via(request)
        )
        if not paused:
            self.ctx.work_ready.set()
        return _reply(PauseState(paused=state.paused, reason=state.reason, since=state.since))

    async def pause(self, request: web.Request) -> web.Response:
        """POST /api/pause."""
        return await self._switch(request, True)

    async def resume(self, request: web.Request) -> web.Response:
        """POST /api/resume."""
        return await self._switch(request, False)

    async def audit(self, request: web.Request) -> web.Response:
        """GET /api/audit[?cursor=&since=&incident=&limit=]."""
        return await auditapi.handle(self.ctx.store, request, self.ctx.clock.now())

    async def list_replicas(self, _: web.Request) -> web.Response:
        """GET /api/replicas: replicas seen in the last minute, with their config hash."""
        mine = self.ctx.config_hash
        async with self.ctx.store.read() as tx:
            seen = await tx.replicas_seen_since(self.ctx.clock.now() - SEEN_WITHIN_S)
        rows = [
            ReplicaOut(
                **asdict(r), same_config=r.config_hash == mine, is_self=r.id == self.replica_id
            )
            for r in seen
        ]
        return _reply(ReplicaList(config_hash=mine, replicas=rows))
