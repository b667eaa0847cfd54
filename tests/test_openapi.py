"""The admin API's OpenAPI document: valid, and exactly the routes AdminApi registers."""

from __future__ import annotations

from typing import Any, cast

from aiohttp import web
from openapi_spec_validator import validate

from remediator import openapi
from remediator.api import DECISION_STATUS, AdminApi
from remediator.auth import AdminTokens
from remediator.engine.decisions import Result


def registered_routes() -> set[tuple[str, str]]:
    app = web.Application()
    # routes() only binds handlers; no request runs here, so no engine context is needed.
    AdminApi(ctx=cast(Any, None), tokens=AdminTokens({}, "t")).routes(app)
    return {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.resource}


def test_the_document_is_valid_openapi_3_1() -> None:
    """openapi-spec-validator accepts the document, schemas and $refs included."""
    doc = openapi.document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_every_registered_route_is_documented_and_nothing_else() -> None:
    """Paths x methods in the document are exactly the routes on the aiohttp router."""
    documented = {(m, path) for path, ops in openapi.document()["paths"].items() for m in ops}
    assert documented == registered_routes()


def test_every_operation_but_the_document_needs_the_admin_token() -> None:
    """bearerAuth applies to all; only GET /api/openapi.json opts out, and says 401 nowhere."""
    doc = openapi.document()
    assert doc["security"] == [{"bearerAuth": []}]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            public = op.get("security") == []
            assert public == (path == openapi.DOCUMENT_PATH), (method, path)
            assert ("401" in op["responses"]) != public, (method, path)


def test_reply_schemas_list_every_key_and_forbid_others() -> None:
    """Replies are closed objects (so schemathesis catches a key added without the doc)."""
    schemas = openapi.document()["components"]["schemas"]
    for name in (
        "IncidentList",
        "IncidentSummary",
        "IncidentDetail",
        "DecisionReply",
        "PauseState",
    ):
        assert schemas[name]["additionalProperties"] is False, name
        assert set(schemas[name]["required"]) == set(schemas[name]["properties"]), name


def test_every_decision_result_has_a_documented_status() -> None:
    """Each engine result maps to a status, and each status is documented on approve/deny/ack."""
    assert set(DECISION_STATUS) == set(Result)
    for verb in ("approve", "deny", "ack"):
        documented = openapi.document()["paths"][f"/api/incidents/{{id}}/{verb}"]["post"]
        assert {str(s) for s in DECISION_STATUS.values()} <= set(documented["responses"]), verb
