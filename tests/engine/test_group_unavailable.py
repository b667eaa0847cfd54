"""Group `max_unavailable` as a PodDisruptionBudget: a member stays unavailable while it
has an open incident (exhausted, escalating, acknowledged too), until that incident closes;
a percentage of the group's inventory members. On both store backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

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
    hold_timeout: 2h
"""
Start = Callable[[str], Awaitable[EngineHarness]]


@pytest.fixture
async def start(tmp_path: Path, sshd: SshServer, store_url: str) -> AsyncIterator[Start]:
    """A harness on RULE, validators v1-v4 in group `validators` limited by `limit`."""
    sshd.install_recorder("probe-stub")
    started: list[EngineHarness] = []

    async def make(limit: str) -> EngineHarness:
        validators = {"address": "127.0.0.1", "port": sshd.port, "groups": ["validators"]}
        h = await EngineHarness.start(
            tmp_path,
            RULE,
            sshd,
            hosts={n: dict(validators) for n in ("v1", "v2", "v3", "v4")},
            policies=f"safety:\n  groups:\n    validators: {{max_unavailable: {limit}}}\n",
            store_url=store_url,
        )
        started.append(h)
        return h

    yield make
    for h in started:
        await h.close()


def down(instance: str) -> dict[str, str]:
    return {"alertname": "Down", "instance": instance}


def ran(sshd: SshServer) -> list[str]:
    return [argv[0] for argv in sshd.calls("probe-stub")]


def held(h: EngineHarness, incident_id: int) -> dict[str, Any]:
    return dict(h.audit(incident_id))["guard_held"]


async def test_an_exhausted_member_still_firing_holds_the_next_one(
    start: Start, sshd: SshServer
) -> None:
    """2 of 4 validators down: v1's restart did not help (its verify window ended, the
    incident is escalating, the alert still fires); v2 is held the whole time, not
    restarted when v1's window ends, and runs once v1's alert resolves. Before, v2 was
    restarted at 5m, two validators down together."""
    h = await start("1")
    await h.fire(down("v1"))
    await h.fire(down("v2"))
    assert ran(sshd) == ["v1"]
    await h.advance(300)  # v1's verify window ends: exhausted, paged, still firing
    assert h.incidents()[0]["state"] == "escalating"
    await h.advance(1800)
    assert ran(sshd) == ["v1"]
    assert h.incidents()[1]["state"] == "pending"
    reason = held(h, 2)["reason"]
    assert reason.startswith("group validators: 1 member(s) unavailable (v1 ")
    await h.resolve(down("v1"))
    await h.advance(0)
    assert ran(sshd) == ["v1", "v2"]


async def test_members_held_before_any_step_do_not_hold_each_other(
    start: Start, sshd: SshServer
) -> None:
    """v1 and v2 fire together under max_unavailable 1; v1 runs, v2 waits. A third member,
    v3, firing while v2 is only held (never acted on) is held by v1 alone, and when v1
    resolves exactly one of the two waiting members runs: a held member is not
    unavailable, or the two would wait for each other until paged."""
    h = await start("1")
    for name in ("v1", "v2", "v3"):
        await h.fire(down(name))
    assert ran(sshd) == ["v1"]
    assert "1 member(s) unavailable (v1 verifying)" in held(h, 3)["reason"]
    await h.resolve(down("v1"))
    await h.advance(0)
    assert ran(sshd) == ["v1", "v2"]
    assert h.incidents()[2]["state"] == "pending"


async def test_a_percentage_of_the_group_rounds_down(start: Start, sshd: SshServer) -> None:
    """max_unavailable "50%" of 4 validators is 2: v1 and v2 run, v3 waits, naming the
    limit as the group's share."""
    h = await start('"50%"')
    for name in ("v1", "v2", "v3"):
        await h.fire(down(name))
    assert ran(sshd) == ["v1", "v2"]
    reason = held(h, 3)["reason"]
    assert reason.endswith("max_unavailable 50% of 4 members = 2")
    await h.resolve(down("v2"))
    await h.advance(0)
    assert ran(sshd) == ["v1", "v2", "v3"]
