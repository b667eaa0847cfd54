"""The audit trail out: GET /api/audit with a cursor, `remediator audit`, who decided how.

A collector following the cursor misses no row and repeats none, even on PostgreSQL with
transactions committing out of id order; details speak as the CLI does (steps from 1,
times in RFC 3339); human decisions say who and through what; reloads are rows too.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from support import storeview
from support.cli import run
from support.daemon import ADMIN_TOKEN, Daemon, webhook, write_config

from remediator.store import PostgresStore, SqliteStore, open_store_url
from remediator.store.events import Event

RULES = """\
rules:
  - name: page-only
    match: ['alertname =~ "Page.*"']
    escalate: critical
  - name: risky
    match: [alertname = Risky]
    steps:
      - action: script
        params: {argv: [echo, "{{ labels.instance }}"]}
        approval: required
        verify: 10m
"""
POLICY = (
    "approvals:\n  default:\n    approvers: [U024BE7LH]\n"
    "    channel: '#ops-approvals'\n    timeout: 15m\n    on_timeout: escalate\n"
)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon.for_config(write_config(tmp_path / "d", RULES, policies=POLICY)).start()
    yield d
    assert d.stop() == 0


def fire(d: Daemon, name: str) -> None:
    assert d.post_webhook(webhook({"alertname": name, "instance": "web1:9100"})) == 200
    d.wait_applied()


def page(d: Daemon, query: str = "") -> dict[str, Any]:
    body: dict[str, Any] = d.api(f"/api/audit{query}")
    return body


def test_following_the_cursor_returns_every_row_once(daemon: Daemon) -> None:
    """Pages of 2 rows, each from the last page's cursor, add up to the whole trail in
    order with no repeat; an empty page keeps the cursor, and later rows follow it."""
    fire(daemon, "PageA")
    fire(daemon, "PageB")
    seen: list[int] = []
    cursor = ""
    while True:
        got = page(daemon, f"?limit=2{cursor}")
        seen += [e["id"] for e in got["entries"]]
        assert len(got["entries"]) <= 2
        if not got["entries"]:
            break
        cursor = f"&cursor={got['cursor']}"
    everything = [e["id"] for e in page(daemon, "?limit=1000")["entries"]]
    assert seen == everything == sorted(set(everything))
    assert len(everything) >= 4
    fire(daemon, "PageC")
    after = page(daemon, f"?limit=1000{cursor}")["entries"]
    assert after
    assert all(e["id"] > max(seen) for e in after)
    assert {e["incident"] for e in after} == {3}


def test_rows_speak_as_the_cli_does(daemon: Daemon) -> None:
    """`at` and moments in details are RFC 3339, steps count from 1 (as `show` lists
    them), and the incident filter and bad parameters answer as documented."""
    fire(daemon, "Risky")
    rows = page(daemon, "?incident=1")["entries"]
    assert rows
    assert {r["incident"] for r in rows} == {1}
    asked = next(r for r in rows if r["event"] == "approval_requested")
    assert asked["detail"]["step"] == 1
    assert asked["detail"]["expires_at"].endswith("Z")
    assert rows[0]["at"].endswith("Z")
    assert "T" in rows[0]["at"]
    shown = daemon.api("/api/incidents/1")["audit"]
    assert next(a for a in shown if a["event"] == "approval_requested")["detail"]["step"] == 1
    assert page(daemon, "?since=1h")["entries"]
    assert page(daemon, "?since=2999-01-01T00:00:00Z")["entries"] == []
    bad_values = (
        "cursor=12",
        "cursor=9999999999999999999-1",
        "since=yesterday",
        "since=9999-12-31T23:59:59-23:59",
        "incident=0",
        "limit=0",
        "since=2026-01-01T00:00",
    )
    for bad in bad_values:
        status, body = daemon.request(
            "GET", f"/api/audit?{bad}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert status == 400, (bad, body)
        assert json.loads(body)["error"]


def test_human_decisions_say_who_and_through_what(daemon: Daemon) -> None:
    """An approval through `remediator approve` is `via: cli`; one through the API is
    `via: api`; pausing and resuming record who too; `remediator audit --json` prints one
    JSON object per line for a SIEM, and the table names the events."""
    cfg = str(daemon.config)
    fire(daemon, "Risky")
    storeview.wait_for(
        "the approval", lambda: "approval_requested" in storeview.events(daemon.db, 1)
    )
    done = run("approve", "1", "--by", "U024BE7LH", "-c", cfg)
    assert done.returncode == 0, done.stderr
    assert run("pause", "--reason", "maintenance", "-c", cfg).returncode == 0
    status, _ = daemon.request(
        "POST", "/api/resume", b"{}", {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert status == 200
    out = run("audit", "--json", "-c", cfg)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    by_event = {r["event"]: r for r in lines}
    assert by_event["approved"]["detail"]["via"] == "cli"
    assert by_event["approved"]["detail"]["by"] == "admin-token"
    assert by_event["paused"]["detail"] == {
        "reason": "maintenance",
        "by": "admin-token",
        "via": "cli",
    }
    assert by_event["resumed"]["detail"]["via"] == "api"
    assert by_event["paused"]["incident"] is None
    table = run("audit", "--incident", "1", "-c", cfg)
    assert table.returncode == 0, table.stderr
    assert "approved" in table.stdout
    assert "paused" not in table.stdout


def test_a_reload_is_an_audit_row_with_its_files_and_hash(daemon: Daemon) -> None:
    """SIGHUP after editing a rules file: a global `config_reloaded` row names the file
    that changed, the hash now running and the one before."""
    before = page(daemon)["entries"]
    rules = daemon.config.parent / "rules" / "rules.yml"
    rules.write_text(rules.read_text().replace("page-only", "page-only-2"))
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    row = storeview.wait_for(
        "the reload row",
        lambda: next((r for r in page(daemon)["entries"] if r["event"] == "config_reloaded"), None),
    )
    assert row["incident"] is None
    assert row["detail"]["changed"] == [str(rules)]
    assert row["detail"]["config_hash"] != row["detail"]["previous_hash"]
    assert row["detail"]["why"] == "SIGHUP"
    assert len(before) < len(page(daemon)["entries"])


async def test_postgres_rows_committed_out_of_id_order_are_not_skipped(
    pg_url: str, tmp_path: Path
) -> None:
    """Replica A writes a row (the lower id) and its transaction stays open; replica B
    writes one and commits. A reader following the cursor sees neither until A commits,
    then both, A first: with a cursor by id alone it would take B's and never see A's."""
    stores = []
    for name in ("a", "b"):
        store = open_store_url(pg_url, tmp_path / name)
        assert isinstance(store, PostgresStore)
        await store.open()
        stores.append(store)
    replica_a, replica_b = stores
    try:
        a_wrote, b_done = asyncio.Event(), asyncio.Event()

        async def slow_a() -> None:
            async with replica_a.write() as tx:
                await tx.audit(None, Event("a", {}), 1.0)
                a_wrote.set()
                await b_done.wait()

        task = asyncio.create_task(slow_a())
        await a_wrote.wait()
        async with replica_b.write() as tx:
            await tx.audit(None, Event("b", {}), 2.0)
        async with replica_b.read() as tx:
            while_open = await tx.audit_page((0, 0), 100)
        b_done.set()
        await task
        async with replica_b.read() as tx:
            after = await tx.audit_page((0, 0), 100)
        assert [r.event for r in while_open] == []
        assert [r.event for r in after] == ["a", "b"]
        assert after[0].id < after[1].id
        assert after[0].xact < after[1].xact
    finally:
        for store in stores:
            await store.close()


async def test_sqlite_pages_in_id_order(tmp_path: Path) -> None:
    """SQLite has one writer: rows come in id order from any cursor (xact is 0)."""
    store = SqliteStore(tmp_path / "r.db")
    await store.open()
    try:
        for n in range(5):
            async with store.write() as tx:
                await tx.audit(None, Event(f"e{n}", {"step": n}), float(n))
        async with store.read() as tx:
            first = await tx.audit_page((0, 0), 2)
            rest = await tx.audit_page((first[-1].xact, first[-1].id), 10)
        assert [r.event for r in first + rest] == [f"e{n}" for n in range(5)]
        assert {r.xact for r in first + rest} == {0}
    finally:
        await store.close()


async def test_sqlite_never_reuses_an_audit_id_after_pruning(tmp_path: Path) -> None:
    """Retention deleted the newest rows (a long quiet spell): the next row still gets a
    new id, so a collector whose cursor is past the deleted ones misses nothing. A store
    made before migration 12 is rebuilt with AUTOINCREMENT, its rows kept."""
    db = tmp_path / "r.db"
    store = SqliteStore(db)
    await store.open()
    await store.close()
    # As an older remediator made it: no AUTOINCREMENT, migration 12 not applied.
    conn = sqlite3.connect(db)
    conn.executescript(
        "DROP TABLE audit;"
        "CREATE TABLE audit (id INTEGER NOT NULL PRIMARY KEY, incident_id INTEGER"
        " REFERENCES incidents (id), at FLOAT NOT NULL, event VARCHAR(64) NOT NULL,"
        " detail JSON NOT NULL, xact BIGINT DEFAULT '0' NOT NULL);"
        "CREATE INDEX ix_audit_incident ON audit (incident_id, id);"
        "CREATE INDEX ix_audit_xact ON audit (xact, id);"
        "DELETE FROM schema_migrations WHERE version = 12;"
    )
    for n in range(1, 21):
        conn.execute("INSERT INTO audit (id, at, event, detail) VALUES (?, ?, 'old', '{}')", (n, n))
    conn.commit()
    conn.close()
    store = SqliteStore(db)
    await store.open()
    try:
        async with store.read() as tx:
            assert len(await tx.audit_page((0, 0), 100)) == 20  # kept by the rebuild
        async with store.write() as tx:
            await tx.conn.execute(text("DELETE FROM audit WHERE id > 10"))
        async with store.write() as tx:
            await tx.audit(None, Event("after", {}), 30.0)
        async with store.read() as tx:
            [row] = await tx.audit_page((0, 10), 10)
        assert row.event == "after"
        assert row.id == 21
    finally:
        await store.close()
