"""The daemon's end of the spool writer process (spoolwriter.py): batches out, answers in."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sys
from collections import deque
from pathlib import Path

from remediator.errors import StoreUnavailable
from remediator.store import spoolwriter

log = logging.getLogger(__name__)
ANSWER_S = 10.0  # a batch the writer has not answered by then: kill it, answer 503
EXIT_S = 10.0
STDERR_KEPT = 4000
# Batches the Ingestor may have out to the writer at once (Ingestor's `depth`): they reach
# it in pipe order, and it commits whatever it has received in one transaction.
DEPTH = 4
PIPE_BYTES = 1 << 20  # Linux's default limit for an unprivileged process (fs.pipe-max-size)


def _child_env() -> dict[str, str]:
    # Nothing of the daemon's environment (tokens) but what the interpreter may need to load.
    return {k: v for k, v in os.environ.items() if k == "LD_LIBRARY_PATH"}


def _widen(proc: asyncio.subprocess.Process) -> None:
    """Give the pipe to the writer room for a whole group commit (64 kB by default, about
    20 notifications of 10 alerts): a batch is then written in one call, not in pieces
    each waiting for the writer to read the one before. Where the system refuses, the
    default pipe still works."""
    assert proc.stdin is not None
    pipe = proc.stdin.get_extra_info("pipe")
    if pipe is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class WriterProcess:
    """One writer process; `append` resolves when its batch is committed, in order."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._next_id = 0
        self._killed = False
        self._waiting: deque[tuple[int, asyncio.Future[None], float]] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._reader = asyncio.create_task(self._read_answers(), name="spool-writer-answers")
        self._stderr = asyncio.create_task(self._log_stderr(), name="spool-writer-stderr")

    @classmethod
    async def start(cls, path: Path, busy_timeout_ms: int) -> WriterProcess:
        """Start a writer on the spool file at `path`."""
        argv = [spoolwriter.__file__, str(path), str(busy_timeout_ms), str(os.getpid())]
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                "-S",
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=_child_env(),
            )
        except OSError as exc:
            raise StoreUnavailable(f"spool {path}: cannot start its writer: {exc}") from exc
        _widen(proc)
        return cls(proc)

    @property
    def alive(self) -> bool:
        """Whether it still takes batches."""
        return not self._killed and self.proc.returncode is None and not self._reader.done()

    async def append(self, rows: list[tuple[float, str]]) -> None:
        """Send one batch and wait for its commit (raises StoreUnavailable)."""
        assert self.proc.stdin is not None
        batch_id = self._next_id + 1
        frame = spoolwriter.encode_batch(batch_id, rows)  # before registering: it may raise
        self._next_id = batch_id
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiting.append((batch_id, fut, loop.time()))
        if self._watchdog is None:
            self._watchdog = loop.call_later(ANSWER_S, self._check_answered)
        self.proc.stdin.write(frame)
        try:
            await self.proc.stdin.drain()
        except (ConnectionError, OSError) as exc:
            self._kill()
            self._fail(f"the spool writer went away: {exc}")
        # Awaited as it is: the reader resolves it in the loop turn its answer arrives (a
        # timeout per batch cost two more turns). A cancelled caller cancels it; the
        # reader then skips its answer.
        await fut

    def _check_answered(self) -> None:
        """The oldest batch out has waited ANSWER_S: the writer is stuck (a hung disk);
        kill it (the next append starts another) and fail what it holds."""
        self._watchdog = None
        if not self._waiting:
            return
        loop = asyncio.get_running_loop()
        due = self._waiting[0][2] + ANSWER_S
        if loop.time() < due:
            self._watchdog = loop.call_at(due, self._check_answered)
            return
        log.error("spool writer stuck; killed", extra={"pid": self.proc.pid})
        self._kill()
        self._fail(f"the spool writer did not answer in {ANSWER_S:g} s; it is replaced")

    async def _read_answers(self) -> None:
        assert self.proc.stdout is not None
        why = "the spool writer exited"
        try:
            while True:
                head = await self.proc.stdout.readexactly(spoolwriter.ANSWER.size)
                batch_id, ok, length = spoolwriter.ANSWER.unpack(head)
                text = (await self.proc.stdout.readexactly(length)).decode("utf-8", "replace")
                if not self._waiting or self._waiting[0][0] != batch_id:
                    expected = self._waiting[0][0] if self._waiting else None
                    why = f"the spool writer answered batch {batch_id}, expected {expected}"
                    self._kill()
                    return
                _, fut, _ = self._waiting.popleft()
                if fut.done():
                    continue  # its caller was cancelled
                if ok:
                    fut.set_result(None)
                else:
                    fut.set_exception(StoreUnavailable(f"spool: {text}"))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            why = f"the spool writer exited ({exc.__class__.__name__})"
        finally:
            self._fail(why)

    async def _log_stderr(self) -> None:
        assert self.proc.stderr is not None
        tail = b""
        while chunk := await self.proc.stderr.read(65536):
            tail = (tail + chunk)[-STDERR_KEPT:]
        text = tail.decode("utf-8", "replace").strip()
        if text:
            log.error("spool writer failed", extra={"pid": self.proc.pid, "stderr": text})

    def _kill(self) -> None:
        self._killed = True
        if self.proc.returncode is None:
            self.proc.kill()

    def _fail(self, why: str) -> None:
        while self._waiting:
            _, fut, _ = self._waiting.popleft()
            if not fut.done():
                fut.set_exception(StoreUnavailable(why))
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    async def close(self) -> None:
        """End of input: the writer commits what it has and exits. Never raises."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), EXIT_S)
        except TimeoutError:
            log.error("spool writer did not exit; killed", extra={"pid": self.proc.pid})
            self._kill()
            await self.proc.wait()
        for result in await asyncio.gather(self._reader, self._stderr, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("spool writer: %s", result, exc_info=result)
