"""Run `python -m remediator ...` as an operator would, and read its rich tables back."""

from __future__ import annotations

import os
import subprocess
import sys

from support.daemon import SECRETS


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI with the daemon's secrets in its environment (override with `env`)."""
    environ = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run(
        [sys.executable, "-m", "remediator", *args],
        capture_output=True,
        text=True,
        env={**environ, **SECRETS, **(env or {})},
        timeout=60,
        check=False,
    )


def table_rows(text: str) -> list[list[str]]:
    """The cells of each body line of the rich tables in `text` (not headers; a wrapped
    cell continues on a line of its own)."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in text.splitlines()
        if line.strip().startswith("│")
    ]
