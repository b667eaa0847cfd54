"""Replicas sharing one store: a starting replica takes no live claim of another, orphans
are settled only once their lease is over, two replicas applying one notification at
once end with one incident, and a step start waits for another replica's (on both
backends where the behaviour is the store's)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from support.daemon import STARTS, write_config
from support.engine_harness import notification, spooled
from support.replicas import NOTIFY_RULE as RULE

from remediator.actions import build_registry
from remediator.alerts import parse_alerts
from remediator.clock import FakeClock
from remediator.config import load_config
from remediator.engine import Engine, EngineContext, settle_orphans
from remediator.engine.guards import Guards
from remediator.errors import StoreConflict
from remediator.metrics import Metrics
from remediator.notify.outbox import Outbox
from remediator.store import PostgresStore, SqliteStore, open_store_url
from remediator.store import schema as t
from remediator.store.base import Store
from remediator.store.payloads import Email
from remediator.store.records import Incident, State, StepState, WorkItem, WorkKind

OTHER = "remediator-other-replica"


def engine_on(store: Store, tmp_path: Path, clock: FakeClock) -> Engine:
    """An engine (no SSH) on `store`, as a replica's daemon builds it."""
    config = load_config(write_config(tmp_path / "cfg", RULE))
    return Engine(EngineContext(config, store, build_registry(None), clock, Metrics()))


async def test_start_releases_claims_only_on_an_exclusive_store(
    store: SqliteStore | PostgresStore, tmp_path: Path
) -> None:
    """A claim another process holds is freed at start on SQLite (the lock file proves
    that process dead) and left to its lease on PostgreSQL (a live replica may run it)."""
    clock = FakeClock()
    async with store.write() as tx:
        incident = await tx.create_incident("restart", "f", "s", {}, {}, clock.now())
        assert incident is not None
        await tx.schedule(WorkKind.RUN_STEP, incident.id, 0, clock.now())
        assert len(await tx.claim_due(clock.now(), OTHER, 5, 300.0)) == 1
        await tx.enqueue("ops@example.com", Email(), None, clock.now())
        assert len(await tx.claim_outbox(clock.now(), OTHER, 5, 300.0)) == 1
    engine = engine_on(store, tmp_path, clock)
    await engine.recover()
    outbox = Outbox(store, engine.ctx.config, clock, Metrics(), None, None, asyncio.Event())
    await outbox.recover()
    async with store.write() as tx:
        work = await tx.claim_due(clock.now(), engine.owner, 5, 300.0)
        sends = await tx.claim_outbox(clock.now(), outbox.owner, 5, 300.0)
    assert (len(work), len(sends)) == ((1, 1) if store.exclusive else (0, 0))
    async with store.write() as tx:  # once the lease is over, any replica takes it
        assert len(await tx.claim_due(clock.now() + 301, engine.owner, 5, 300.0)) == 1


async def test_orphans_of_a_live_replica_are_not_settled(
    store: SqliteStore | PostgresStore,
) -> None:
    """A handed-over incident's step still in flight on another replica (its work row
    cancelled, its claim live) is left alone on a shared store, and settled `unknown`
    once the claim expired (that replica died); an exclusive store settles it at once."""
    async with store.write() as tx:
        incident = await tx.create_incident("restart", "f", "s", {}, {}, 1.0)
        assert incident is not None
        await tx.schedule(WorkKind.RUN_STEP, incident.id, 0, 1.0)
        await tx.claim_due(1.0, OTHER, 5, 300.0)  # claimed until 301
        step = await tx.start_step(incident.id, 0, "notify", {}, 1.0)
        await tx.update_step(step.id, StepState.EXECUTING, executing_at=1.0)
        await tx.cancel_work(incident.id, 2.0)  # handed over mid-step
        await settle_orphans(tx, 2.0, exclusive=False)
        assert (await tx.steps(incident.id))[0].state is StepState.EXECUTING
        await settle_orphans(tx, 302.0, exclusive=False)
        assert (await tx.steps(incident.id))[0].state is StepState.UNKNOWN


async def test_one_alert_applied_by_two_replicas_at_once_is_one_incident(
    pg_url: str, tmp_path: Path
) -> None:
    """Replica b applies a notification while replica a's transaction opening the same
    alert is not committed yet: b waits, loses on the unique key, runs its transaction
    again and finds the alert known: one incident, no error, no dead letter. The same
    for the resolve: b reads the status a committed and closes nothing twice."""
    a = open_store_url(pg_url, tmp_path)
    b = open_store_url(pg_url, tmp_path)
    await a.open()
    await b.open()
    clock = FakeClock()
    one, two = engine_on(a, tmp_path / "a", clock), engine_on(b, tmp_path / "b", clock)
    try:
        for status in ("firing", "resolved"):
            body = spooled(notification({"alertname": "NodeDown"}, status))
            async with a.write() as tx:
                await one.intake._apply(tx, [(alert, None) for alert in parse_alerts(body)])
                await b.append_inbox([(clock.now(), body)])
                racing = asyncio.create_task(two.intake.drain())
                await asyncio.sleep(0.3)
                assert not racing.done()  # b waits for a's row
            assert await racing == 1
            assert await b.inbox_pending() == 0
        async with a.read() as tx:
            [incident] = await tx.incidents(None, 10)
            events = [r.event for r in await tx.audit_for(incident.id)]
            assert await tx.dead_letter_count() == 0
        assert events.count("matched") == 1
        assert events.count("resolved") == 1
        assert incident.state.value == "resolved"
    finally:
        await a.close()
        await b.close()


GROUP_RULE = """\
rules:
  - name: restart
    match: [alertname = NodeDown]
    target: "{{ labels.instance | host }}"
    steps:
      - action: notify
        params: {message: down}
"""


@asynccontextmanager
async def group_pair(
    pg_url: str, tmp_path: Path, groups: dict[str, str]
) -> AsyncIterator[tuple[Store, Store, FakeClock, Engine]]:
    """Replicas a and b on one database (b with an engine) for GROUP_RULE, each host in
    its group of `groups`, every group `max_unavailable: 1`."""
    hosts = {h: {"address": "127.0.0.1", "port": 22, "groups": [g]} for h, g in groups.items()}
    limits = "".join(f"    {g}: {{max_unavailable: 1}}\n" for g in sorted(set(groups.values())))
    policies = f"safety:\n  groups:\n{limits}"
    config = load_config(write_config(tmp_path / "cfg", GROUP_RULE, hosts=hosts, policies=policies))
    a, b = open_store_url(pg_url, tmp_path), open_store_url(pg_url, tmp_path)
    await a.open()
    await b.open()
    clock = FakeClock()
    try:
        yield a, b, clock, Engine(EngineContext(config, b, build_registry(None), clock, Metrics()))
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize(
    ("h2_group", "waits"), [("g", True), ("other", False)], ids=["same-group", "other-group"]
)
async def test_a_step_start_waits_only_for_another_replicas_in_its_scopes(
    pg_url: str, tmp_path: Path, h2_group: str, waits: bool
) -> None:
    """Replica a is starting h1's step (its transaction not committed yet) when replica b
    checks the guards of h2's. h2 in h1's `max_unavailable: 1` group: b waits for a's
    transaction, then sees h1 under remediation and holds h2's step (without the lock
    both would pass the group guard at once). h2 in another group, with no global limit
    set: b shares no guard scope with a, so it starts h2's step without waiting."""
    async with group_pair(pg_url, tmp_path, {"h1": "g", "h2": h2_group}) as (a, b, clock, two):
        for n in (1, 2):
            body = spooled(notification({"alertname": "NodeDown", "instance": f"h{n}:9100"}))
            await b.append_inbox([(clock.now(), body)])
        await two.intake.drain()
        async with a.write() as tx:  # replica a's runner, between its check and its commit
            h1 = await tx.incident(1)
            assert h1 is not None
            await tx.lock_scopes(two.ctx.guards.scopes(h1))
            await tx.claim_due(clock.now(), OTHER, 1, 300.0)  # h1's
            await tx.start_step(1, 0, "notify", {}, clock.now())
            await tx.update_incident(1, clock.now(), state=State.RUNNING)
            async with b.write() as other:
                [item] = await other.claim_due(clock.now(), two.owner, 5, 300.0)  # h2's
            racing = asyncio.create_task(two.runner.run(item))
            await asyncio.sleep(0.3)
            assert racing.done() is not waits
        await racing
        async with b.read() as tx:
            started = await tx.steps(2)
            events = [r.event for r in await tx.audit_for(2)]
        if waits:
            assert started == []
            assert events[-1] == "guard_held"
        else:
            assert [s.action for s in started] == ["notify"]


def test_guard_scopes_name_the_target_its_limited_groups_and_the_global_limits(
    tmp_path: Path,
) -> None:
    """A step's scopes: its target, each of the target's groups that has a limit, and
    "global" only when max_concurrent_actions or max_actions_per_minute is set; an
    incident without a target locks only the global scope."""
    hosts = {"h1": {"address": "127.0.0.1", "port": 22, "groups": ["g", "plain"]}}
    for limits, expected in (
        ("", ["target:h1", "group:g"]),
        ("  max_concurrent_actions: 2\n", ["global", "target:h1", "group:g"]),
        ("  max_actions_per_minute: 2\n", ["global", "target:h1", "group:g"]),
    ):
        policies = f"safety:\n{limits}  groups:\n    g: {{max_unavailable: 1}}\n"
        config = load_config(
            write_config(tmp_path / "cfg", GROUP_RULE, hosts=hosts, policies=policies)
        )
        guards = Guards(config)
        assert guards.scopes(incident_on("h1")) == expected
        assert guards.scopes(incident_on(None)) == (["global"] if limits else [])


def incident_on(target: str | None) -> Incident:
    return Incident(1, "restart", "f", STARTS, target, State.PENDING, {}, {}, 0, 0.0, 0.0, None)


async def test_work_claimed_as_the_stop_begins_is_handed_back_at_once(
    store: SqliteStore | PostgresStore, tmp_path: Path
) -> None:
    """The stop begins while the work loop's claim is on its way to the store: the items
    it claimed are not started and not left to their lease (a rolling restart would
    otherwise hold them a whole lease); another replica takes them at once."""
    clock = FakeClock()
    engine = engine_on(store, tmp_path, clock)
    async with store.write() as tx:
        incident = await tx.create_incident("restart", "f", "s", {}, {}, clock.now())
        assert incident is not None
        await tx.schedule(WorkKind.RUN_STEP, incident.id, 0, clock.now())
    claim = engine._claim

    async def claim_as_the_stop_begins(limit: int) -> list[WorkItem]:
        items = await claim(limit)
        engine._stopping.set()
        return items

    engine._claim = claim_as_the_stop_begins  # type: ignore[method-assign]
    await engine._dispatch_due()
    assert not engine._running
    clock.advance(0.001)
    async with store.write() as tx:
        assert len(await tx.claim_due(clock.now(), OTHER, 5, 300.0)) == 1
        assert await tx.steps(incident.id) == []


async def test_a_work_item_that_lost_a_race_runs_again_at_once(
    store: SqliteStore | PostgresStore, tmp_path: Path
) -> None:
    """Another replica wrote the same rows first (StoreConflict: the item's transaction
    rolled back): the item runs again at once instead of waiting out its lease."""
    clock = FakeClock()
    engine = engine_on(store, tmp_path, clock)
    await store.append_inbox([(clock.now(), spooled(notification({"alertname": "NodeDown"})))])
    await engine.intake.drain()
    prepare, raced = engine.runner._prepare, []

    async def lose_the_first_race(item: WorkItem) -> Any:
        if not raced:
            raced.append(item.id)
            raise StoreConflict("another replica wrote first")
        return await prepare(item)

    engine.runner._prepare = lose_the_first_race  # type: ignore[method-assign]
    await engine.tick()
    async with store.read() as tx:
        [step] = await tx.steps(1)
    assert raced
    assert step.state is StepState.SUCCEEDED


async def test_a_step_cancelled_while_it_starts_sends_nothing(
    store: SqliteStore | PostgresStore, tmp_path: Path
) -> None:
    """The incident is acknowledged (its work cancelled) after its step was started and
    before the command goes out, as can happen during a slow SSH connect: the command is
    not sent, the step is recorded failed with `step_not_sent`, and nothing runs later."""
    clock = FakeClock()
    engine = engine_on(store, tmp_path, clock)
    await store.append_inbox([(clock.now(), spooled(notification({"alertname": "NodeDown"})))])
    await engine.intake.drain()
    execute = engine.runner._execute

    async def acknowledged_meanwhile(item: WorkItem, d: Any) -> None:
        async with store.write() as tx:
            await tx.cancel_work(item.incident_id, clock.now())
        await execute(item, d)

    engine.runner._execute = acknowledged_meanwhile  # type: ignore[method-assign]
    await engine.tick()
    async with store.read() as tx:
        [step] = await tx.steps(1)
        events = [r.event for r in await tx.audit_for(1)]
    assert step.state is StepState.FAILED
    assert "step_not_sent" in events
    assert "step_executing" not in events


async def test_a_running_step_whose_work_was_cancelled_keeps_its_claim(
    store: SqliteStore | PostgresStore,
) -> None:
    """A resolve cancels the work of a step whose command still runs: the replica running
    it still renews its claim, so no replica settles the step as orphaned (which would
    free the target for a second command) until that claim really lapses."""
    async with store.write() as tx:
        incident = await tx.create_incident("restart", "f", "s", {}, {}, 1.0)
        assert incident is not None
        await tx.schedule(WorkKind.RUN_STEP, incident.id, 0, 1.0)
        [item] = await tx.claim_due(1.0, OTHER, 5, 30.0)  # claimed until 31
        step = await tx.start_step(incident.id, 0, "notify", {}, 1.0)
        await tx.update_step(step.id, StepState.EXECUTING, executing_at=1.0)
        await tx.cancel_work(incident.id, 2.0)  # resolved mid-command
        assert await tx.renew_claims(OTHER, [item.id], 61.0) == 1  # renewed at 31
        await settle_orphans(tx, 40.0, exclusive=False)
        assert (await tx.steps(incident.id))[0].state is StepState.EXECUTING
        await settle_orphans(tx, 62.0, exclusive=False)
        assert (await tx.steps(incident.id))[0].state is StepState.UNKNOWN


async def test_a_step_outcome_that_lost_a_race_is_still_recorded(
    store: SqliteStore | PostgresStore, tmp_path: Path
) -> None:
    """The command ran and another replica wrote the same rows first as its outcome was
    recorded (StoreConflict): the outcome transaction runs again and records what the
    command did, instead of the step being found `executing` later and set `unknown`."""
    clock = FakeClock()
    engine = engine_on(store, tmp_path, clock)
    await store.append_inbox([(clock.now(), spooled(notification({"alertname": "NodeDown"})))])
    await engine.intake.drain()
    finish, raced = engine.runner._finish, []

    async def lose_the_first_race(*args: Any) -> None:
        if not raced:
            raced.append(True)
            raise StoreConflict("another replica wrote first")
        await finish(*args)

    engine.runner._finish = lose_the_first_race  # type: ignore[method-assign]
    await engine.tick()
    async with store.read() as tx:
        [step] = await tx.steps(1)
    assert raced
    assert step.state is StepState.SUCCEEDED


async def test_a_verify_window_ends_in_its_guard_scopes_turn(pg_url: str, tmp_path: Path) -> None:
    """h1's verify window ends (a hand-over and a failure streak, maybe a quarantine, are
    written) while replica a checks the guards of h2's step, in h1's group: the window's
    end waits for a's transaction, as a step start would, so a's guards never read the
    group or a quarantine half-written."""
    async with group_pair(pg_url, tmp_path, {"h1": "g", "h2": "g"}) as (a, b, clock, two):
        body = spooled(notification({"alertname": "NodeDown", "instance": "h1:9100"}))
        await b.append_inbox([(clock.now(), body)])
        await two.tick()  # the step ran; h1 verifies
        clock.advance(3600)
        async with a.write() as tx:
            await tx.lock_scopes(two.ctx.guards.scopes(incident_on("h2")))
            racing = asyncio.create_task(two.tick())
            await asyncio.sleep(0.3)
            assert not racing.done()
        await racing
        async with b.read() as tx:
            incident = await tx.incident(1)
        assert incident is not None
        assert incident.state is not State.VERIFYING


async def test_claims_are_renewed_while_a_step_start_waits_for_another_replicas_lock(
    pg_url: str, tmp_path: Path
) -> None:
    """Replica b holds the global guard scope (starting a step of its own, or hung in
    one) while replica a's runner starts a step in it: a's writer waits for b's lock, up
    to lock_timeout. a's claim renewal does not wait behind that writer (it has a
    transaction of its own), so the claims a holds do not lapse meanwhile."""
    policies = "safety:\n  max_concurrent_actions: 5\n"
    config = load_config(write_config(tmp_path / "cfg", RULE, policies=policies))
    a, b = open_store_url(pg_url, tmp_path), open_store_url(pg_url, tmp_path)
    await a.open()
    await b.open()
    clock = FakeClock()
    one = Engine(EngineContext(config, a, build_registry(None), clock, Metrics()))
    try:
        await a.append_inbox([(clock.now(), spooled(notification({"alertname": "NodeDown"})))])
        await one.intake.drain()
        async with b.write() as tx:
            await tx.lock_scopes(["global"])
            starting = asyncio.create_task(one.tick())
            await asyncio.sleep(0.3)  # a claimed the step; its start waits for b's lock
            clock.advance(one.lease_s())  # the claim ends now unless renewed
            async with asyncio.timeout(5):
                await one.renew_claims()
            assert not starting.done()
            async with b.read() as view:
                until = (await view.conn.execute(select(t.work.c.claimed_until))).scalar_one()
            assert until == clock.now() + one.lease_s()
        await starting
        async with a.read() as view:
            assert [s.state for s in await view.steps(1)] == [StepState.SUCCEEDED]
    finally:
        await a.close()
        await b.close()
