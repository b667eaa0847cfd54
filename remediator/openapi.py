"""The admin API's OpenAPI 3.1 document, served at GET /api/openapi.json.

Schemas come from the models in apimodels.py, which the handlers also use, so a body
cannot change without the document changing; tests/test_openapi.py checks that the
paths here are exactly the routes AdminApi registers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from remediator import __version__
from remediator.apimodels import (
    AuditPage,
    DecisionBody,
    DecisionReply,
    ErrorReply,
    IncidentDetail,
    IncidentList,
    PauseBody,
    PauseState,
    ReplicaList,
)
from remediator.parsing import MAX_ID
from remediator.store.records import State

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
STATE_FILTERS = ["open", "closed", *(s.value for s in State)]
DOCUMENT_PATH = "/api/openapi.json"
# Sent by `remediator` CLI commands: decisions through them are audited `via: cli`.
CLIENT_HEADER = "X-Remediator-Client"

ERRORS = {
    400: "bad query or body; `error` says which and how to fix it",
    401: "missing or wrong admin token (Authorization: Bearer <token>)",
    403: "the admin API is off (no server.admin_tokens nor server.admin_token_env), this "
    "person may not decide (not an approver or acknowledger), or `by` names someone other "
    "than the personal token's owner",
    404: "no such incident",
    409: "already decided, already voted (the shared admin token votes once), or nothing "
    "waits for this decision",
    503: "the store is unavailable; retry later",
}
ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "incident id",
    "schema": {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID},
}
LIST_PARAMS = [
    {
        "name": "state",
        "in": "query",
        "required": False,
        "description": "`open`, `closed` or one incident state; default all",
        "schema": {"type": "string", "enum": STATE_FILTERS},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "at most this many, newest first",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    },
]

AUDIT_PARAMS = [
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "the `cursor` of the previous page (or of a row): the rows after it",
        "schema": {"type": "string", "pattern": "^[0-9]{1,19}-[0-9]{1,19}$"},
    },
    {
        "name": "since",
        "in": "query",
        "required": False,
        "description": "only rows from this time on: a duration ago (`24h`) or RFC 3339",
        "schema": {"type": "string"},
    },
    {
        "name": "incident",
        "in": "query",
        "required": False,
        "description": "only this incident's rows",
        "schema": {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "at most this many rows in the page",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    },
]


@dataclass(frozen=True)
class Operation:
    """One method on one path."""

    method: str
    path: str
    operation_id: str
    summary: str
    reply: type[BaseModel] | None
    errors: tuple[int, ...]
    params: tuple[dict[str, Any], ...] = ()
    body: type[BaseModel] | None = None
    body_required: bool = False
    public: bool = False


_ADMIN = (401, 403, 503)
_DECIDE = (400, *_ADMIN, 404, 409)
OPERATIONS = (
    Operation(
        "get", DOCUMENT_PATH, "openapi", "This document (no token needed)", None, (), public=True
    ),
    Operation(
        "get",
        "/api/incidents",
        "listIncidents",
        "List incidents, newest first",
        IncidentList,
        (400, *_ADMIN),
        tuple(LIST_PARAMS),
    ),
    Operation(
        "get",
        "/api/incidents/{id}",
        "showIncident",
        "One incident with its steps, approvals, escalation and audit trail",
        IncidentDetail,
        (*_ADMIN, 404),
        (ID_PARAM,),
    ),
    *(
        Operation(
            "post",
            f"/api/incidents/{{id}}/{verb}",
            f"{verb}Incident",
            summary,
            DecisionReply,
            _DECIDE,
            (ID_PARAM,),
            DecisionBody,
        )
        for verb, summary in (
            ("approve", "Approve the step the incident waits on"),
            ("deny", "Deny the step the incident waits on (the incident escalates)"),
            ("ack", "Acknowledge the incident: its automation and paging stop"),
        )
    ),
    Operation(
        "post",
        "/api/pause",
        "pause",
        "Pause all automation (notifications go on); stored, survives restarts",
        PauseState,
        (400, *_ADMIN),
        body=PauseBody,
    ),
    Operation(
        "post",
        "/api/resume",
        "resume",
        "Resume automation; held steps run if still wanted",
        PauseState,
        (400, *_ADMIN),
        body=PauseBody,
    ),
    Operation(
        "get",
        "/api/audit",
        "listAudit",
        "The audit trail in commit order, page by page (follow `cursor` for no gaps)",
        AuditPage,
        (400, *_ADMIN),
        tuple(AUDIT_PARAMS),
    ),
    Operation(
        "get",
        "/api/replicas",
        "listReplicas",
        "Replicas that heartbeat in the last minute, with the hash of their rules",
        ReplicaList,
        _ADMIN,
    ),
)


def _json(ref: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": ref}}


def _operation(op: Operation, refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    ok = refs[op.reply] if op.reply is not None else {"type": "object"}
    responses: dict[str, Any] = {"200": {"description": "OK", "content": _json(ok)}}
    for status in sorted(op.errors):
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "responses": responses,
    }
    if op.params:
        out["parameters"] = list(op.params)
    if op.body is not None:
        out["requestBody"] = {"required": op.body_required, "content": _json(refs[op.body])}
    if op.public:
        out["security"] = []
    return out


@functools.cache
def document() -> dict[str, Any]:
    """The whole document (built once; treat as read-only)."""
    mode: dict[type[BaseModel], JsonSchemaMode] = {ErrorReply: "serialization"}
    for op in OPERATIONS:
        mode.update({op.reply: "serialization"} if op.reply else {})
        mode.update({op.body: "validation"} if op.body else {})
    refs_by_key, defs = models_json_schema(
        list(mode.items()), ref_template="#/components/schemas/{model}"
    )
    refs: dict[Any, dict[str, Any]] = {model: ref for (model, _), ref in refs_by_key.items()}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs)
    error = _json(refs[ErrorReply])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "remediator admin API",
            "version": __version__,
            "description": "Incidents, decisions (approve, deny, ack), the pause switch and "
            "the replicas of a running remediator daemon. Every operation but this document needs "
            "`Authorization: Bearer <token>`: a personal token (server.admin_tokens, one per "
            "person: decisions are made as its NAME) or the shared one "
            "(server.admin_token_env: every holder is one person, `admin-token`).",
        },
        "paths": paths,
        "components": {
            "schemas": defs["$defs"],
            "responses": {
                f"E{status}": {"description": why, "content": error}
                for status, why in ERRORS.items()
            },
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }
