"""Baseline for the ingest benchmark: a bare aiohttp handler that reads the body, returns 200."""

from __future__ import annotations

import sys

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    """Read the body (as the real receiver must) and answer 200."""
    await request.read()
    return web.json_response({"status": "ok"})


def main() -> None:
    """Serve on 127.0.0.1:PORT."""
    app = web.Application(client_max_size=1_048_576)
    app.router.add_post("/webhook/alertmanager", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
