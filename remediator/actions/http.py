"""`http`: one call to an admin endpoint; retried only where nothing was acted on.

Connection errors (refused, unreachable, connect timeout) happen before the request is
sent, and a 5xx says the server did not do it, so both are retried up to `attempts`.
A 4xx (or any other unexpected status) is a final failure. A timeout or a lost
connection after the request went out may or may not have acted: the outcome is
unknown and it is never re-sent.

The request goes only to the target's address or a host the step lists in
`allowed_hosts` (actions/urls.py), never follows a redirect, ignores proxy settings
in the environment, and carries `headers_from_env` secrets only there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from remediator.actions.base import OUTPUT_LIMIT as BODY_LIMIT
from remediator.actions.base import BeforeSend, Outcome, Plan, clip_output
from remediator.actions.params import HttpParams
from remediator.actions.sshpool import SshPool
from remediator.actions.urls import check_target_url, normalize_host
from remediator.config.models import Host, Model
from remediator.errors import ActionError, ConnectError, OutcomeUnknown
from remediator.templates import UrlSafe, render, render_url


@dataclass(frozen=True)
class Response:
    """The status and (clipped) body of an answer."""

    status: int
    body: str


@dataclass(frozen=True)
class _Call:
    """A planned request with its secrets filled in; lives only while it is sent."""

    method: str
    url: str
    headers: dict[str, str]
    json: Any
    attempts: int
    expect_status: list[int] | None
    timeout_s: float

    @classmethod
    def from_plan(cls, plan: Plan, secret_headers: dict[str, str]) -> _Call:
        """Combine the plan's request with the headers read from the environment."""
        req = plan.request
        assert req is not None
        assert plan.timeout_s is not None
        return cls(
            method=req["method"],
            url=req["url"],
            headers={**req["headers"], **secret_headers},
            json=req["json"],
            attempts=req["attempts"],
            expect_status=req["expect_status"],
            timeout_s=plan.timeout_s,
        )

    @property
    def where(self) -> str:
        """`POST http://...` for messages."""
        return f"{self.method} {self.url}"


class _ServerError(Exception):
    """A 5xx the step did not expect: retried, then reported as the final answer."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status}")
        self.response = response


def _render_json(value: Any, context: dict[str, Any]) -> Any:
    """Render every string inside the body (keys stay as written)."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, dict):
        return {k: _render_json(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_json(v, context) for v in value]
    return value


def _target_url(params: HttpParams, context: dict[str, Any], host: Host | None) -> str:
    """Render the URL (labels percent-encoded, target values as they are) and check it."""
    url_context = dict(context)
    if host is not None:
        target = context.get("target", {})
        url_context["target"] = {
            k: UrlSafe(v) if isinstance(v, str) else v for k, v in target.items()
        }
    rendered = render_url(params.url, url_context)
    try:
        allowed = {*params.allowed_hosts, *([normalize_host(host.address)] if host else [])}
        return str(check_target_url(rendered, allowed, host.address if host else None))
    except ValueError as exc:
        raise ActionError(f"refusing URL: {exc}") from None


def _header_value(name: str, value: str, source: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ActionError(f"header {name} ({source}) contains a line break; refusing to send it")
    return value


class HttpAction:
    """One request per step over a session owned by this action; `close()` releases it."""

    name = "http"
    params_model: type[Model] = HttpParams
    needs_ssh = False
    always_needs_approval = False

    def __init__(self, environ: Mapping[str, str] | None = None, retry_wait_s: float = 0.5):
        self.environ = os.environ if environ is None else environ
        self.retry_wait_s = retry_wait_s
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def build(cls, pool: SshPool | None, environ: Mapping[str, str] | None) -> Self:
        """`headers_from_env` secrets from the daemon's environment."""
        return cls(environ)

    def plan(self, params: HttpParams, context: dict[str, Any], host: Host | None) -> Plan:
        """Render URL, headers and body; the URL must reach the target or an allowed host."""
        url = _target_url(params, context, host)
        headers = {
            k: _header_value(k, render(v, context), "rendered") for k, v in params.headers.items()
        }
        request = {
            "method": params.method,
            "url": url,
            "headers": headers,
            "headers_from_env": dict(params.headers_from_env),
            "json": _render_json(params.json_, context),
            "attempts": params.attempts,
            "expect_status": params.expect_status,
        }
        return Plan(self.name, host, request=request, timeout_s=params.timeout)

    async def execute(self, plan: Plan, before_send: BeforeSend) -> Outcome:
        """Send it, retrying connection errors and 5xx; report the final answer."""
        call = _Call.from_plan(plan, self._secret_headers(plan))
        await before_send()
        try:
            response = await self._send(call)
        except _ServerError as exc:
            response = exc.response
        except ConnectError as exc:
            raise ConnectError(f"{exc} (tried {call.attempts} times)") from None
        ok = _expected(response.status, call.expect_status)
        output = clip_output(f"HTTP {response.status}\n{response.body}".strip())
        error = None if ok else f"{call.where} answered HTTP {response.status}"
        return Outcome(ok=ok, output=output, error=error, details={"status": response.status})

    def _secret_headers(self, plan: Plan) -> dict[str, str]:
        """Read credentials at the last moment, so they are never part of a plan."""
        assert plan.request is not None
        out = {}
        for header, var in plan.request["headers_from_env"].items():
            value = self.environ.get(var)
            if value is None:
                raise ActionError(f"header {header}: environment variable {var} is not set")
            out[header] = _header_value(header, value, f"${var}")
        return out

    async def _send(self, call: _Call) -> Response:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((ConnectError, _ServerError)),
            stop=stop_after_attempt(call.attempts),
            wait=wait_exponential(multiplier=self.retry_wait_s, max=10),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                response = await self._once(call)
        return response

    async def _once(self, call: _Call) -> Response:
        try:
            async with self._client().request(
                call.method,
                call.url,
                headers=call.headers,
                json=call.json,
                timeout=aiohttp.ClientTimeout(total=call.timeout_s),
                allow_redirects=False,  # a redirect must not carry the step to another host
            ) as resp:
                response = Response(resp.status, await _read_body(resp))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _map_error(exc, call) from None
        if response.status >= 500 and not _expected(response.status, call.expect_status):
            raise _ServerError(response)
        return response

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No keep-alive: a reused connection that the server closed would fail after
            # sending, which is indistinguishable from a lost answer.
            connector = aiohttp.TCPConnector(force_close=True)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    async def close(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _expected(status: int, expect_status: list[int] | None) -> bool:
    return status in expect_status if expect_status else 200 <= status < 300


async def _read_body(resp: aiohttp.ClientResponse) -> str:
    body = bytearray()
    async for chunk in resp.content.iter_chunked(4096):
        body += chunk
        if len(body) > BODY_LIMIT:
            break
    return body.decode(errors="replace")


def _map_error(exc: aiohttp.ClientError | TimeoutError, call: _Call) -> Exception:
    """Before sending: ConnectError (retried) or ActionError; after: OutcomeUnknown."""
    where = call.where
    if isinstance(exc, aiohttp.InvalidURL):
        return ActionError(f"{where}: invalid URL: {exc}")
    if isinstance(exc, aiohttp.ClientSSLError):
        return ActionError(f"{where}: TLS failed: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return ConnectError(f"{where}: cannot connect: {exc}")
    if isinstance(exc, TimeoutError):
        return OutcomeUnknown(f"{where}: sent, but no complete answer within {call.timeout_s:g}s")
    return OutcomeUnknown(f"{where}: sent, but the connection failed: {exc}")
