"""http: a real aiohttp server on loopback; retries on connection errors and 5xx only."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.adminserver import AdminServer, admin_server
from support.sshd import free_port

from remediator.actions.http import HttpAction
from remediator.actions.params import HttpParams
from remediator.errors import ActionError, ConnectError, OutcomeUnknown

CONTEXT = {"labels": {"alertname": "ApiDown", "breaker": "payments"}, "annotations": {}}


@pytest.fixture
async def server() -> AsyncIterator[AdminServer]:
    """An aiohttp server on 127.0.0.1 that records every request."""
    async with admin_server() as admin:
        yield admin


@pytest.fixture
async def action() -> AsyncIterator[HttpAction]:
    """The action with a fake environment holding one secret; its session closed after."""
    http = HttpAction({"ADMIN_TOKEN": "s3cret-value"}, retry_wait_s=0.01)
    yield http
    await http.close()


class Sends:
    """Counts before_send calls."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1


def params(**values: Any) -> HttpParams:
    """Step params; without a target, the loopback server is listed in allowed_hosts."""
    return HttpParams.model_validate({"allowed_hosts": ["127.0.0.1"], **values})


async def test_method_url_headers_and_json_arrive(server: AdminServer, action: HttpAction) -> None:
    """Templates render into URL, headers and body strings; the secret header is read from env."""
    p = params(
        method="PUT",
        url=server.url + "/admin/circuit-breaker/{{ labels.breaker }}?state=open",
        headers={"X-Alert": "{{ labels.alertname }}"},
        headers_from_env={"Authorization": "ADMIN_TOKEN"},
        json={"open": True, "reason": "{{ labels.alertname }}", "n": [1, "{{ labels.breaker }}"]},
    )
    sends = Sends()
    outcome = await action.execute(action.plan(p, CONTEXT, None), sends)
    assert outcome.ok
    assert outcome.output == "HTTP 200\nanswer 200"
    assert sends.count == 1
    (seen,) = server.seen
    assert (seen.method, seen.path) == ("PUT", "/admin/circuit-breaker/payments?state=open")
    assert seen.headers["X-Alert"] == "ApiDown"
    assert seen.headers["Authorization"] == "s3cret-value"
    assert seen.body == {"open": True, "reason": "ApiDown", "n": [1, "payments"]}


async def test_5xx_is_retried_until_it_succeeds(server: AdminServer, action: HttpAction) -> None:
    """503, 503, then 200: three requests and the step succeeds."""
    server.statuses = [503, 503]
    outcome = await action.execute(action.plan(params(url=server.url), CONTEXT, None), Sends())
    assert outcome.ok
    assert len(server.seen) == 3


async def test_5xx_every_time_fails_after_attempts(server: AdminServer, action: HttpAction) -> None:
    """A server answering 500 to each of `attempts` requests fails the step with that status."""
    server.statuses = [500, 500]
    p = params(url=server.url + "/x", attempts=2)
    outcome = await action.execute(action.plan(p, CONTEXT, None), Sends())
    assert not outcome.ok
    assert outcome.error == f"POST {server.url}/x answered HTTP 500"
    assert len(server.seen) == 2


async def test_4xx_is_final_after_one_request(server: AdminServer, action: HttpAction) -> None:
    """400 is not retried: one request, ok False."""
    server.statuses = [400]
    outcome = await action.execute(action.plan(params(url=server.url), CONTEXT, None), Sends())
    assert not outcome.ok
    assert outcome.details == {"status": 400}
    assert len(server.seen) == 1


async def test_expect_status_decides_success(server: AdminServer, action: HttpAction) -> None:
    """With expect_status [204], a 200 is a failure and a listed 503 is not retried."""
    server.statuses = [200, 503]
    p = params(url=server.url, expect_status=[204, 503])
    first = await action.execute(action.plan(p, CONTEXT, None), Sends())
    second = await action.execute(action.plan(p, CONTEXT, None), Sends())
    assert (first.ok, second.ok) == (False, True)
    assert len(server.seen) == 2


async def test_connection_refused_is_retried_then_fails(action: HttpAction) -> None:
    """Nothing listening: `attempts` connection attempts, then a ConnectError."""
    p = params(url=f"http://127.0.0.1:{free_port()}/", attempts=4)
    sends = Sends()
    with pytest.raises(ConnectError, match=r"cannot connect: .* \(tried 4 times\)$"):
        await action.execute(action.plan(p, CONTEXT, None), sends)
    assert sends.count == 1


async def test_read_timeout_after_sending_is_unknown_and_not_resent(
    server: AdminServer, action: HttpAction
) -> None:
    """A request sent but unanswered within the timeout is `unknown`, never sent again."""
    server.delay_s = 2.0
    p = params(url=server.url, timeout="200ms")
    with pytest.raises(OutcomeUnknown, match=r"sent, but no complete answer within 0.2s"):
        await action.execute(action.plan(p, CONTEXT, None), Sends())
    assert len(server.seen) == 1


async def test_secret_header_never_appears_in_the_plan(server: AdminServer) -> None:
    """headers_from_env values and secret-looking rendered headers are absent from describe()."""
    http = HttpAction({"ADMIN_TOKEN": "s3cret-value"})
    p = params(
        url=server.url,
        headers={"X-Api-Key": "{{ labels.breaker }}-key", "X-Alert": "{{ labels.alertname }}"},
        headers_from_env={"Authorization": "ADMIN_TOKEN"},
    )
    described = http.plan(p, CONTEXT, None).describe()
    text = json.dumps(described)
    assert "s3cret-value" not in text
    assert "payments-key" not in text
    assert described["request"]["headers"] == {"X-Api-Key": "<redacted>", "X-Alert": "ApiDown"}
    assert described["request"]["headers_from_env"] == {"Authorization": "ADMIN_TOKEN"}


async def test_missing_secret_fails_before_sending(server: AdminServer) -> None:
    """An unset headers_from_env variable is an ActionError; nothing is sent."""
    http = HttpAction({})
    sends = Sends()
    p = params(url=server.url, headers_from_env={"Authorization": "ADMIN_TOKEN"})
    with pytest.raises(ActionError, match="environment variable ADMIN_TOKEN is not set"):
        await http.execute(http.plan(p, CONTEXT, None), sends)
    assert (sends.count, server.seen) == (0, [])


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x/", "http:///nohost", "/relative"])
def test_non_http_url_is_rejected_at_check_time(url: str) -> None:
    """A literal URL must be http(s) with a host when the rule loads."""
    with pytest.raises(
        ValueError, match=r"is not an http:// or https:// URL|is a URL without a host"
    ):
        params(url=url)


@pytest.mark.parametrize("url", ["{{ labels.u }}", "{{ labels.scheme }}://127.0.0.1/"])
def test_url_from_a_label_is_rejected_at_check_time(url: str) -> None:
    """A label can no longer supply the scheme or the whole URL: the rule does not load."""
    with pytest.raises(ValueError, match=r"may use only literal text and target\.\*"):
        params(url=url)


def test_header_injection_from_a_label_is_refused() -> None:
    """A rendered header value with a line break never reaches the wire."""
    p = params(url="http://127.0.0.1/", headers={"X-Alert": "{{ labels.x }}"})
    with pytest.raises(ActionError, match="contains a line break"):
        HttpAction({}).plan(p, {"labels": {"x": "a\r\nX-Admin: yes"}}, None)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"method": "TRACE"}, "Input should be"),
        ({"attempts": 0}, "greater than or equal to 1"),
        ({"headers": {"Bad Name": "x"}}, "not a valid HTTP header name"),
        ({"headers": {"X-Alert\n": "x"}}, "not a valid HTTP header name"),
        ({"headers_from_env": {"Authorization": "not-a-var"}}, "not an environment variable"),
        ({"headers_from_env": {"Authorization": "TOKEN\n"}}, "not an environment variable"),
        (
            {"headers": {"authorization": "x"}, "headers_from_env": {"Authorization": "T"}},
            "set in headers and headers_from_env",
        ),
        ({"json": {"a": "{{ unclosed"}}, "invalid template"),
        ({"expect_status": [99]}, "greater than or equal to 100"),
        ({"body": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_params_are_checked_when_rules_load(bad: dict[str, Any], message: str) -> None:
    """Mistakes in a rule's http params are validation errors with a clear message."""
    with pytest.raises(ValueError, match=message):
        params(url="http://127.0.0.1/", **bad)
