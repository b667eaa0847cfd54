"""The silence loop against the real Alertmanager, in process: what a restarted daemon
finds in the store is expired, and one incident that fails does not stop the others."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from support.alertmanager import Alertmanager
from support.daemon import write_config

from remediator.actions import build_registry
from remediator.clock import SystemClock
from remediator.config import load_config
from remediator.engine import EngineContext
from remediator.metrics import Metrics
from remediator.silences.client import AlertmanagerClient
from remediator.silences.watch import SilenceWatch
from remediator.store.base import Store
from remediator.store.records import State

RULE = "rules:\n  - name: r\n    match: [alertname = X]\n"
AM_SECTION = "alertmanager: {{url: '{url}', poll: 1s, min_uptime: 0s}}\n"


@pytest.fixture
def am(tmp_path: Path) -> Iterator[Alertmanager]:
    with Alertmanager.start(tmp_path / "am", "http://127.0.0.1:9/", "unused") as server:
        yield server


@pytest.fixture
async def client(am: Alertmanager) -> AsyncIterator[AlertmanagerClient]:
    c = AlertmanagerClient(am.url, {}, 5.0)
    yield c
    await c.close()


async def _incident(store: Store, name: str, labels: dict[str, str], state: State, sid: str) -> int:
    async with store.write() as tx:
        incident = await tx.create_incident("r", name, "2026-01-01T00:00:00Z", labels, {}, 1.0)
        assert incident is not None
        await tx.update_incident(incident.id, 1.0, state=state)
        await tx.set_silence(incident.id, sid)
    return incident.id


async def test_one_failing_incident_does_not_stop_the_others(
    store: Store, tmp_path: Path, am: Alertmanager, client: AlertmanagerClient
) -> None:
    """Three silenced incidents, as a crash left them: the closed one's silence is expired
    in Alertmanager and its id cleared; the escalated one's silence Alertmanager no longer
    has is cleared too (noted already gone); the automating one whose labels Alertmanager
    cannot filter by fails alone, counted, its silence kept for the next poll."""
    now = time.time()
    config = load_config(write_config(tmp_path / "cfg", RULE, extra=AM_SECTION.format(url=am.url)))
    assert config.file.alertmanager is not None
    metrics = Metrics()
    ctx = EngineContext(config, store, build_registry(None), SystemClock(), metrics)
    closed_labels = {"alertname": "X", "instance": "a"}
    sid = await client.put_silence(closed_labels, now, now + 600, "left by a crash")
    bad = await _incident(store, "f1", {"bad-name": "x"}, State.VERIFYING, "sil-bad")
    closed = await _incident(store, "f2", closed_labels, State.REMEDIATED, sid)
    gone = "00000000-0000-0000-0000-000000000000"
    escalated = await _incident(store, "f3", {"alertname": "X"}, State.ESCALATING, gone)
    sent: list[str] = []

    async def submit(_at: float, body: str) -> None:
        sent.append(body)

    watch = SilenceWatch(ctx, client, config.file.alertmanager, submit)
    await watch.poll_once()

    assert [i.id for i in await _silenced(store)] == [bad]
    assert await client.silence_start(sid) is None  # expired
    async with store.read() as tx:
        trail = {i: [r.detail for r in await tx.audit_for(i)] for i in (closed, escalated)}
    assert trail[closed] == [{"silence_id": sid, "state": "remediated"}]
    assert trail[escalated] == [
        {"silence_id": gone, "state": "escalating", "note": "already gone from Alertmanager"}
    ]
    assert metrics.silences.labels(result="expired")._value.get() == 2
    assert metrics.silences.labels(result="poll_failed")._value.get() == 1
    assert sent == []


async def _silenced(store: Store) -> list[object]:
    async with store.read() as tx:
        return list(await tx.silenced_incidents(10))


async def test_two_replicas_expire_a_silence_once(
    store: Store, tmp_path: Path, am: Alertmanager, client: AlertmanagerClient
) -> None:
    """Two replicas' loops find the same closed incident: both may ask Alertmanager to
    expire its silence (harmless), its id is cleared and `silence_expired` audited once."""
    now = time.time()
    config = load_config(write_config(tmp_path / "cfg", RULE, extra=AM_SECTION.format(url=am.url)))
    assert config.file.alertmanager is not None
    labels = {"alertname": "X", "instance": "b"}
    sid = await client.put_silence(labels, now, now + 600, "two replicas")
    closed = await _incident(store, "f4", labels, State.RESOLVED, sid)

    async def submit(_at: float, _body: str) -> None:
        raise AssertionError("nothing to resolve")

    watches = [
        SilenceWatch(
            EngineContext(config, store, build_registry(None), SystemClock(), Metrics()),
            client,
            config.file.alertmanager,
            submit,
        )
        for _ in range(2)
    ]
    await asyncio.gather(*(w.poll_once() for w in watches))
    async with store.read() as tx:
        assert [r.event for r in await tx.audit_for(closed)] == ["silence_expired"]
    assert await _silenced(store) == []
    assert await client.silence_start(sid) is None
    assert sum(w.ctx.metrics.silences.labels(result="expired")._value.get() for w in watches) == 1
