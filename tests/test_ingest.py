"""Group commit and back-pressure of the webhook spool."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from remediator.errors import StoreUnavailable
from remediator.ingest import FLOOD, QUIET_S, Ingestor
from remediator.record import Recorder


class GatedStore:
    """Stands in for the store's append only: each batch waits for the test to open the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.batches: list[list[tuple[float, str]]] = []
        self.fail = False

    async def append_inbox(self, rows: list[tuple[float, str]]) -> None:
        await self.gate.wait()
        if self.fail:
            raise StoreUnavailable("disk full")
        self.batches.append(rows)


async def test_concurrent_submits_share_one_commit() -> None:
    """Bodies that arrive while a commit runs go together in the next one."""
    store = GatedStore()
    ingestor = Ingestor(store, on_stored=lambda: None)  # type: ignore[arg-type]
    runner = asyncio.create_task(ingestor.run())
    first = asyncio.create_task(ingestor.submit(1.0, "a"))
    await asyncio.sleep(0.01)
    rest = [asyncio.create_task(ingestor.submit(2.0, b)) for b in "bcd"]
    await asyncio.sleep(0.01)
    store.gate.set()
    await asyncio.gather(first, *rest)
    ingestor.close()
    await runner
    assert [[body for _, body in batch] for batch in store.batches] == [["a"], ["b", "c", "d"]]


class OrderedStore(GatedStore):
    """Commits batches in the order given, each once the test opens its own gate (the
    spool's writer process, whose pipe keeps the order)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[list[str]] = []
        self.gates: list[asyncio.Event] = []

    async def append_inbox(self, rows: list[tuple[float, str]]) -> None:
        self.sent.append([body for _, body in rows])
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        self.batches.append(rows)


async def test_an_ordered_store_is_sent_what_arrives_while_a_commit_runs() -> None:
    """With depth > 1 a body arriving during a commit goes to the store at once (the
    writer commits it as soon as the running commit ends), each request is answered
    when its own batch has committed, and no more than `depth` batches are out."""
    store = OrderedStore()
    ingestor = Ingestor(store, on_stored=lambda: None, depth=2)  # type: ignore[arg-type]
    runner = asyncio.create_task(ingestor.run())
    first = asyncio.create_task(ingestor.submit(1.0, "a"))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(ingestor.submit(2.0, "b"))
    await asyncio.sleep(0.01)
    assert store.sent == [["a"], ["b"]]  # b did not wait for a's commit
    rest = [asyncio.create_task(ingestor.submit(3.0, c)) for c in "cd"]
    await asyncio.sleep(0.01)
    assert store.sent == [["a"], ["b"]]  # two out: c and d wait, together
    store.gates[1].set()
    await asyncio.wait_for(second, 1)
    assert not first.done()
    await asyncio.sleep(0.01)
    assert store.sent == [["a"], ["b"], ["c", "d"]]
    for gate in (store.gates[0], store.gates[2]):
        gate.set()
    await asyncio.wait_for(asyncio.gather(first, *rest), 1)
    ingestor.close()
    await asyncio.wait_for(runner, 1)


async def test_closing_waits_for_the_batches_still_out() -> None:
    """`run` returns only once every batch sent has been answered (shutdown)."""
    store = OrderedStore()
    ingestor = Ingestor(store, on_stored=lambda: None, depth=4)  # type: ignore[arg-type]
    runner = asyncio.create_task(ingestor.run())
    submitted = asyncio.create_task(ingestor.submit(1.0, "a"))
    await asyncio.sleep(0.01)
    ingestor.close()
    await asyncio.sleep(0.01)
    assert not runner.done()
    store.gates[0].set()
    await asyncio.wait_for(asyncio.gather(runner, submitted), 1)


async def test_a_failed_commit_fails_every_waiting_request() -> None:
    """A store error reaches each request of the batch (the receiver answers 503)."""
    store = GatedStore()
    store.fail = True
    store.gate.set()
    ingestor = Ingestor(store, on_stored=lambda: None)  # type: ignore[arg-type]
    runner = asyncio.create_task(ingestor.run())
    results = await asyncio.gather(
        *(ingestor.submit(1.0, str(i)) for i in range(3)), return_exceptions=True
    )
    ingestor.close()
    await runner
    assert all(isinstance(r, StoreUnavailable) for r in results)


async def test_engine_waits_for_headroom_under_a_flood_but_not_forever() -> None:
    """With FLOOD webhooks in flight the engine waits; it resumes when they are stored."""
    store = GatedStore()
    ingestor = Ingestor(store, on_stored=lambda: None)  # type: ignore[arg-type]
    runner = asyncio.create_task(ingestor.run())
    await asyncio.wait_for(ingestor.wait_for_headroom(max_wait_s=5), 1)  # idle: no wait
    flood = [asyncio.create_task(ingestor.submit(1.0, str(i))) for i in range(FLOOD)]
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(ingestor.wait_for_headroom(max_wait_s=5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    store.gate.set()
    await asyncio.wait_for(waiter, 1)
    await asyncio.gather(*flood)

    store.gate.clear()
    flood = [asyncio.create_task(ingestor.submit(1.0, str(i))) for i in range(FLOOD)]
    await asyncio.sleep(0.01)
    await asyncio.wait_for(ingestor.wait_for_headroom(max_wait_s=0.05), 1)  # bounded wait
    store.gate.set()
    await asyncio.gather(*flood)
    ingestor.close()
    await runner


async def test_a_flood_is_not_over_between_two_commits() -> None:
    """Senders that answer each 200 with the next webhook (Alertmanager peers catching up, a
    load generator) drop below FLOOD at every commit for a moment: the engine keeps
    waiting until the receiver has had headroom for QUIET_S, and not longer."""
    store = GatedStore()
    store.gate.set()
    ingestor = Ingestor(store, on_stored=lambda: None)  # type: ignore[arg-type]
    runner = asyncio.create_task(ingestor.run())
    flooding = True

    async def sender() -> None:
        while flooding:
            await ingestor.submit(1.0, "x")
            await asyncio.sleep(0.005)

    senders = [asyncio.create_task(sender()) for _ in range(FLOOD * 2)]
    await asyncio.sleep(0.02)
    waiter = asyncio.create_task(ingestor.wait_for_headroom(max_wait_s=5))
    await asyncio.sleep(QUIET_S * 4)
    assert not waiter.done(), "the engine took a batch in the middle of a flood"
    flooding = False
    await asyncio.gather(*senders)
    ended = asyncio.get_running_loop().time()
    await asyncio.wait_for(waiter, 1)
    assert asyncio.get_running_loop().time() - ended >= QUIET_S * 0.5
    ingestor.close()
    await runner


class BrokenRecorder(Recorder):
    """A recording whose write fails with something other than OSError (a bug, say)."""

    def write(self, batch: list[tuple[float, str]]) -> None:
        raise RuntimeError("recorder bug")


async def test_a_failing_recording_never_stops_ingest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Any exception from `record:` is logged and counted; every body is still stored."""
    store = GatedStore()
    store.gate.set()
    failures: list[int] = []
    recorder = BrokenRecorder(tmp_path / "rec.jsonl")
    ingestor = Ingestor(
        store,  # type: ignore[arg-type]
        on_stored=lambda: None,
        recorder=recorder,
        on_record_error=lambda: failures.append(1),
    )
    runner = asyncio.create_task(ingestor.run())
    await asyncio.wait_for(ingestor.submit(1.0, "a"), 1)
    await asyncio.wait_for(ingestor.submit(2.0, "b"), 1)  # the loop is still running
    ingestor.close()
    await asyncio.wait_for(runner, 1)
    recorder.close()
    assert [[body for _, body in batch] for batch in store.batches] == [["a"], ["b"]]
    assert len(failures) == 2
    logged = [r for r in caplog.records if r.getMessage() == "recording webhook bodies failed"]
    assert [r.__dict__["error"] for r in logged] == ["RuntimeError: recorder bug"] * 2
