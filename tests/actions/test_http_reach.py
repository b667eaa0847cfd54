"""http: a step reaches its target (or a host it lists) and nothing else, whatever the labels.

Requests go to real aiohttp servers on loopback addresses (127.0.0.1, 127.0.0.2, ::1).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest
from support.adminserver import AdminServer, admin_server
from support.engine_harness import EngineHarness

from remediator.actions.http import HttpAction
from remediator.actions.params import HttpParams
from remediator.config.models import Host
from remediator.errors import ActionError, TemplateError

SECRET = "s3cret-value"


def target(address: str) -> Host:
    return Host(name="api1", address=address, port=22, user="ops")


def context(host: Host | None, **labels: str) -> dict[str, Any]:
    """What the runner passes: labels, annotations and, with a host, `target`."""
    ctx: dict[str, Any] = {"labels": {"alertname": "ApiDown", **labels}, "annotations": {}}
    if host is not None:
        ctx["target"] = {"name": host.name, "address": host.address, "port": host.port}
    return ctx


def params(**values: Any) -> HttpParams:
    return HttpParams.model_validate({"headers_from_env": {"Authorization": "TOKEN"}, **values})


@pytest.fixture
async def server() -> AsyncIterator[AdminServer]:
    """The target's admin endpoint on 127.0.0.1."""
    async with admin_server("127.0.0.1") as admin:
        yield admin


@pytest.fixture
async def elsewhere() -> AsyncIterator[AdminServer]:
    """Another host (127.0.0.2) that must never see a request."""
    async with admin_server("127.0.0.2") as admin:
        yield admin


@pytest.fixture
async def action() -> AsyncIterator[HttpAction]:
    http = HttpAction({"TOKEN": SECRET}, retry_wait_s=0.01)
    yield http
    await http.close()


async def nothing() -> None:
    """before_send that does nothing."""


# --- when rules load ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://{{ target.address }}:8545{{ labels.path }}",  # the finding: path=@evil.example/x
        "http://{{ target.address }}:{{ labels.port }}/admin",
        "http://{{ labels.host }}:8545/admin",
        "{{ labels.scheme }}://{{ target.address }}/admin",
        "http://{{ target.address ~ labels.suffix }}/admin",
        "http://{{ target.address }}{{ annotations.x }}?a=1",
    ],
)
def test_labels_cannot_write_scheme_host_or_port(url: str) -> None:
    """A label or annotation anywhere before the path is a load error naming it."""
    with pytest.raises(ValueError, match=r"the scheme, host and port may use only literal text"):
        params(url=url)


def test_literal_host_must_be_listed_in_allowed_hosts() -> None:
    """A fixed host is an explicit choice: allowed_hosts lists it, else the rule does not load."""
    with pytest.raises(ValueError, match=r"host api-gw.internal is not the target's address"):
        params(url="https://api-gw.internal/admin/{{ labels.service }}/open")
    ok = params(
        url="https://api-gw.internal/admin/{{ labels.service }}/open",
        allowed_hosts=["API-GW.internal."],
    )
    assert ok.allowed_hosts == ["api-gw.internal"]


@pytest.mark.parametrize("entry", ["{{ labels.host }}", "evil.example/x", "a@b", "h:8080", ""])
def test_allowed_hosts_are_literal_host_names(entry: str) -> None:
    """allowed_hosts takes host names or addresses, never a template, a path or a port."""
    with pytest.raises(ValueError, match=r"allowed_hosts entry|not a host name"):
        params(url="http://{{ target.address }}/", allowed_hosts=[entry])


def test_url_blocks_are_rejected() -> None:
    """A `{% %}` block in a URL could hide where it goes: only text and expressions."""
    with pytest.raises(ValueError, match=r"only text and \{\{ \}\} expressions"):
        params(url="http://{{ target.address }}/{% if labels.x %}a{% endif %}")


# --- after rendering --------------------------------------------------------------------


def test_the_finding_is_refused_even_unchecked(elsewhere: AdminServer) -> None:
    """Were the load check skipped, the label is encoded: its `@` does not become userinfo."""
    checked = params(url="http://{{ target.address }}/")
    unchecked = checked.model_copy(
        update={"url": "http://{{ target.address }}:8545{{ labels.path }}"}
    )
    host = target("127.0.0.1")
    with pytest.raises(ActionError, match=r"^refusing URL: .*not a valid URL"):
        HttpAction({}).plan(unchecked, context(host, path=f"@{elsewhere.host}/steal"), host)


@pytest.mark.parametrize(
    "value",
    ["..", "../../x", "%2e%2e", "%2E.", "..%2fx", ".%2e/x", "%252e%252e", "..\\x", "..;x", "."],
)
def test_dot_segments_from_labels_are_refused(value: str) -> None:
    """`/admin/{{ labels.path }}` cannot leave /admin, encoded, double-encoded or backslashed."""
    host = target("127.0.0.1")
    p = params(url="http://{{ target.address }}:8545/admin/{{ labels.path }}")
    with pytest.raises(ActionError, match=r"dot segment|backslash"):
        HttpAction({}).plan(p, context(host, path=value), host)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://{{ target.address }}/admin/../x", "dot segment"),
        ("http://{{ target.address }}/admin/%2e%2e/x", "dot segment"),
        ("http://{{ target.address }}/a\\b", "backslash"),
        ("http://x@{{ target.address }}/admin", "userinfo"),
        ("http://{{ target.address }}.evil.example/admin", "neither the target's address"),
        ("http://{{ target.name }}/admin", r"host api1 is neither the target's address \(127"),
        ("http://{{ target.address }}/a%00b", "control character"),
    ],
)
def test_rendered_url_is_checked(url: str, reason: str) -> None:
    """Whatever the template, the rendered URL goes only to the target, inside its path."""
    host = target("127.0.0.1")
    with pytest.raises(ActionError, match=reason):
        HttpAction({}).plan(params(url=url), context(host), host)


def test_a_step_without_target_needs_allowed_hosts() -> None:
    """No target: only allowed_hosts may be called, and `{{ target }}` is undefined."""
    p = params(url="http://{{ target.address }}/admin", allowed_hosts=["127.0.0.1"])
    with pytest.raises(TemplateError, match="'target' is undefined"):
        HttpAction({}).plan(p, context(None), None)


async def test_labels_are_percent_encoded_and_arrive_as_one_value(
    server: AdminServer, action: HttpAction
) -> None:
    """A label is one path segment and one query value; the request and secret reach the target."""
    host = target("127.0.0.1")
    p = params(
        url=f"http://{{{{ target.address }}}}:{server.port}/b/{{{{ labels.x }}}}?q={{{{ labels.x }}}}"
    )
    hostile = "a b/c?d=1&e#f@g%41"
    outcome = await action.execute(action.plan(p, context(host, x=hostile), host), nothing)
    assert outcome.ok
    (seen,) = server.seen
    path, _, query = seen.path.partition("?")
    first, segment = path.rsplit("/", 1)
    assert (first, unquote(segment)) == ("/b", hostile)
    assert parse_qs(query) == {"q": [hostile]}
    assert seen.headers["Authorization"] == SECRET


def test_urlquote_is_not_applied_twice() -> None:
    """An explicit `| urlquote` in a URL encodes once; in a body it encodes too."""
    host = target("127.0.0.1")
    p = params(
        url="http://{{ target.address }}/b/{{ labels.x | urlquote }}",
        json={"link": "/b/{{ labels.x | urlquote }}"},
    )
    plan = HttpAction({}).plan(p, context(host, x="a/b c"), host)
    assert plan.request is not None
    assert plan.request["url"] == "http://127.0.0.1/b/a%2Fb%20c"
    assert plan.request["json"] == {"link": "/b/a%2Fb%20c"}


async def test_ipv6_target_in_brackets(action: HttpAction) -> None:
    """An IPv6 target address is inserted as it is (not encoded) inside brackets."""
    async with admin_server("::1") as v6:
        host = target("::1")
        p = params(url=f"http://[{{{{ target.address }}}}]:{v6.port}/admin")
        outcome = await action.execute(action.plan(p, context(host), host), nothing)
    assert outcome.ok
    assert [s.path for s in v6.seen] == ["/admin"]


async def test_allowed_host_is_reached_without_a_target(
    elsewhere: AdminServer, action: HttpAction
) -> None:
    """A step may call a host its allowed_hosts lists, with or without a target."""
    p = params(url=f"http://127.0.0.2:{elsewhere.port}/admin", allowed_hosts=["127.0.0.2"])
    outcome = await action.execute(action.plan(p, context(None), None), nothing)
    assert outcome.ok
    assert elsewhere.seen[0].headers["Authorization"] == SECRET


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirect_to_another_host_is_not_followed(
    server: AdminServer, elsewhere: AdminServer, action: HttpAction, status: int
) -> None:
    """A redirect is an unexpected answer: the step fails and the other host sees nothing."""
    server.statuses = [status]
    server.location = f"{elsewhere.url}/steal"
    host = target("127.0.0.1")
    p = params(url=f"http://{{{{ target.address }}}}:{server.port}/admin")
    outcome = await action.execute(action.plan(p, context(host), host), nothing)
    assert (outcome.ok, outcome.details) == (False, {"status": status})
    assert len(server.seen) == 1
    assert elsewhere.seen == []


async def test_proxy_settings_in_the_environment_are_ignored(
    server: AdminServer, elsewhere: AdminServer, action: HttpAction, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY cannot route the request (and its secret) through another host."""
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, elsewhere.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    host = target("127.0.0.1")
    p = params(url=f"http://{{{{ target.address }}}}:{server.port}/admin")
    outcome = await action.execute(action.plan(p, context(host), host), nothing)
    assert outcome.ok
    assert len(server.seen) == 1
    assert elsewhere.seen == []


# --- in the engine ----------------------------------------------------------------------

RULE = """
rules:
  - name: breaker
    match: ['alertname = ApiDown']
    target: "{{ labels.instance }}"
    steps:
      - action: http
        params:
          url: "http://{{ target.address }}:PORT/admin/{{ labels.path }}"
          headers_from_env: {Authorization: REMEDIATOR_ADMIN_TOKEN}
    escalate: critical
"""


async def test_refusal_is_a_step_decision_and_no_request(
    tmp_path: Path, server: AdminServer
) -> None:
    """A hostile path label: `step_refused` naming why, the incident handed over, nothing sent."""
    rules = RULE.replace("PORT", str(server.port))
    h = await EngineHarness.start(tmp_path, rules, None, hosts={"api1": {"address": "127.0.0.1"}})
    try:
        await h.fire({"alertname": "ApiDown", "instance": "api1", "path": "../../x"})
    finally:
        await h.close()
    audit = dict(h.audit())
    assert "dot segment" in audit["step_refused"]["reason"]
    assert h.events()[:5] == [
        "matched",
        "step_scheduled",
        "step_refused",
        "exhausted",
        "escalation_started",
    ]
    assert server.seen == []
