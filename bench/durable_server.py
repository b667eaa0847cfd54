"""Second baseline for the ingest benchmark: bare aiohttp plus remediator's durable write.

Each body is committed through remediator's own write path before its 200: the
Ingestor's group commit (what arrives while a batch is out joins the next) into the
SQLite spool, whose writer process commits with synchronous=FULL, one fsync per batch.
Nothing else of the daemon: no authentication, validation, metrics or engine. Its ratio
to bare is what the durable write alone leaves of bare's rate on this machine, so the
most a receiver of remediator's shape can reach here. Rows are never taken: the spool
only grows, as remediator's does while its engine is held off by a flood.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

from remediator.ingest import Ingestor
from remediator.store import spoolpipe
from remediator.store.spool import Spool
from remediator.store.sqlite import BUSY_TIMEOUT_MS


class _SpoolOnly:
    """What the Ingestor uses of a store: `append_inbox`."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    async def append_inbox(self, rows: list[tuple[float, str]]) -> None:
        await self.spool.append(rows)


async def serve(port: int, folder: Path) -> None:
    """Serve on 127.0.0.1:`port` until SIGTERM, the spool in `folder`."""
    spool = Spool(folder / "spool.db", BUSY_TIMEOUT_MS)
    await spool.open()
    # As the daemon builds it for its SQLite store: up to DEPTH batches out to the writer.
    ingestor = Ingestor(_SpoolOnly(spool), lambda: None, depth=spoolpipe.DEPTH)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        await ingestor.submit(time.time(), body.decode("utf-8"))
        return web.json_response({"status": "stored"})

    app = web.Application(client_max_size=1_048_576)
    app.router.add_post("/webhook/alertmanager", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    commits = asyncio.create_task(ingestor.run())
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await stop.wait()
    finally:
        await runner.cleanup()
        ingestor.close()
        await commits
        await spool.close()


def main() -> None:
    """Serve on 127.0.0.1:PORT (argv[1]) until SIGTERM, the spool in a temporary folder."""
    # A SIGTERM before the server's own handler is set (start-up) still removes the folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with tempfile.TemporaryDirectory(prefix="bench-durable-") as folder:
        asyncio.run(serve(int(sys.argv[1]), Path(folder)))


if __name__ == "__main__":
    main()
