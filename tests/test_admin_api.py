"""Admin API edge cases on a real daemon: inputs that once answered 500, and the document.

Most cases were crashes (500) that schemathesis or probing found: ids past SQLite's
INTEGER (OverflowError), Unicode digits such as `²` (str.isdigit() says yes, int() says
no), ids longer than int() parses, and JSON strings holding a lone surrogate (`\\ud800`),
which json.loads accepts and SQLite cannot encode. The rest pin the error messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from support import storeview
from support.conflicts import approval_asked, losing, serving
from support.daemon import ADMIN_TOKEN, Daemon, write_config

from remediator import openapi
from remediator.api import AdminApi
from remediator.auth import AdminTokens

RULES = "rules:\n  - name: page-only\n    match: [alertname = Page]\n    escalate: critical\n"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
ALERT = {
    "version": "4",
    "status": "firing",
    "alerts": [
        {"status": "firing", "labels": {"alertname": "Page"}, "startsAt": "2026-11-23T09:00:00Z"}
    ],
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon with incident 1."""
    workdir: Path = tmp_path_factory.mktemp("api")
    d = Daemon.for_config(write_config(workdir, RULES)).start()
    assert d.post_webhook(ALERT) == 200
    storeview.wait_for("incident 1", lambda: storeview.incidents(d.db))
    yield d
    assert d.stop() == 0
    assert "Traceback" not in d.logs()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        (
            "GET",
            "/api/incidents/9223372036854775808",
            None,
            404,
            "incident 9223372036854775808 does not exist",
        ),
        ("GET", "/api/incidents/%C2%B2", None, 404, "incident \u00b2 does not exist"),
        ("GET", "/api/incidents/" + "1" * 5000, None, 404, f"incident {'1' * 5000} does not exist"),
        ("GET", "/api/incidents/-1", None, 404, "incident -1 does not exist"),
        ("GET", "/api/incidents/1e3", None, 404, "incident 1e3 does not exist"),
        (
            "POST",
            "/api/incidents/%D9%A3/ack",
            b'{"by": "me"}',
            404,
            "incident \u0663 does not exist",
        ),
        (
            "POST",
            "/api/incidents/99999999999999999999/ack",
            b'{"by": "me"}',
            404,
            "incident 99999999999999999999 does not exist",
        ),
        ("GET", "/api/incidents?limit=%C2%B2", None, 400, "limit must be a number from 1 to 1000"),
        ("GET", "/api/incidents?limit=0", None, 400, "limit must be a number from 1 to 1000"),
        (
            "POST",
            "/api/incidents/1/ack",
            b'{"by": "\\ud800"}',
            400,
            'body must be JSON (UTF-8, no lone surrogates): {"by": "...", "reason": "..."}',
        ),
        (
            "POST",
            "/api/incidents/1/deny",
            b'{"by": "me", "reason": "\\udfff"}',
            400,
            'body must be JSON (UTF-8, no lone surrogates): {"by": "...", "reason": "..."}',
        ),
        (
            "POST",
            "/api/pause",
            b'{"reason": "\\ud800"}',
            400,
            'body must be JSON (UTF-8, no lone surrogates): {"reason": "..."}',
        ),
        (
            "POST",
            "/api/pause",
            b"\xff\xfe",
            400,
            'body must be JSON (UTF-8, no lone surrogates): {"reason": "..."}',
        ),
        ("POST", "/api/pause", b"[]", 400, 'body must be a JSON object: {"reason": "..."}'),
        (
            "POST",
            "/api/pause",
            b'{"reason": 5}',
            400,
            '"reason": Input should be a valid string (body: {"reason": "..."})',
        ),
        (
            "POST",
            "/api/incidents/1/ack",
            b'{"by": 5}',
            400,
            '"by" (who decides: an approver name or Slack user id), when given, must be a'
            " non-blank string",
        ),
        (
            "POST",
            "/api/incidents/1/ack",
            b'{"by": " "}',
            400,
            '"by" (who decides: an approver name or Slack user id), when given, must be a'
            " non-blank string",
        ),
        (
            "POST",
            "/api/incidents/1/ack",
            b"",
            400,
            '"by" (who decides: an approver name or Slack user id) is required with the shared'
            " admin token; a personal token (server.admin_tokens) decides as its owner",
        ),
    ],
)
def test_bad_input_is_a_client_error_not_a_crash(
    daemon: Daemon, method: str, path: str, body: bytes | None, status: int, error: str
) -> None:
    """The answer is the documented status with a JSON error saying what to fix."""
    got, raw = daemon.request(method, path, body, AUTH)
    assert (got, json.loads(raw)) == (status, {"error": error})


@pytest.mark.parametrize("token", ["\u00ff", ADMIN_TOKEN + "\u00ff", "\u00c3"])
def test_a_token_that_is_not_utf8_is_a_401(daemon: Daemon, token: str) -> None:
    """Bytes that are not UTF-8 in the bearer token are a wrong token, not a crash."""
    status, raw = daemon.request(
        "GET", "/api/incidents", None, {"Authorization": f"Bearer {token}"}
    )
    assert (status, json.loads(raw)) == (401, {"error": "missing or wrong admin token"})


def test_the_document_is_served_without_a_token(daemon: Daemon) -> None:
    """GET /api/openapi.json needs no Authorization and is the package's document."""
    status, raw = daemon.request("GET", openapi.DOCUMENT_PATH)
    assert status == 200
    assert json.loads(raw) == json.loads(json.dumps(openapi.document()))
    assert daemon.request("GET", "/api/incidents")[0] == 401


async def test_an_approve_that_loses_a_race_to_another_replica_is_decided_again(
    tmp_path: Path,
) -> None:
    """POST /api/incidents/1/approve loses a race on the store (another replica wrote the
    incident first: its transaction rolled back): it is decided again on what the winner
    committed, and answers `approved`. Before, the operator got a 503 for a decision a
    second try would have recorded."""
    h = await approval_asked(tmp_path, None)
    try:
        ctx, store = losing(h)
        app = web.Application()
        AdminApi(ctx, AdminTokens({"alice": "alice-token"}, None)).routes(app)
        async with serving(app) as client:
            sent = await client.post(
                "/api/incidents/1/approve",
                json={},
                headers={"Authorization": "Bearer alice-token"},
            )
            reply = await sent.json()
        assert sent.status == 200, reply
        assert reply["message"] == "approved by alice"
        assert store.lost == 1
        assert h.events(1).count("approved") == 1
    finally:
        await h.close()
