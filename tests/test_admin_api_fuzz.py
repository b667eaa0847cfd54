"""Property test of the admin API on a real daemon: generated requests never get a 500.

schemathesis generates valid and invalid requests for every operation of the published
OpenAPI document (boundary values, wrong types, odd strings, missing bodies) and sends
them with the admin token to a daemon holding real incidents; every answer must be
documented, in the documented shape, and not a server error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support import storeview
from support.daemon import ADMIN_TOKEN, Daemon, webhook, write_config

from remediator import openapi

RULES = """\
rules:
  - name: page-only
    match: [alertname = Page]
    escalate: critical
  - name: risky
    match: [alertname = Risky]
    steps:
      - action: script
        params: {argv: ["true"]}
        approval: required
"""
POLICY = (
    "approvals:\n  default:\n    approvers: [U024BE7LH]\n"
    "    channel: '#ops-approvals'\n    timeout: 15m\n    on_timeout: escalate\n"
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SCHEMA = schemathesis.openapi.from_dict(openapi.document())


def alert(name: str) -> dict[str, Any]:
    return webhook({"alertname": name, "instance": "web1:9100"})


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon with one paging incident and one waiting for approval."""
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    d = Daemon.for_config(write_config(workdir, RULES, policies=POLICY)).start()
    assert d.post_webhook(alert("Page")) == 200
    assert d.post_webhook(alert("Risky")) == 200
    storeview.wait_for("two incidents", lambda: len(storeview.incidents(d.db)) == 2)
    yield d
    assert d.stop() == 0
    crashes = [line for line in d.logs().splitlines() if "Traceback" in line]
    assert not crashes, "a handler raised:\n" + "\n".join(c[-400:] for c in crashes)


@SCHEMA.parametrize()
@settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    database=None,
    # each example is an HTTP round trip to a daemon writing SQLite: slow by Hypothesis's measure
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_request_gets_a_server_error(case: schemathesis.Case, daemon: Daemon) -> None:
    """Every generated request gets a documented status and body, never a 5xx."""
    case.call_and_validate(
        base_url=daemon.url,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        checks=CHECKS,
        timeout=10,
    )
