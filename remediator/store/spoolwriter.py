"""The spool's writer: a child process that commits webhook bodies, one fsync per batch.

Why a process: the receiver's event loop must stay free to answer webhooks. A thread
that commits and fsyncs shares the interpreter lock with that loop, and each hand-over
of the lock costs the loop more than the write itself (measured: about 35 % of ingest
throughput). The child has its own interpreter; the daemon only writes bytes to a pipe
and reads acknowledgements from another, inside its event loop.

The child runs this file as a script (`python -I -S spoolwriter.py SPOOL BUSY_MS`):
standard library only, none of the daemon's environment (it holds tokens), no
site-packages; what it prints to stderr (a traceback) is logged by the daemon. It
commits every complete batch waiting in the pipe in one transaction with
`synchronous=FULL`, then answers for each batch, in order. At end of input (the daemon
closed the pipe, or died) it commits what it has fully received and exits; bodies
committed but never acknowledged are re-sent by Alertmanager and applied once (the
engine deduplicates).

Framing (little-endian), daemon -> child: BATCH (id, count), then `count` times
RECORD (received_at, length) and `length` bytes of UTF-8 body.
Child -> daemon: ACK (id, ok, length), then `length` bytes of UTF-8 error text.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import struct
import sys

BATCH = struct.Struct("<QI")
RECORD = struct.Struct("<dI")
ACK = struct.Struct("<QBI")
READ_SIZE = 1 << 20


def encode_batch(batch_id: int, rows: list[tuple[float, str]]) -> bytes:
    """One batch as the child reads it."""
    parts = [BATCH.pack(batch_id, len(rows))]
    for received_at, body in rows:
        data = body.encode("utf-8")
        parts.append(RECORD.pack(received_at, len(data)))
        parts.append(data)
    return b"".join(parts)


def decode_batches(buf: bytearray) -> list[tuple[int, list[tuple[float, str]]]]:
    """Remove and return every complete batch at the start of `buf`."""
    batches: list[tuple[int, list[tuple[float, str]]]] = []
    offset = 0
    while len(buf) - offset >= BATCH.size:
        batch_id, count = BATCH.unpack_from(buf, offset)
        pos = offset + BATCH.size
        rows: list[tuple[float, str]] = []
        for _ in range(count):
            if len(buf) - pos < RECORD.size:
                break
            received_at, length = RECORD.unpack_from(buf, pos)
            pos += RECORD.size
            if len(buf) - pos < length:
                break
            rows.append((received_at, buf[pos : pos + length].decode("utf-8")))
            pos += length
        if len(rows) < count:
            break
        batches.append((batch_id, rows))
        offset = pos
    del buf[:offset]
    return batches


def encode_ack(batch_id: int, error: str | None) -> bytes:
    """The answer for one batch: committed, or the error that stopped it."""
    text = (error or "").encode("utf-8", "replace")
    return ACK.pack(batch_id, error is None, len(text)) + text


def _connect(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a 200 means the alert survives power loss too
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    return conn


def _commit(conn: sqlite3.Connection, rows: list[tuple[float, str]]) -> str | None:
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT INTO inbox (received_at, body) VALUES (?, ?)", rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def serve(path: str, busy_timeout_ms: int, stdin: int = 0, stdout: int = 1) -> None:
    """Commit batches from `stdin` and acknowledge them on `stdout` until end of input."""
    conn = _connect(path, busy_timeout_ms)
    buf = bytearray()
    try:
        while chunk := os.read(stdin, READ_SIZE):
            buf += chunk
            batches = decode_batches(buf)
            if not batches:
                continue
            error = _commit(conn, [row for _, rows in batches for row in rows])
            _write_all(stdout, b"".join(encode_ack(batch_id, error) for batch_id, _ in batches))
    finally:
        conn.close()


if __name__ == "__main__":
    # Ctrl-C or a hangup reaches the whole process group; the writer stops at end of
    # input instead, once the daemon has flushed and closed the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with contextlib.suppress(BrokenPipeError):  # the daemon went away; commits stay
        serve(sys.argv[1], int(sys.argv[2]))
