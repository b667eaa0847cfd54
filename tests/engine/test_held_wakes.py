"""Held steps cost by guard scope, not by step: a held step is looked at again when a
slot of the scope that holds it frees (the oldest hold first, one step per freed slot),
on a reload, or at its hold_timeout; never on a timer of its own. On both store backends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from support import storeview
from support.engine_harness import EngineHarness
from support.sshd import SshServer

from remediator import control
from remediator.engine import stepoutcome
from remediator.reload import Reloader
from remediator.store.records import State, StepState

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
    hold_timeout: 20m
"""
LIMITS = (
    "safety:\n  groups:\n    validators: {max_unavailable: %s}\n    web: {max_unavailable: 1}\n"
)
Start = Callable[..., Awaitable[EngineHarness]]


@pytest.fixture
async def start(tmp_path: Path, sshd: SshServer, store_url: str) -> AsyncIterator[Start]:
    """A harness on RULE: validators v1-v4 (max_unavailable `limit`), web w1-w2 (1)."""
    sshd.install_recorder("probe-stub")
    started: list[EngineHarness] = []

    async def make(limit: str = "1", policies: str = "") -> EngineHarness:
        def member(group: str) -> dict[str, Any]:
            return {"address": "127.0.0.1", "port": sshd.port, "groups": [group]}

        hosts = {n: member("validators") for n in ("v1", "v2", "v3", "v4")}
        hosts |= {n: member("web") for n in ("w1", "w2")}
        hosts["x1"] = {**member("validators"), "groups": ["validators", "web"]}
        h = await EngineHarness.start(
            tmp_path,
            RULE,
            sshd,
            hosts=hosts,
            policies=policies or LIMITS % limit,
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


def claims(h: EngineHarness) -> dict[str, int]:
    """How often each target's first step was claimed (each claim is one look at it)."""
    rows = storeview.query(
        h.db,
        "SELECT incidents.target AS target, work.attempts AS attempts FROM work "
        "JOIN incidents ON incidents.id = work.incident_id "
        "WHERE work.kind = 'run_step' AND work.step_index = 0",
    )
    return {str(r["target"]): int(r["attempts"]) for r in rows}


async def test_a_freed_group_slot_wakes_only_the_oldest_held_step(
    start: Start, sshd: SshServer
) -> None:
    """max_unavailable 1, v2, v3 and v4 held behind v1: v1 resolving starts v2 (held
    first), which passes the look on to v3 (held again: the chain stops there); v4 is
    not looked at again. Before, every held step of every group was claimed and held
    again on each slot freed (a thundering herd)."""
    h = await start()
    for name in ("v1", "v2", "v3", "v4"):
        await h.fire(down(name))
    assert ran(sshd) == ["v1"]
    assert claims(h) == {"v1": 1, "v2": 1, "v3": 1, "v4": 1}
    await h.resolve(down("v1"))
    assert ran(sshd) == ["v1", "v2"]
    assert claims(h) == {"v1": 1, "v2": 2, "v3": 2, "v4": 1}
    await h.resolve(down("v2"))
    assert ran(sshd) == ["v1", "v2", "v3"]
    assert claims(h)["v4"] == 2  # one look per slot freed: v3 took it and passed it on


async def test_held_steps_of_another_group_are_not_woken(start: Start, sshd: SshServer) -> None:
    """w2 waits for w1 (group web), v2 for v1 (validators): v1 resolving starts v2 and
    leaves w2 alone (not claimed again); w1 resolving then starts w2."""
    h = await start()
    for name in ("w1", "w2", "v1", "v2"):
        await h.fire(down(name))
    assert ran(sshd) == ["w1", "v1"]
    await h.resolve(down("v1"))
    assert ran(sshd) == ["w1", "v1", "v2"]
    assert claims(h)["w2"] == 1
    await h.resolve(down("w1"))
    assert ran(sshd) == ["w1", "v1", "v2", "w2"]


async def test_a_held_step_nothing_wakes_is_handed_over_at_its_hold_timeout(
    start: Start, sshd: SshServer
) -> None:
    """v1's verify window ends (5m; it is handed over, still firing, and keeps its slot)
    and nothing frees the group: v2 is not looked at again until its hold_timeout (20m),
    then handed over to humans. Before, it was claimed and held again every 5 minutes."""
    h = await start()
    await h.fire(down("v1"))
    await h.fire(down("v2"))
    for _ in range(4):
        await h.advance(299)
    assert h.incidents()[0]["state"] == "escalating"
    assert claims(h)["v2"] == 1
    assert h.incidents()[1]["state"] == "pending"
    await h.advance(5)  # 20m since v2 was held
    assert claims(h)["v2"] == 2
    assert h.incidents()[1]["state"] == "escalating"
    assert "hold_timeout" in h.events(2)
    assert ran(sshd) == ["v1"]


async def test_a_reload_raising_max_unavailable_releases_held_steps(
    start: Start, sshd: SshServer, tmp_path: Path
) -> None:
    """v2 and v3 held behind v1 (max_unavailable 1); a reload raising it to 3 starts both
    at once, though no member's incident closed. Before, they waited for their recheck."""
    h = await start()
    for name in ("v1", "v2", "v3"):
        await h.fire(down(name))
    assert ran(sshd) == ["v1"]
    policies = tmp_path / "cfg" / "policies" / "p.yml"
    raised = policies.read_text().replace(
        "{max_unavailable: 1}\n    web", "{max_unavailable: 3}\n    web"
    )
    policies.write_text(raised)
    assert await Reloader(h.ctx, h.ctx.metrics, h.clock.now).reload("test")
    await h.engine.tick()
    assert sorted(ran(sshd)) == ["v1", "v2", "v3"]


async def test_a_step_woken_then_held_by_another_scope_passes_the_slot_on(
    start: Start, sshd: SshServer
) -> None:
    """x1 is in both groups. w1 and v1 are under remediation; x1 is held by validators
    first, then v3. v1 resolving wakes x1 (the oldest), which web now holds: the freed
    validators slot goes to v3 at once. Without passing it on, v3 waited for its
    hold_timeout with a slot free."""
    h = await start()
    for name in ("w1", "v1", "x1", "v3"):
        await h.fire(down(name))
    assert ran(sshd) == ["w1", "v1"]
    assert dict(h.audit(3))["guard_held"]["reason"].startswith("group validators")
    await h.resolve(down("v1"))
    assert ran(sshd) == ["w1", "v1", "v3"]
    scope = storeview.query(
        h.db, "SELECT scope FROM holds JOIN work ON work.id = work_id WHERE work.incident_id = 3"
    )
    assert scope == [{"scope": "group:web"}]


async def test_a_step_settled_after_a_restart_wakes_the_steps_it_held(
    start: Start, sshd: SshServer
) -> None:
    """max_concurrent_actions 1: v1's step was left dispatching by a daemon that stopped
    after its incident was handed over; v2 is held by it. The restart settles v1's step
    (failed, nothing was sent), which frees the slot: v2 starts at once, not at a later
    recheck (the clock never moves)."""
    h = await start(policies="safety:\n  max_concurrent_actions: 1\n")
    await control.set_paused(h.store, True, "deploy", h.clock.now())
    await h.fire(down("v1"))
    (work,) = storeview.query(
        h.db, "SELECT id FROM work WHERE incident_id = 1 AND kind = 'run_step'"
    )
    async with h.store.write() as tx:  # the step a stopped daemon left in flight
        await tx.start_step(1, 0, "ssh", {"argv": ["probe-stub", "v1"]}, h.clock.now())
        await tx.finish_work(int(work["id"]), h.clock.now(), "cancelled")
    await h.fire(down("v2"))
    await control.set_paused(h.store, False, None, h.clock.now())
    await h.advance(0)
    assert [d["guard"] for e, d in h.audit(2) if e == "guard_held"][-1] == "max_concurrent_actions"
    assert ran(sshd) == []
    await h.engine.recover()
    await h.engine.tick()
    assert ran(sshd) == ["v2"]


async def test_a_missed_wake_is_caught_by_the_net_one_look_per_scope(
    start: Start, sshd: SshServer
) -> None:
    """v1's incident closes without waking its group (a path that forgot to, simulated):
    v2 and v3 stay held. The work loop's net (every 5 minutes) looks at the oldest hold of
    each scope: v2 starts, and, the slot still free for one more with max_unavailable 2,
    passes the look on to v3, which starts too; v4 (held behind them) stays held."""
    h = await start(limit="2")
    for name in ("v1", "v4", "v2", "v3"):
        await h.fire(down(name))
    assert sorted(ran(sshd)) == ["v1", "v4"]
    async with h.store.write() as tx:  # closed behind the engine's back: nothing woken
        await tx.update_incident(1, h.clock.now(), state=State.RESOLVED, closed_at=h.clock.now())
        await tx.update_incident(2, h.clock.now(), state=State.RESOLVED, closed_at=h.clock.now())
    await h.engine.tick()
    assert sorted(ran(sshd)) == ["v1", "v4"]
    await h.engine.held_net()
    await h.engine.tick()
    assert sorted(ran(sshd)) == ["v1", "v2", "v3", "v4"]


async def test_a_slot_freed_while_paused_is_not_passed_through_every_held_step(
    start: Start, sshd: SshServer
) -> None:
    """v2 to v4 held behind v1 (max_unavailable 1); automation is paused; v1 resolves.
    v2 (the oldest) looks and is held by the pause, which would hold every other step the
    same way: the look stops there (v3 and v4 not claimed again). Before, each passed the
    freed slot on to the next, a look at every held step per freed slot. On resume v2
    starts."""
    h = await start()
    for name in ("v1", "v2", "v3", "v4"):
        await h.fire(down(name))
    await control.set_paused(h.store, True, "deploy", h.clock.now())
    await h.resolve(down("v1"))
    assert claims(h) == {"v1": 1, "v2": 2, "v3": 1, "v4": 1}
    await control.set_paused(h.store, False, None, h.clock.now())
    await h.engine.tick()
    assert ran(sshd) == ["v1", "v2"]


async def test_a_step_buried_by_a_bug_wakes_the_step_its_slot_held(
    start: Start, sshd: SshServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_concurrent_actions 1: v1 and v2 fire together, v2 is held while v1's step runs.
    v1's step raises a bug after its command was marked sent: it is buried (outcome
    unknown, handed over), which frees the concurrency slot: v2 starts at once, the clock
    never moving. Before, v2 waited for the 5-minute recheck."""
    real = stepoutcome.run_part

    async def buggy(action: Any, plan: Any, before_send: Any) -> Any:
        if "v1" in json.dumps(plan.describe()):
            await before_send()
            raise RuntimeError("a bug in the action (test)")
        return await real(action, plan, before_send)

    monkeypatch.setattr(stepoutcome, "run_part", buggy)
    h = await start(policies="safety:\n  max_concurrent_actions: 1\n")
    await h.send_many([down("v1"), down("v2")])
    assert "guard_held" in h.events(2)
    assert ran(sshd) == ["v2"]


async def test_a_step_recovered_after_a_crash_wakes_the_step_its_slot_held(
    start: Start, sshd: SshServer
) -> None:
    """max_concurrent_actions 1: a replica took v1's step, marked it executing (its
    command maybe sent) and died, its claim left to lapse; v2 is held by that slot. Once
    the claim lapses, v1's step is recovered (outcome unknown, never re-sent), which frees
    the slot: v2 starts in the same tick, not at its 5-minute recheck."""
    h = await start(policies="safety:\n  max_concurrent_actions: 1\n")
    await control.set_paused(h.store, True, "deploy", h.clock.now())
    await h.fire(down("v1"))
    (work,) = storeview.query(
        h.db, "SELECT id FROM work WHERE incident_id = 1 AND kind = 'run_step'"
    )
    now = h.clock.now()
    async with h.store.write() as tx:  # what the dead replica left
        step = await tx.start_step(1, 0, "ssh", {"argv": ["probe-stub", "v1"]}, now)
        await tx.update_step(step.id, StepState.EXECUTING, executing_at=now)
        await tx.release_hold(int(work["id"]))
        await tx.conn.execute(
            text(
                "UPDATE work SET claimed_by = 'dead', claimed_until = :until, due_at = :now"
                " WHERE id = :id"
            ),
            {"until": now + 60, "now": now, "id": int(work["id"])},
        )
    await control.set_paused(h.store, False, None, now)
    await h.fire(down("v2"))
    assert [d["guard"] for e, d in h.audit(2) if e == "guard_held"][-1] == "max_concurrent_actions"
    await h.advance(61)
    assert "step_outcome_unknown" in h.events(1)
    assert ran(sshd) == ["v2"]
