"""A rule's blast radius (`max_targets: N per WINDOW`) and a target that renders empty:
both refuse the step and page, never act wider. On both store backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from support.engine_harness import EngineHarness
from support.sshd import SshServer

RULE = """\
rules:
  - name: restart
    match: [alertname = Down]
    target: "{{ labels.instance }}"
    steps:
      - action: ssh
        params: {argv: [probe-stub, "{{ labels.instance }}"]}
        verify: 5m
    escalate: critical
    cooldown: 0s
    max_targets: 2 per 1h
"""
Start = Callable[[], Awaitable[EngineHarness]]


@pytest.fixture
async def start(tmp_path: Path, sshd: SshServer, store_url: str) -> AsyncIterator[Start]:
    """A harness on RULE over hosts v1-v4."""
    sshd.install_recorder("probe-stub")
    started: list[EngineHarness] = []

    async def make() -> EngineHarness:
        host = {"address": "127.0.0.1", "port": sshd.port}
        h = await EngineHarness.start(
            tmp_path,
            RULE,
            sshd,
            hosts={n: dict(host) for n in ("v1", "v2", "v3", "v4")},
            store_url=store_url,
        )
        started.append(h)
        return h

    yield make
    for h in started:
        await h.close()


def down(instance: str, n: int = 0) -> dict[str, str]:
    return {"alertname": "Down", "instance": instance, "n": str(n)}


def ran(sshd: SshServer) -> list[str]:
    return [argv[0] for argv in sshd.calls("probe-stub")]


async def test_a_third_target_within_the_window_is_refused_and_paged(
    start: Start, sshd: SshServer
) -> None:
    """max_targets 2 per 1h: v1 and v2 are restarted; v3 is not, its incident pages with a
    `guard_refused` entry naming the targets acted on; v1 again is no wider and runs; an
    hour after the first restarts a new target runs again."""
    h = await start()
    await h.fire(down("v1"))
    await h.fire(down("v2"))
    await h.fire(down("v3"))
    assert ran(sshd) == ["v1", "v2"]
    third = h.incidents()[2]
    assert third["state"] == "escalating"
    refused = dict(h.audit(third["id"]))["guard_refused"]
    assert refused["guard"] == "max_targets"
    assert refused["targets"] == ["v1", "v2"]
    assert refused["until"] == pytest.approx(h.clock.now() + 3600)
    assert refused["reason"].startswith(
        "max_targets: restart acted on 2 targets in the last 1h (limit 2: v1, v2); "
        "not widened to v3"
    )
    await h.resolve(down("v1"))
    await h.fire(down("v1", 1))
    assert ran(sshd) == ["v1", "v2", "v1"]
    await h.advance(3600)
    await h.fire(down("v4"))
    assert ran(sshd) == ["v1", "v2", "v1", "v4"]


async def test_a_target_that_renders_empty_is_refused_never_all_hosts(
    start: Start, sshd: SshServer
) -> None:
    """An alert whose `instance` label is empty renders the target to nothing: the
    incident is refused with that reason and paged; no host is acted on."""
    h = await start()
    await h.fire(down(""))
    await h.advance(600)
    assert ran(sshd) == []
    [incident] = h.incidents()
    assert incident["state"] == "escalating"
    assert incident["target"] is None
    refused = dict(h.audit(incident["id"]))["target_refused"]
    assert refused["reason"].startswith("target rendered empty")
