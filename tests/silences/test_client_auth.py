"""What remediator sends Alertmanager to authenticate, read from the environment."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from remediator.config.alertmanager import AlertmanagerConfig
from remediator.silences.client import AlertmanagerClient


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP server answering /api/v2/status, recording each Authorization header."""
    seen: list[str] = []

    async def status(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"uptime": "2026-01-01T00:00:00.123456789Z"})

    app = web.Application()
    app.router.add_get("/prefix/api/v2/status", status)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/prefix/", seen
    await runner.cleanup()


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ({"bearer_token_env": "AM_TOKEN"}, "Bearer s3cret"),
        (
            {"basic_auth": {"username_env": "AM_USER", "password_env": "AM_PASSWORD"}},
            "Basic b3BzOnBhc3M6d29yZA==",  # ops:pass:word
        ),
        ({}, ""),
    ],
)
async def test_auth_comes_from_the_named_variables(
    recorder: tuple[str, list[str]], auth: dict[str, object], expected: str
) -> None:
    """A bearer token or basic auth (user and password each from its variable) goes with
    every call, under the URL's own path; without either, no Authorization header. The
    uptime is read from Alertmanager's start time (nanoseconds allowed)."""
    url, seen = recorder
    environ = {"AM_TOKEN": "s3cret", "AM_USER": "ops", "AM_PASSWORD": "pass:word"}
    cfg = AlertmanagerConfig.model_validate({"url": url, **auth})
    client = AlertmanagerClient.from_config(cfg, environ)
    try:
        assert await client.uptime_s(1_767_225_600.5) == pytest.approx(0.376544, abs=1e-6)
    finally:
        await client.close()
    assert seen == [expected]
