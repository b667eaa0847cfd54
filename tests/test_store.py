"""The store: versioned migrations, durable settings, the single-owner lock."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, insert, inspect, select, text

from remediator.errors import StoreError, StoreLocked
from remediator.store import PostgresStore, SqliteStore, open_store_url, schema
from remediator.store.events import Event
from remediator.store.migrations import MIGRATIONS, table_names
from remediator.store.payloads import Email, SlackEphemeral
from remediator.store.records import ApprovalState, OutboxKind, State, StepState, WorkKind

AnyStore = SqliteStore | PostgresStore
EPHEMERAL = SlackEphemeral(user="U1", text="hi")


def pragma(db: Path, name: str) -> object:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


async def test_migrations_are_recorded_once(store_url: str, tmp_path: Path) -> None:
    """The schema version is recorded; opening again applies nothing twice (both backends)."""
    for _ in range(2):
        store = open_store_url(store_url, tmp_path)
        await store.open()
        await store.close()
    store = open_store_url(store_url, tmp_path)
    await store.open()
    try:
        async with store.read() as tx:
            q = select(schema.schema_migrations.c.version).order_by("version")
            versions = list((await tx.conn.execute(q)).scalars())
            tables = set(await tx.conn.run_sync(table_names))
    finally:
        await store.close()
    assert versions == [m.version for m in MIGRATIONS]
    assert {t.name for t in schema.metadata.sorted_tables} == tables


@pytest.mark.parametrize(
    ("version", "table", "columns"),
    [(7, "inbox", ("claimed_by", "claimed_until")), (9, "outbox", ("claimed_by",))],
)
async def test_an_older_store_gains_the_claim_columns(
    store_url: str, tmp_path: Path, version: int, table: str, columns: tuple[str, ...]
) -> None:
    """A store an older version made (inbox without claimed_by/claimed_until: version 6;
    outbox without claimed_by: version 8) is upgraded in place by its migration, and its
    waiting rows can then be claimed (both backends)."""
    store = open_store_url(store_url, tmp_path)
    await store.open()
    async with store.write() as tx:
        for column in columns:
            await tx.conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        await tx.conn.execute(
            text("DELETE FROM schema_migrations WHERE version = :v"), {"v": version}
        )
        await tx.conn.execute(text("INSERT INTO inbox (received_at, body) VALUES (1.0, '[]')"))
        await tx.conn.execute(
            text(
                "INSERT INTO outbox (kind, target, payload, state, attempts, due_at, created_at)"
                """ VALUES ('slack_thread', '#ops', '{"incident_id": 1, "text": "t"}',"""
                " 'pending', 0, 1.0, 1.0)"
            )
        )
    await store.close()
    store = open_store_url(store_url, tmp_path)
    await store.open()
    try:
        async with store.read() as tx:
            have = await tx.conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns(table)}
            )
        assert set(columns) <= have
        async with store.write() as tx:
            assert [o.target for o in await tx.claim_outbox(2.0, "a", 5, 60.0)] == ["#ops"]
        if isinstance(store, PostgresStore):  # SQLite's inbox is its spool file
            assert [i.received_at for i in await store.take_inbox(5)] == [1.0]
    finally:
        await store.close()


async def test_an_older_store_gains_hold_scopes(store_url: str, tmp_path: Path) -> None:
    """A store made before version 13 (holds without the guard scope holding them) is
    upgraded in place: the scope column and its index (a freed slot reads its scope's
    oldest holds) are added (both backends)."""
    store = open_store_url(store_url, tmp_path)
    await store.open()
    async with store.write() as tx:
        await tx.conn.execute(text("DROP INDEX ix_holds_scope"))
        await tx.conn.execute(text("ALTER TABLE holds DROP COLUMN scope"))
        await tx.conn.execute(text("DELETE FROM schema_migrations WHERE version = 13"))
    await store.close()
    store = open_store_url(store_url, tmp_path)
    await store.open()
    try:
        async with store.read() as tx:
            have = await tx.conn.run_sync(
                lambda c: (
                    {col["name"] for col in inspect(c).get_columns("holds")},
                    {i["name"] for i in inspect(c).get_indexes("holds")},
                )
            )
        assert "scope" in have[0]
        assert "ix_holds_scope" in have[1]
    finally:
        await store.close()


async def test_sqlite_store_is_in_wal_mode(tmp_path: Path) -> None:
    """SQLite readers never wait for the writer: the store runs in WAL mode."""
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    await store.close()
    assert pragma(tmp_path / "s.db", "journal_mode") == "wal"


async def test_store_from_a_newer_version_is_refused(store_url: str, tmp_path: Path) -> None:
    """A store migrated by a newer remediator is not silently used by an older one."""
    store = open_store_url(store_url, tmp_path)
    await store.open()
    try:
        async with store.write() as tx:
            future = {"version": 999, "name": "future", "applied_at": 0.0}
            await tx.conn.execute(insert(schema.schema_migrations).values(**future))
    finally:
        await store.close()
    with pytest.raises(StoreError, match="newer than this remediator knows"):
        await open_store_url(store_url, tmp_path).open()


async def test_lock_allows_one_owner(tmp_path: Path) -> None:
    """A second owner is refused while the first holds the store; readers are not."""
    first = SqliteStore(tmp_path / "s.db")
    await first.open()
    try:
        with pytest.raises(StoreLocked, match="another remediator is running"):
            await SqliteStore(tmp_path / "s.db").open()
        reader = SqliteStore(tmp_path / "s.db", lock=False)
        await reader.open()
        await reader.ping()
        await reader.close()
    finally:
        await first.close()
    again = SqliteStore(tmp_path / "s.db")
    await again.open()
    await again.close()


async def test_spool_keeps_rows_until_deleted(tmp_path: Path) -> None:
    """Spooled rows survive a reopen and are taken oldest first until deleted."""
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    await store.append_inbox([(1.0, "[]"), (2.0, "[]"), (3.0, "[]")])
    await store.close()
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    try:
        first = await store.take_inbox(2)
        assert [i.received_at for i in first] == [1.0, 2.0]
        assert [i.received_at for i in await store.take_inbox(2)] == [1.0, 2.0]
        await store.delete_inbox([i.id for i in first])
        assert [i.received_at for i in await store.take_inbox(5)] == [3.0]
    finally:
        await store.close()
    assert pragma(tmp_path / "s.spool.db", "journal_mode") == "wal"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def umask(value: int) -> Iterator[None]:
    """Run the block under `value` (make run's usual 022), then restore the test's umask."""
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


async def test_store_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """Under umask 022 the store, its WAL and SHM, the spool's, the lock file (0600) and the
    folders the store creates (0700) are readable by the daemon's user only."""
    db = tmp_path / "var" / "state" / "s.db"
    with umask(0o022):
        store = SqliteStore(db)
        await store.open()
        try:
            await store.append_inbox([(1.0, "[]")])  # the writer process commits to the spool
            async with store.write() as tx:
                await tx.audit(None, Event("written", {}), 1.0)
            modes = {p.name: mode(p) for p in db.parent.iterdir()}
        finally:
            await store.close()
    names = ["s.db", "s.db-wal", "s.db-shm", "s.db.lock"]
    names += ["s.spool.db", "s.spool.db-wal", "s.spool.db-shm"]
    assert modes == dict.fromkeys(names, 0o600)
    assert (mode(db.parent), mode(db.parent.parent)) == (0o700, 0o700)


async def test_files_left_readable_are_made_private_on_open(tmp_path: Path) -> None:
    """A store an older version left 0644, with a -wal and -shm a crash left behind, is 0600
    once opened."""
    db = tmp_path / "s.db"
    crash = (
        "import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute('PRAGMA journal_mode=WAL'); c.execute('CREATE TABLE t (a)'); c.commit(); "
        "os._exit(0)"
    )
    for path in (db, tmp_path / "s.spool.db"):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", crash, str(path), umask=0o022
        )
        assert await proc.wait() == 0
    left = sorted(tmp_path.iterdir())
    assert [p.name for p in left] == [
        "s.db",
        "s.db-shm",
        "s.db-wal",
        "s.spool.db",
        "s.spool.db-shm",
        "s.spool.db-wal",
    ]
    assert {mode(p) for p in left} == {0o644}
    store = SqliteStore(db)
    await store.open()
    try:
        modes = {p.name: mode(p) for p in tmp_path.iterdir()}
    finally:
        await store.close()
    assert set(modes.values()) == {0o600}
    assert "s.db-wal" in modes


async def test_lock_holder_counts_approvals_waiting_and_approved_steps(store: AnyStore) -> None:
    """The target lock: a step waiting for approvers holds it, and so does an approved one
    until it starts; an approved step itself only waits for one running or verifying; a
    step whose command may still run holds it whatever its incident's state."""
    async with store.write() as tx:
        a = await tx.create_incident("r", "fa", "t0", {}, {}, 1.0)
        b = await tx.create_incident("r", "fb", "t0", {}, {}, 1.0)
        assert a is not None
        assert b is not None
        for incident in (a, b):
            await tx.update_incident(incident.id, 1.0, target="web1")
        assert await tx.lock_holder("web1", b.id, approvals_too=True) is None
        await tx.update_incident(a.id, 1.0, state=State.AWAITING_APPROVAL)
        approval = await tx.create_approval(a.id, 0, "ssh", {}, 1, 1.0, 99.0)
        assert await tx.lock_holder("web1", b.id, approvals_too=True) == (
            a.id,
            "awaiting approval",
        )
        assert await tx.lock_holder("web1", b.id, approvals_too=False) is None
        await tx.decide_approval(approval.id, ApprovalState.APPROVED, "alice", None, 2.0)
        await tx.update_incident(a.id, 2.0, state=State.PENDING)
        assert await tx.lock_holder("web1", b.id, approvals_too=True) == (
            a.id,
            "approved, about to run",
        )
        step = await tx.start_step(a.id, 0, "ssh", {}, 3.0)
        await tx.update_incident(a.id, 3.0, state=State.RUNNING)
        assert await tx.lock_holder("web1", b.id, approvals_too=False) == (a.id, "running")
        assert await tx.lock_holder("web1", a.id, approvals_too=True) is None
        # Handed over while the command runs: the step still holds the host.
        await tx.update_step(step.id, StepState.EXECUTING, executing_at=3.5)
        await tx.update_incident(a.id, 4.0, state=State.ESCALATING)
        assert await tx.lock_holder("web1", b.id, approvals_too=False) == (
            a.id,
            "still running a step",
        )
        await tx.update_step(step.id, StepState.SUCCEEDED, finished_at=5.0)
        assert await tx.lock_holder("web1", b.id, approvals_too=True) is None


async def test_updates_change_only_the_fields_given(store: AnyStore) -> None:
    """update_incident and update_step take each column as its own typed argument and
    change only those given: a later update keeps what an earlier one set."""
    async with store.write() as tx:
        incident = await tx.create_incident("r", "f", "t0", {}, {}, 1.0)
        assert incident is not None
        await tx.update_incident(incident.id, 2.0, target="web1", step_index=1)
        await tx.update_incident(incident.id, 3.0, state=State.RUNNING)
        step = await tx.start_step(incident.id, 1, "ssh", {"argv": ["a"]}, 3.0)
        await tx.update_step(step.id, StepState.EXECUTING, executing_at=3.5)
        await tx.update_step(step.id, StepState.SUCCEEDED, finished_at=4.0, exit_status=0)
        await tx.update_incident(incident.id, 5.0, state=State.REMEDIATED, closed_at=5.0)
        updated = await tx.incident(incident.id)
        done = await tx.step(incident.id, 1)
    assert updated is not None
    assert done is not None
    assert (updated.target, updated.step_index, updated.state) == ("web1", 1, State.REMEDIATED)
    assert (updated.updated_at, updated.closed_at) == (5.0, 5.0)
    assert (done.state, done.executing_at, done.finished_at) == (StepState.SUCCEEDED, 3.5, 4.0)
    assert (done.exit_status, done.output, done.error) == (0, None, None)


async def test_outbox_rows_of_an_unknown_kind_are_neither_claimed_nor_due(
    store: AnyStore,
) -> None:
    """A notification kind this version cannot deliver (a newer replica's) is left alone:
    not claimed, and not due (the outbox loop would spin on it otherwise); a claimed row
    is due when its lease ends."""
    async with store.write() as tx:
        await tx.conn.execute(
            insert(schema.outbox).values(
                kind="from_the_future",
                target="x",
                payload={},
                state="pending",
                attempts=0,
                due_at=10.0,
                created_at=10.0,
            )
        )
        assert await tx.claim_outbox(100.0, "a", 10, 60.0) == []
        assert await tx.next_outbox_due() is None
        await tx.enqueue("a@example.com", Email(), None, 20.0)
        [claimed] = await tx.claim_outbox(100.0, "a", 10, 60.0)
        assert claimed.kind is OutboxKind.EMAIL
        assert await tx.next_outbox_due() == 160.0


async def test_claimed_work_is_leased(store: AnyStore) -> None:
    """Due work is claimed oldest first, each item once while its lease runs; an item whose
    lease ran out (its claimer died) is claimed again, its attempts counted."""
    async with store.write() as tx:
        incident = await tx.create_incident("r", "f", "t0", {}, {}, 1.0)
        assert incident is not None
        ids = [await tx.schedule(WorkKind.RUN_STEP, incident.id, i, 10.0 + i) for i in range(3)]
        await tx.schedule(WorkKind.RUN_STEP, incident.id, 9, 500.0)  # not due yet
    async with store.write() as tx:
        first = await tx.claim_due(100.0, "a", 2, 60.0)
        assert [w.id for w in first] == ids[:2]
        assert [w.id for w in await tx.claim_due(101.0, "b", 5, 60.0)] == ids[2:]
        assert await tx.claim_due(102.0, "c", 5, 60.0) == []
        await tx.finish_work(ids[0], 103.0, "ran")
        again = await tx.claim_due(162.0, "d", 5, 60.0)
    assert [(w.id, w.attempts) for w in again] == [(ids[1], 2), (ids[2], 2)]


async def claimers(tx: Any, table: Table) -> dict[int, str | None]:
    """Which owner each row of `table` records (id: claimed_by)."""
    rows = await tx.conn.execute(select(table.c.id, table.c.claimed_by))
    return {int(r[0]): r[1] for r in rows}


async def test_one_claim_for_work_and_outbox_records_the_owner_and_its_lease(
    store: AnyStore,
) -> None:
    """Work and outbox rows are claimed the same way: the claim records its owner; another
    owner gets nothing while the lease runs, takes the row once it is over (its claimer
    died), and the row then names the new owner, its attempts counted."""
    async with store.write() as tx:
        incident = await tx.create_incident("r", "f", "t0", {}, {}, 1.0)
        assert incident is not None
        work = await tx.schedule(WorkKind.RUN_STEP, incident.id, 0, 10.0)
        sent = await tx.enqueue("#ops", EPHEMERAL, None, 10.0)
        assert sent is not None
    async with store.write() as tx:
        assert [w.id for w in await tx.claim_due(100.0, "a", 5, 60.0)] == [work]
        assert [o.id for o in await tx.claim_outbox(100.0, "a", 5, 60.0)] == [sent]
        assert await claimers(tx, schema.work) == {work: "a"}
        assert await claimers(tx, schema.outbox) == {sent: "a"}
        assert await tx.claim_due(160.0, "b", 5, 60.0) == []
        assert await tx.claim_outbox(160.0, "b", 5, 60.0) == []
        [w] = await tx.claim_due(160.5, "b", 5, 60.0)
        [o] = await tx.claim_outbox(160.5, "b", 5, 60.0)
        assert (w.attempts, o.attempts) == (2, 2)
        assert await claimers(tx, schema.work) == {work: "b"}
        assert await claimers(tx, schema.outbox) == {sent: "b"}


async def test_a_late_retry_leaves_the_row_to_the_replica_that_took_it(store: AnyStore) -> None:
    """Replica a's delivery failed after its lease ran out and replica b took the row:
    a's retry changes nothing (b's claim stands, no third replica can take the row while
    b delivers it); b's own retry releases it for later."""
    async with store.write() as tx:
        sent = await tx.enqueue("#ops", EPHEMERAL, None, 10.0)
        assert sent is not None
        await tx.claim_outbox(100.0, "a", 5, 60.0)
        await tx.claim_outbox(160.5, "b", 5, 60.0)
        assert not await tx.outbox_retry(sent, "a", 170.0, "slack: timeout")
        assert await tx.claim_outbox(175.0, "c", 5, 60.0) == []
        assert await tx.outbox_retry(sent, "b", 170.0, "slack: timeout")
        assert [o.id for o in await tx.claim_outbox(175.0, "c", 5, 60.0)] == [sent]


async def test_releasing_claims_frees_work_and_outbox_rows_at_once(store: AnyStore) -> None:
    """What an exclusive store does on start (the claimer is proven dead): every pending
    work and outbox claim is freed, its owner forgotten, and the rows are due again
    before their lease ends; rows already done stay as they are."""
    async with store.write() as tx:
        incident = await tx.create_incident("r", "f", "t0", {}, {}, 1.0)
        assert incident is not None
        for i in range(2):
            await tx.schedule(WorkKind.RUN_STEP, incident.id, i, 10.0)
            await tx.enqueue("#ops", EPHEMERAL, None, 10.0)
        done_work, _ = await tx.claim_due(100.0, "a", 5, 60.0)
        done_send, _ = await tx.claim_outbox(100.0, "a", 5, 60.0)
        await tx.finish_work(done_work.id, 101.0, "ran")
        await tx.outbox_sent(done_send.id, 101.0)
        assert (await tx.release_claims(), await tx.release_outbox_claims()) == (1, 1)
        assert list((await claimers(tx, schema.work)).values()) == ["a", None]
        assert len(await tx.claim_due(102.0, "b", 5, 60.0)) == 1
        assert len(await tx.claim_outbox(102.0, "b", 5, 60.0)) == 1


async def test_dead_letters_are_kept_newest_first(store: AnyStore) -> None:
    """A dead letter keeps its loop, item, error and payload; listed newest first, counted."""
    async with store.write() as tx:
        incident = await tx.create_incident("r", "f", "t0", {}, {}, 1.0)
        assert incident is not None
        await tx.dead_letter("intake", "inbox:1", None, "ValueError: x", {"body": "[]"}, 1.0)
        await tx.dead_letter("work", "work:7", incident.id, "KeyError: y", None, 2.0)
    async with store.read() as tx:
        letters = await tx.dead_letters(10)
        assert await tx.dead_letter_count() == 2
    assert [(d.loop, d.item, d.incident_id, d.error) for d in letters] == [
        ("work", "work:7", incident.id, "KeyError: y"),
        ("intake", "inbox:1", None, "ValueError: x"),
    ]
    assert letters[1].payload == {"body": "[]"}


async def test_two_stores_never_claim_one_item(pg_url: str, tmp_path: Path) -> None:
    """Two stores on one PostgreSQL database claiming at the same time, each in a
    transaction still open, get disjoint work and outbox rows (FOR UPDATE SKIP LOCKED:
    without it the second would wait for the first, or claim the same rows)."""
    a, b = open_store_url(pg_url, tmp_path), open_store_url(pg_url, tmp_path)
    await a.open()
    await b.open()
    try:
        async with a.write() as tx:
            incident = await tx.create_incident("r", "f", "t0", {}, {}, 1.0)
            assert incident is not None
            for i in range(6):
                await tx.schedule(WorkKind.RUN_STEP, incident.id, i, 10.0)
                await tx.enqueue(f"{i}@example.com", Email(incident.id), incident.id, 10.0)
        async with a.write() as tx_a:
            work_a = await tx_a.claim_due(100.0, "a", 4, 60.0)
            outbox_a = await tx_a.claim_outbox(100.0, "a", 4, 60.0)
            async with asyncio.timeout(10), b.write() as tx_b:
                work_b = await tx_b.claim_due(100.0, "b", 4, 60.0)
                outbox_b = await tx_b.claim_outbox(100.0, "b", 4, 60.0)
        async with a.read() as tx:
            owners = await claimers(tx, schema.outbox)
    finally:
        await a.close()
        await b.close()
    assert (len(work_a), len(work_b), len(outbox_a), len(outbox_b)) == (4, 2, 4, 2)
    assert not {w.id for w in work_a} & {w.id for w in work_b}
    assert not {o.id for o in outbox_a} & {o.id for o in outbox_b}
    assert [owners[o.id] for o in outbox_a + outbox_b] == ["a"] * 4 + ["b"] * 2


async def test_outside_text_with_nul_or_past_its_column_size_is_stored(store: AnyStore) -> None:
    """Labels, targets, command output and errors come from outside: a NUL byte (which
    PostgreSQL's text cannot hold: stored there as U+FFFD) or a value longer than its
    column's declared size is stored on both backends, and found again by the same value."""
    target = "web\x00" + "w" * 300
    async with store.write() as tx:
        incident = await tx.create_incident("r", "f", "t0", {"a": "x\x00y"}, {}, 1.0)
        assert incident is not None
        await tx.update_incident(incident.id, 1.0, target=target, state=State.RUNNING)
        step = await tx.start_step(incident.id, 0, "ssh", {"argv": ["a"]}, 1.0)
        await tx.update_step(step.id, StepState.FAILED, output="out\x00put", error="e" * 5000)
        await tx.dead_letter("work", "work:1\x00", incident.id, "boom\x00", None, 2.0)
    async with store.read() as tx:
        assert await tx.lock_holder(target, 0, approvals_too=False) == (incident.id, "running")
        stored = await tx.step(incident.id, 0)
        assert (await tx.incident(incident.id)).labels == {"a": "x\x00y"}  # type: ignore[union-attr]
    assert stored is not None
    assert stored.output is not None
    assert stored.output.replace("\x00", "\ufffd") == "out\ufffdput"
    assert stored.error == "e" * 5000


async def test_a_read_sees_one_snapshot(store: AnyStore) -> None:
    """A read transaction sees the store as it was at its first query: a write committed
    meanwhile does not show half-way through (an incident and its steps read together
    agree), and the next read sees it."""
    async with store.write() as tx:
        await tx.audit(None, Event("first", {}), 1.0)
    async with store.read() as reader:
        assert [r.event for r in await reader.audit_since(0)] == ["first"]
        async with store.write() as tx:
            await tx.audit(None, Event("second", {}), 2.0)
        assert [r.event for r in await reader.audit_since(0)] == ["first"]
    async with store.read() as reader:
        assert [r.event for r in await reader.audit_since(0)] == ["first", "second"]
