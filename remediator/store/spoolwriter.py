"""The spool's writer: a child process that commits webhook bodies, one fsync per batch.

Why a process: the receiver's event loop must stay free to answer webhooks. A thread
that commits and fsyncs shares the interpreter lock with that loop, and each hand-over
of the lock costs the loop more than the write itself (measured: about 35 % of ingest
throughput). The child has its own interpreter; the daemon only writes bytes to a pipe
and reads acknowledgements from another, inside its event loop.

The child runs this file as a script (`python -I -S spoolwriter.py SPOOL BUSY_MS PPID`):
standard library only, none of the daemon's environment (it holds tokens), no
site-packages; what it prints to stderr (a traceback) is logged by the daemon. It
commits every complete batch waiting in the pipe in one transaction with
`synchronous=FULL`, then answers for each batch, in order. At end of input (the daemon
closed the pipe) it commits what it has fully received and exits. Once the daemon is
gone (its pid is no longer the parent) it commits nothing more: nobody would answer
Alertmanager, which sends those bodies again.

Framing (little-endian), daemon -> child: BATCH (id, count, size), then `size` bytes:
`count` times RECORD (received_at, length) and `length` bytes of UTF-8 body.
Child -> daemon: ANSWER (id, ok, length), then `length` bytes of UTF-8 error text.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import struct
import sys

BATCH = struct.Struct("<QIQ")
RECORD = struct.Struct("<dI")
ANSWER = struct.Struct("<QBI")
READ_SIZE = 1 << 20


def encode_batch(batch_id: int, rows: list[tuple[float, str]]) -> bytes:
    """One batch as the child reads it."""
    parts = []
    for received_at, body in rows:
        data = body.encode("utf-8")
        parts.append(RECORD.pack(received_at, len(data)))
        parts.append(data)
    records = b"".join(parts)
    return BATCH.pack(batch_id, len(rows), len(records)) + records


def decode_batches(buf: bytearray) -> list[tuple[int, list[tuple[float, str]]]]:
    """Remove and return every complete batch at the start of `buf`.

    A batch is decoded once, when all of it has arrived (the size is in its header):
    big batches arrive in many pipe reads.
    """
    batches: list[tuple[int, list[tuple[float, str]]]] = []
    offset = 0
    while len(buf) - offset >= BATCH.size:
        batch_id, count, size = BATCH.unpack_from(buf, offset)
        start = offset + BATCH.size
        if len(buf) - start < size:
            break
        batches.append((batch_id, _records(bytes(buf[start : start + size]), count)))
        offset = start + size
    del buf[:offset]
    return batches


def _records(data: bytes, count: int) -> list[tuple[float, str]]:
    rows: list[tuple[float, str]] = []
    pos = 0
    for _ in range(count):
        received_at, length = RECORD.unpack_from(data, pos)
        pos += RECORD.size
        rows.append((received_at, data[pos : pos + length].decode("utf-8")))
        pos += length
    if pos != len(data):
        raise ValueError(f"batch of {count} records does not fill its {len(data)} bytes")
    return rows


def encode_answer(batch_id: int, error: str | None) -> bytes:
    """The answer for one batch: committed, or the error that stopped it."""
    text = (error or "").encode("utf-8", "replace")
    return ANSWER.pack(batch_id, error is None, len(text)) + text


def _connect(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a 200 means the alert survives power loss too
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    return conn


def append_rows(conn: sqlite3.Connection, rows: list[tuple[float, str]]) -> None:
    """Append rows in one transaction (BEGIN IMMEDIATE, the inserts, COMMIT); raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany("INSERT INTO inbox (received_at, body) VALUES (?, ?)", rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a failed COMMIT may have rolled back already
            conn.execute("ROLLBACK")
        raise


def _commit(conn: sqlite3.Connection, rows: list[tuple[float, str]]) -> str | None:
    try:
        append_rows(conn, rows)
    except sqlite3.Error as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def serve(path: str, busy_timeout_ms: int, parent: int, stdin: int = 0, stdout: int = 1) -> None:
    """Commit batches from `stdin` and answer them on `stdout` until end of input."""
    conn = _connect(path, busy_timeout_ms)
    buf = bytearray()
    try:
        while chunk := os.read(stdin, READ_SIZE):
            buf += chunk
            batches = decode_batches(buf)
            if not batches:
                continue
            if os.getppid() != parent:
                return  # the daemon died: these were never acknowledged
            error = _commit(conn, [row for _, rows in batches for row in rows])
            answers = b"".join(encode_answer(batch_id, error) for batch_id, _ in batches)
            _write_all(stdout, answers)
    finally:
        conn.close()


if __name__ == "__main__":
    # Ctrl-C or a hangup reaches the whole process group; the writer stops at end of
    # input instead, once the daemon has flushed and closed the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with contextlib.suppress(BrokenPipeError):  # the daemon went away; commits stay
        serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
