"""Replicas visible: each daemon heartbeats in the store with the hash of its rules,
policies and inventory; GET /api/replicas and `remediator replicas` list those seen in
the last minute, and a replica on other rules stands out (its hash, a metric, a log line)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from support.cli import run, table_rows
from support.daemon import ADMIN_TOKEN, Daemon, write_config

from remediator.config import load_config
from remediator.engine.context import EngineContext
from remediator.metrics import Metrics
from remediator.replicas import Heartbeat, config_hash
from remediator.store import PostgresStore, SqliteStore
from remediator.store.records import Replica
from remediator.store.retention import Pruner

DAY = 86400.0
NOW = 1_800_000_000.0
RULE = """\
rules:
  - name: page-only
    match: [alertname = PageMe]
    escalate: critical
"""
OTHER_RULE = RULE.replace("PageMe", "PageYou")
AnyStore = SqliteStore | PostgresStore  # the conftest's `store`: each backend in turn


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.at = now

    def now(self) -> float:
        return self.at


def replica(rid: str, seen: float, digest: str = "h1", started: float = NOW - 100) -> Replica:
    return Replica(rid, f"host:{rid}", started, seen, "0.1.0", digest, "127.0.0.1:9")


async def test_heartbeat_inserts_then_refreshes_and_only_recent_replicas_are_listed(
    store: AnyStore,
) -> None:
    """A first heartbeat inserts the row, the next refreshes it (started_at kept); only
    replicas seen since the given time are listed, by name."""
    async with store.write() as tx:
        await tx.heartbeat(replica("a", NOW - 10))
        await tx.heartbeat(replica("old", NOW - 120))
        await tx.heartbeat(replica("a", NOW, digest="h2", started=NOW))
    async with store.read() as tx:
        seen = await tx.replicas_seen_since(NOW - 60)
    assert seen == [replica("a", NOW, digest="h2")]


async def test_retention_forgets_replicas_not_seen_for_a_day(store: AnyStore) -> None:
    """The retention pass deletes replica rows last seen more than a day ago, not others."""
    async with store.write() as tx:
        await tx.heartbeat(replica("gone", NOW - DAY - 1))
        await tx.heartbeat(replica("quiet", NOW - DAY + 60))
    pruner = Pruner(store, Clock(), Metrics(), lambda: 90 * DAY)
    assert (await pruner.prune_once(NOW)).get("replicas") == 1
    async with store.read() as tx:
        assert [r.id for r in await tx.replicas_seen_since(0)] == ["quiet"]


async def test_a_peer_on_other_rules_is_logged_once_per_hash(
    store: AnyStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Each heartbeat lists the replicas seen lately; a peer whose hash differs from this
    replica's is warned about once, again only when its hash changes once more."""
    peer_hash = ["h2"]
    me = Heartbeat(store, Clock(), "me", "127.0.0.1:1", lambda: "h1")
    peer = Heartbeat(store, Clock(), "peer", "127.0.0.1:2", lambda: peer_hash[0])
    caplog.set_level(logging.WARNING, logger="remediator.replicas")
    for _ in range(2):
        await peer.beat()
        await me.once()
    peer_hash[0] = "h3"
    await peer.beat()
    await me.once()
    warned = [r for r in caplog.records if "other rules" in r.getMessage()]
    assert [r.__dict__["its_hash"] for r in warned] == ["h2", "h3"]


def test_config_hash_follows_rules_policies_and_inventory(tmp_path: Path) -> None:
    """The same files give the same hash; a changed rule, policy or host another; a swapped
    config (a reload) leaves exactly its own hash in remediator_config_hash."""
    base = load_config(write_config(tmp_path / "a", RULE))
    same = load_config(write_config(tmp_path / "b", RULE))
    assert config_hash(base) == config_hash(same)
    other_rule = load_config(write_config(tmp_path / "c", OTHER_RULE))
    other_policy = load_config(
        write_config(tmp_path / "d", RULE, policies="approvals:\n  default:\n    approvers: [x]\n")
    )
    other_host = load_config(
        write_config(tmp_path / "e", RULE, hosts={"db1": {"address": "127.0.0.2"}})
    )
    hashes = {config_hash(c) for c in (base, other_rule, other_policy, other_host)}
    assert len(hashes) == 4
    metrics = Metrics()
    ctx = EngineContext(base, None, {}, Clock(), metrics)  # type: ignore[arg-type]
    ctx.swap_config(other_rule)
    assert ctx.config_hash == config_hash(other_rule)
    samples = [s for m in metrics.config_hash.collect() for s in m.samples]
    assert [(s.labels["hash"], s.value) for s in samples] == [(config_hash(other_rule), 1.0)]


def api(d: Daemon, path: str) -> Any:
    status, body = d.request("GET", path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert status == 200, body
    return json.loads(body)


def wait_for(check: Any, timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return found


def metric_hash(d: Daemon) -> str:
    _, body = d.request("GET", "/metrics")
    [line] = [x for x in body.decode().splitlines() if x.startswith("remediator_config_hash{")]
    return line.split('hash="')[1].split('"')[0]


def test_a_daemon_lists_itself_through_the_api_and_the_cli(tmp_path: Path) -> None:
    """On SQLite (one replica) GET /api/replicas lists the daemon itself, marked as the one
    answering, on its own config hash (the metric's); /readyz lists it by id and hash;
    `remediator replicas` shows it."""
    d = Daemon.for_config(write_config(tmp_path / "d", RULE)).start()
    try:
        listing = wait_for(lambda: api(d, "/api/replicas")["replicas"] and api(d, "/api/replicas"))
        [me] = listing["replicas"]
        assert me["is_self"]
        assert me["same_config"]
        assert me["config_hash"] == listing["config_hash"] == metric_hash(d)
        assert me["listen"].endswith(f":{d.port}")
        status, ready = d.request("GET", "/readyz")
        assert (status, json.loads(ready)) == (
            200,
            {
                "status": "ready",
                "config_hash": me["config_hash"],
                "replicas": {me["id"]: me["config_hash"]},
            },
        )
        shown = run("replicas", "-c", str(d.config))
        assert shown.returncode == 0, shown.stderr
        [row] = table_rows(shown.stdout)
        assert row[0].endswith(" *")
        assert row[1:3] == [me["id"], me["config_hash"]]
        raw = run("replicas", "--json", "--url", d.url)
        assert json.loads(raw.stdout)["replicas"][0]["id"] == me["id"]
    finally:
        assert d.stop() == 0


def test_two_replicas_list_each_other_and_a_changed_rule_shows(tmp_path: Path, pg_url: str) -> None:
    """Two daemons on one PostgreSQL each list both replicas; once one's rules file
    changes (a hot reload), the other lists it on a differing hash (in GET /api/replicas
    and /readyz), their remediator_config_hash metrics differ, and the other logs it."""
    replicas = [
        Daemon.for_config(write_config(tmp_path / name, RULE, store=pg_url)) for name in "ab"
    ]
    try:
        for d in replicas:
            d.start()
        for d in replicas:
            both = wait_for(lambda d=d: len(api(d, "/api/replicas")["replicas"]) == 2)
            assert both
            listed = api(d, "/api/replicas")["replicas"]
            assert [r["is_self"] for r in listed].count(True) == 1
            assert all(r["same_config"] for r in listed)
        a, b = replicas
        (b.config.parent / "rules" / "rules.yml").write_text(OTHER_RULE)
        wait_for(lambda: metric_hash(b) != metric_hash(a))
        differs = wait_for(
            lambda: [r for r in api(a, "/api/replicas")["replicas"] if not r["same_config"]]
        )
        assert [r["config_hash"] for r in differs] == [metric_hash(b)]
        ready = json.loads(a.request("GET", "/readyz")[1])
        assert sorted(ready["replicas"].values()) == sorted([metric_hash(a), metric_hash(b)])
        wait_for(lambda: "runs other rules" in a.logs())  # its next heartbeat
    finally:
        for d in replicas:
            d.stop()
