"""Every guard holds a step back (audited with its reason) and lets it go, on a fake clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from support.daemon import webhook
from support.engine_harness import EngineHarness, notification, spooled
from support.sshd import SshServer

from remediator import control
from remediator.engine import approvals
from remediator.engine.decisions import Result, Voter

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
"""
Start = Callable[..., Awaitable[EngineHarness]]


def hosts(sshd: SshServer, *names: str, group: str = "validators") -> dict[str, dict[str, Any]]:
    return {n: {"address": "127.0.0.1", "port": sshd.port, "groups": [group]} for n in names}


@pytest.fixture
async def start(tmp_path: Path, sshd: SshServer, store_url: str) -> AsyncIterator[Start]:
    """Start a harness on RULE (plus `rule_extra`), validators v1-v4 and `policies`."""
    sshd.install_recorder("probe-stub")
    started: list[EngineHarness] = []

    async def make(rule_extra: str = "", policies: str = "", **kw: Any) -> EngineHarness:
        h = await EngineHarness.start(
            tmp_path,
            RULE + rule_extra,
            sshd,
            hosts=hosts(sshd, "v1", "v2", "v3", "v4"),
            policies=policies,
            store_url=store_url,
            **kw,
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


def held(h: EngineHarness, incident_id: int) -> dict[str, Any]:
    return dict(h.audit(incident_id))["guard_held"]


async def test_target_lock_holds_a_second_remediation_of_the_same_host(
    start: Start, sshd: SshServer
) -> None:
    """While v1 is verifying, another incident on v1 waits; it runs when the window ends."""
    h = await start()
    await h.fire(down("v1", 1))
    await h.fire(down("v1", 2))
    assert ran(sshd) == ["v1"]
    assert held(h, 2)["guard"] == "target_lock"
    assert h.incidents()[1]["state"] == "pending"
    await h.advance(299)
    assert ran(sshd) == ["v1"]
    await h.advance(16)  # v1's window ended at 300 s; the held step is looked at again
    assert ran(sshd) == ["v1", "v1"]
    assert "guard_released" in h.events(2)


async def test_group_max_unavailable_keeps_one_validator_at_a_time(
    start: Start, sshd: SshServer
) -> None:
    """max_unavailable 1: v2 waits while v1 is under remediation, then runs once v1 closes."""
    h = await start(policies="safety:\n  groups:\n    validators: {max_unavailable: 1}\n")
    await h.fire(down("v1"))
    await h.fire(down("v2"))
    assert ran(sshd) == ["v1"]
    assert held(h, 2)["guard"] == "group"
    assert "v1" in held(h, 2)["reason"]
    await h.resolve(down("v1"))
    await h.advance(15)
    assert ran(sshd) == ["v1", "v2"]


async def test_group_max_unavailable_counts_a_member_whose_command_still_runs(
    start: Start, sshd: SshServer
) -> None:
    """max_unavailable 1: v1 is acknowledged while its command still runs; the ack wakes
    v2's held step, which stays held while v1's command runs (the host may still be
    restarting) and after it (acknowledged, v1's alert still fires), until v1 resolves.
    Before, v2 started at once, two validators down together."""
    sshd.install_recorder("probe-stub", sleep_s=2)
    h = await start(policies="safety:\n  groups:\n    validators: {max_unavailable: 1}\n")
    await h.store.append_inbox([(h.clock.now(), spooled(notification(down("v1"))))])
    await h.store.append_inbox([(h.clock.now(), spooled(notification(down("v2"))))])
    first = asyncio.create_task(h.engine.tick())  # v1 runs (2 s), v2 is held by the group
    for _ in range(100):
        if ran(sshd):
            break
        await asyncio.sleep(0.05)
    assert ran(sshd) == ["v1"]
    assert held(h, 2)["guard"] == "group"
    async with h.store.write() as tx:
        acked = await approvals.acknowledge(
            h.ctx, tx, 1, Voter.person("alice", "api"), h.clock.now()
        )
    assert acked.result is Result.ACKNOWLEDGED
    await h.engine.tick()  # another worker takes v2's woken step while v1's command runs
    assert ran(sshd) == ["v1"]
    await first
    await h.advance(15)
    assert ran(sshd) == ["v1"]
    await h.resolve(down("v1"))
    await h.advance(0)
    assert ran(sshd) == ["v1", "v2"]


async def test_group_limit_lets_members_of_other_groups_run(start: Start, sshd: SshServer) -> None:
    """A limit on `validators` does not hold a host outside the group."""
    h = await start(policies="safety:\n  groups:\n    validators: {max_unavailable: 1}\n")
    await h.fire(down("v1"))
    await h.fire(down("web1"))
    assert ran(sshd) == ["v1", "web1"]


async def test_rate_limit_holds_until_the_minute_has_passed(start: Start, sshd: SshServer) -> None:
    """max_actions_per_minute 2: the third step waits exactly until the first is a minute old."""
    h = await start(policies="safety:\n  max_actions_per_minute: 2\n")
    for name in ("v1", "v2", "v3"):
        await h.fire(down(name))
    assert ran(sshd) == ["v1", "v2"]
    detail = held(h, 3)
    assert detail["guard"] == "max_actions_per_minute"
    assert detail["until"] == pytest.approx(h.clock.now() + 60)
    await h.advance(59)
    assert ran(sshd) == ["v1", "v2"]
    await h.advance(1)
    assert ran(sshd) == ["v1", "v2", "v3"]


async def test_max_concurrent_actions_holds_while_a_step_runs(
    start: Start, sshd: SshServer
) -> None:
    """max_concurrent_actions 1: a step claimed while another executes waits for it, and
    starts as soon as that one ends (its end wakes it; the clock never moves), not at a
    later recheck."""
    sshd.install_recorder("probe-stub", sleep_s=1)
    h = await start(policies="safety:\n  max_concurrent_actions: 1\n")
    await h.send_many([down("v1"), down("v2")])
    assert held(h, 2)["guard"] == "max_concurrent_actions"
    assert ran(sshd) == ["v1", "v2"]
    (_, v1_end), (v2_start, _) = sshd.spans("probe-stub")
    assert v2_start >= v1_end


async def test_max_concurrent_actions_does_not_count_the_retried_step_itself(
    start: Start, sshd: SshServer
) -> None:
    """max_concurrent_actions 1: a step whose earlier attempt was recorded as dispatching
    and never sent (its replica lost the claim or the race) starts when tried again: its
    own dispatching row is not another action running. Before, it held itself until
    hold_timeout handed the incident over."""
    h = await start(policies="safety:\n  max_concurrent_actions: 1\n")
    await control.set_paused(h.store, True, "maintenance", h.clock.now())
    await h.fire(down("v1"))
    async with h.store.write() as tx:  # the attempt that never sent
        await tx.start_step(1, 0, "ssh", {"argv": ["probe-stub", "v1"]}, h.clock.now())
    await control.set_paused(h.store, False, None, h.clock.now())
    await h.advance(0)
    assert ran(sshd) == ["v1"]
    assert h.incidents()[0]["state"] == "verifying"


async def test_pause_holds_pages_at_once_and_survives_a_restart(
    start: Start, sshd: SshServer
) -> None:
    """Paused: the step waits and humans are paged; after a restart still paused; resume runs it."""
    h = await start()
    await control.set_paused(h.store, True, "deploy in progress", h.clock.now())
    await h.fire(down("v1"))
    assert ran(sshd) == []
    assert held(h, 1)["reason"] == "automation is paused: deploy in progress"
    started = dict(h.audit(1))["escalation_started"]
    assert started["reason"] == "automation is paused: deploy in progress (automation pending)"
    now = h.clock.now()
    await h.close()

    h = await start()
    h.clock.t = now + 60
    await h.advance(60)
    assert ran(sshd) == []
    assert (await control.pause_state(h.store)).paused is True
    await control.set_paused(h.store, False, None, h.clock.now())
    await h.advance(0)
    assert ran(sshd) == ["v1"]
    assert h.incidents()[0]["state"] == "verifying"


async def test_a_hold_longer_than_hold_timeout_escalates(start: Start, sshd: SshServer) -> None:
    """Held past hold_timeout: the incident is exhausted with the guard named."""
    h = await start(rule_extra="    hold_timeout: 10m\n")
    await control.set_paused(h.store, True, "freeze", h.clock.now())
    await h.fire(down("v1"))
    await h.advance(599)
    assert h.incidents()[0]["state"] == "pending"
    await h.advance(1)
    assert h.incidents()[0]["state"] == "escalating"
    assert (
        "held by pause for longer than hold_timeout (10m)"
        in dict(h.audit(1))["exhausted"]["reason"]
    )
    assert ran(sshd) == []


async def test_maintenance_window_holds_then_lets_go(start: Start, sshd: SshServer) -> None:
    """In a notify-only window the step waits (humans paged); at the window's end it runs."""
    # The fake clock starts at 2023-11-14 22:13:20 UTC: inside 22:00-22:30.
    h = await start(
        rule_extra="    hold_timeout: 1h\n",
        policies="safety:\n  maintenance:\n    - {cron: '0 22 * * *', duration: 30m}\n",
    )
    await h.fire(down("v1"))
    detail = held(h, 1)
    assert detail["guard"] == "maintenance"
    assert detail["until"] == pytest.approx(h.clock.now() + 16 * 60 + 40)
    assert "escalation_started" in h.events(1)
    await h.advance(16 * 60 + 39)
    assert ran(sshd) == []
    await h.advance(1)
    assert ran(sshd) == ["v1"]


async def test_max_runs_refuses_then_allows_after_the_window(start: Start, sshd: SshServer) -> None:
    """max_runs 2 per 1h: the third incident on v1 escalates; an hour later one runs again."""
    h = await start(rule_extra="    max_runs: 2 per 1h\n")
    for n in range(2):
        await h.fire(down("v1", n))
        await h.resolve(down("v1", n))
    await h.fire(down("v1", 2))
    assert ran(sshd) == ["v1", "v1"]
    third = h.incidents()[2]
    assert third["state"] == "escalating"
    refused = dict(h.audit(third["id"]))["guard_refused"]
    assert refused["guard"] == "max_runs"
    await h.advance(3600)
    await h.fire(down("v1", 9))
    assert ran(sshd) == ["v1", "v1", "v1"]


async def test_quarantine_after_repeated_failures_until_released(
    start: Start, sshd: SshServer
) -> None:
    """Two failed remediations in a row quarantine (rule, v1); release lets it run again."""
    sshd.install_recorder("probe-stub", exit_code=1)
    h = await start(policies="safety:\n  quarantine_after: 2\n")
    await h.fire(down("v1", 1))
    await h.fire(down("v1", 2))
    assert "quarantined" in h.events(2)
    [q] = await control.quarantines(h.store)
    assert (q.rule, q.target, q.failures) == ("restart", "v1", 2)
    await h.fire(down("v1", 3))
    assert dict(h.audit(3))["guard_refused"]["guard"] == "quarantine"
    assert len(ran(sshd)) == 2
    await h.fire(down("v2", 1))  # other targets are not affected
    assert len(ran(sshd)) == 3

    assert await control.release_quarantine(h.store, "restart", "v1", "alice", h.clock.now())
    assert await control.quarantines(h.store) == []
    await h.fire(down("v1", 4))
    assert len(ran(sshd)) == 4


async def test_a_remediated_incident_resets_the_failure_streak(
    start: Start, sshd: SshServer
) -> None:
    """fail, remediate, fail: never two failures in a row, so no quarantine."""
    h = await start(policies="safety:\n  quarantine_after: 2\n")
    sshd.install_recorder("probe-stub", exit_code=1)
    await h.fire(down("v1", 1))
    sshd.install_recorder("probe-stub", exit_code=0)
    await h.fire(down("v1", 2))
    await h.resolve(down("v1", 2))
    sshd.install_recorder("probe-stub", exit_code=1)
    await h.fire(down("v1", 3))
    assert await control.quarantines(h.store) == []
    await h.fire(down("v1", 4))
    assert [q.target for q in await control.quarantines(h.store)] == ["v1"]


async def test_global_dry_run_applies_guards_and_records_what_would_run(
    start: Start, sshd: SshServer
) -> None:
    """Global dry_run: nothing is sent, the audit has the argv, and guards still hold."""
    h = await start(
        policies="safety:\n  groups:\n    validators: {max_unavailable: 1}\n",
        extra="dry_run: true\n",
    )
    await h.fire(down("v1"))
    await h.fire(down("v2"))
    assert ran(sshd) == []
    would = dict(h.audit(1))["step_dry_run"]["would_run"]
    assert would["commands"] == [["probe-stub", "v1"]]
    assert held(h, 2)["guard"] == "group"


BLOCK_RULE = """\
rules:
  - name: block-sources
    match: [alertname = FailedLoginsHigh]
    target: web1
    dry_run: true
    steps:
      - action: block_ips
        params: {ips: "{{ labels.source_ip }}"}
        verify: 5m
    escalate: critical
    cooldown: 0s
"""
APPROVERS = "approvals:\n  default: {approvers: [alice]}\n  always_for: [block_ips]\n"


async def test_target_lock_counts_steps_waiting_for_approval(
    tmp_path: Path, sshd: SshServer, store_url: str
) -> None:
    """One notification with 50 source_ip values for web1 opens one approval request at a
    time: the next is asked once the first has run and closed, then once one is denied."""
    h = await EngineHarness.start(
        tmp_path, BLOCK_RULE, sshd, policies=APPROVERS, store_url=store_url
    )

    def asked() -> list[int]:
        return [i["id"] for i in h.incidents() if "approval_requested" in h.events(i["id"])]

    async def decide(incident_id: int, decision: str) -> None:
        async with h.store.write() as tx:
            out = await approvals.decide_incident(
                h.ctx, tx, incident_id, decision, Voter.person("alice", "api"), None, h.clock.now()
            )
        assert out.changed, out.message
        await h.engine.tick()

    sources = [{"alertname": "FailedLoginsHigh", "source_ip": f"203.0.113.{n}"} for n in range(50)]
    body = webhook(sources[0])
    body["alerts"] = [{**body["alerts"][0], "labels": labels} for labels in sources]
    try:
        await h.send(json.dumps(body))
        assert len(h.incidents()) == 50
        assert asked() == [1]
        assert held(h, 2)["reason"] == (
            "another remediation of web1 (incident 1) is awaiting approval"
        )
        await decide(1, "approve")
        assert "step_dry_run" in h.events(1)
        assert asked() == [1]
        await h.resolve(sources[0])  # incident 1 closes: the next one asks
        assert asked() == [1, 2]
        await decide(2, "deny")  # denied and handed over: the next one asks at once
        assert asked() == [1, 2, 3]
    finally:
        await h.close()
