"""The spool's writer process: framing, crash behaviour, a clean environment."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from support import storeview

from remediator.errors import StoreUnavailable
from remediator.store import SqliteStore, spoolpipe
from remediator.store import spoolwriter as sw
from remediator.store.spoolpipe import WriterProcess


def stored(store: SqliteStore) -> list[str]:
    conn = sqlite3.connect(store.spool.path)
    try:
        return [r[0] for r in conn.execute("SELECT body FROM inbox ORDER BY id")]
    finally:
        conn.close()


async def run_writer(store: SqliteStore, stream: bytes, parent: int) -> tuple[int, bytes, bytes]:
    """The writer run by hand on `store`'s spool: (exit code, stdout, stderr) at end of input."""
    child = await asyncio.create_subprocess_exec(
        *(sys.executable, "-I", "-S", sw.__file__, str(store.spool.path), "2000", str(parent)),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(stream), 30)
    assert child.returncode is not None
    return child.returncode, out, err


@pytest.fixture
def store(sqlite_store: SqliteStore) -> SqliteStore:
    """SQLite only: the conftest's `store` runs on both backends."""
    return sqlite_store


def test_batches_decode_from_any_split_of_the_stream() -> None:
    """The pipe delivers arbitrary chunks: every split point yields the same batches."""
    sent = [
        (1, [(1.5, '{"a": "é"}'), (2.0, "")]),
        (2, [(3.25, "x" * 300)]),
        (3, []),
    ]
    stream = b"".join(sw.encode_batch(i, rows) for i, rows in sent)
    for cut in range(len(stream) + 1):
        buf = bytearray(stream[:cut])
        got = sw.decode_batches(buf)
        buf += stream[cut:]
        got += sw.decode_batches(buf)
        assert got == sent, cut
        assert buf == b""


async def test_writer_runs_isolated_without_the_daemons_secrets(store: SqliteStore) -> None:
    """The child gets no environment (the daemon's holds tokens) and runs with -I -S."""
    os.environ["REMEDIATOR_TEST_SECRET"] = "s3cret"
    try:
        await store.append_inbox([(1.0, "a")])
    finally:
        del os.environ["REMEDIATOR_TEST_SECRET"]
    pid = store.spool.writer_pid
    assert pid is not None
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert {e.split(b"=")[0] for e in environ if e} <= {b"LD_LIBRARY_PATH"}
    assert b"s3cret" not in b"".join(environ)
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[1:3] == [b"-I", b"-S"]
    assert stored(store) == ["a"]


async def test_the_pipe_to_the_writer_holds_a_group_commit(store: SqliteStore) -> None:
    """The pipe takes a megabyte (a few hundred notifications), not Linux's 64 kB: a batch
    goes to the writer in one write, not in pieces each waiting for it to read."""
    await store.append_inbox([(1.0, "a")])
    fd = os.open(f"/proc/{store.spool.writer_pid}/fd/0", os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ) == spoolpipe.PIPE_BYTES
    finally:
        os.close(fd)


async def test_a_killed_writer_is_replaced_and_nothing_is_lost(store: SqliteStore) -> None:
    """SIGKILL to the writer: the next append starts another; every acknowledged row stays."""
    await store.append_inbox([(1.0, "before")])
    first = store.spool.writer_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await asyncio.sleep(0.2)
    await store.append_inbox([(2.0, "after")])
    assert store.spool.writer_pid not in (None, first)
    assert stored(store) == ["before", "after"]


async def test_a_batch_in_flight_fails_when_the_writer_dies(store: SqliteStore) -> None:
    """The webhook waiting on a dead writer gets StoreUnavailable (a 503), not a hang."""
    await store.append_inbox([(1.0, "warm")])
    pid = store.spool.writer_pid
    assert pid is not None
    with storeview.exclusive_lock(store.spool.path):  # the writer waits in its busy timeout
        pending = asyncio.create_task(store.append_inbox([(2.0, "lost")]))
        await asyncio.sleep(0.3)
        assert not pending.done()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(StoreUnavailable, match="spool writer exited"):
            await asyncio.wait_for(pending, 5)
    assert stored(store) == ["warm"]


async def test_what_reached_the_writer_is_committed_at_end_of_input(
    store: SqliteStore,
) -> None:
    """End of input (the daemon closed the pipe): complete batches are committed."""
    stream = sw.encode_batch(7, [(1.0, "one"), (1.5, "two")])
    stream += sw.encode_batch(8, [(2.0, "three")])[:-2]  # cut short by the crash
    code, out, err = await run_writer(store, stream, parent=os.getpid())
    assert code == 0, err
    assert out == sw.encode_answer(7, None)
    assert stored(store) == ["one", "two"]


async def test_closing_the_store_stops_the_writer(tmp_path: Path) -> None:
    """No writer outlives the store."""
    s = SqliteStore(tmp_path / "s.db")
    await s.open()
    await s.append_inbox([(1.0, "a")])
    pid = s.spool.writer_pid
    await s.close()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_a_writer_that_cannot_start_fails_the_batch_and_logs_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its traceback reaches the daemon's log (structured), the webhook gets a 503."""
    writer = await WriterProcess.start(tmp_path / "missing" / "s.spool.db", 2000)
    with pytest.raises(StoreUnavailable, match="spool writer exited"):
        await asyncio.wait_for(writer.append([(1.0, "a")]), 10)
    await writer.close()
    failed = [r for r in caplog.records if r.getMessage() == "spool writer failed"]
    assert len(failed) == 1
    assert "unable to open database file" in failed[0].__dict__["stderr"]


async def test_ctrl_c_to_the_process_group_does_not_stop_the_writer(store: SqliteStore) -> None:
    """The terminal's SIGINT reaches the writer too; it keeps going until end of input."""
    await store.append_inbox([(1.0, "a")])
    pid = store.spool.writer_pid
    assert pid is not None
    os.kill(pid, signal.SIGINT)
    await asyncio.sleep(0.2)
    await store.append_inbox([(2.0, "b")])
    assert store.spool.writer_pid == pid
    assert stored(store) == ["a", "b"]


async def test_once_the_daemon_is_gone_nothing_more_is_committed(store: SqliteStore) -> None:
    """Batches still in the pipe of a dead daemon were never acknowledged: not committed."""
    code, out, _ = await run_writer(store, sw.encode_batch(1, [(1.0, "x")]), parent=1)
    assert (code, out) == (0, b"")
    assert stored(store) == []


async def test_a_stuck_writer_is_killed_and_replaced(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that stops answering (SIGSTOP here; a hung disk in life): 503, then a new one."""
    monkeypatch.setattr(spoolpipe, "ANSWER_S", 0.5)
    await store.append_inbox([(1.0, "a")])
    pid = store.spool.writer_pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    with pytest.raises(StoreUnavailable, match="did not answer"):
        await asyncio.wait_for(store.append_inbox([(2.0, "b")]), 5)
    await store.append_inbox([(3.0, "c")])
    assert store.spool.writer_pid != pid
    assert stored(store) == ["a", "c"]


async def test_a_cancelled_webhook_leaves_the_spool_working(store: SqliteStore) -> None:
    """Cancelling a caller mid-commit (a client gone, a shutdown) breaks nothing after."""
    await store.append_inbox([(1.0, "a")])
    pid = store.spool.writer_pid
    with storeview.exclusive_lock(store.spool.path):
        pending = asyncio.create_task(store.append_inbox([(2.0, "b")]))
        await asyncio.sleep(0.2)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
    await store.append_inbox([(3.0, "c")])
    assert store.spool.writer_pid == pid
    assert stored(store) == ["a", "b", "c"]  # b was committed; its caller just left


def test_a_batch_is_decoded_once_however_many_reads_it_takes() -> None:
    """Large batches arrive in many pipe reads; nothing is decoded before the last one."""
    stream = sw.encode_batch(1, [(1.0, "x" * 70_000)] * 4)
    buf = bytearray()
    for i in range(0, len(stream) - 1, 65_536):
        buf += stream[i : i + 65_536]
        if len(buf) < len(stream):
            assert sw.decode_batches(buf) == []
    buf += stream[len(buf) :]
    assert sw.decode_batches(buf) == [(1, [(1.0, "x" * 70_000)] * 4)]
