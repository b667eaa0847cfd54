"""The daemon's `record:` option: accepted webhook bodies appended as JSON lines.

Each line is `{"received_at": <epoch seconds>, "body": <the webhook body>}`, the format
`remediator replay` reads, so a real incident can be replayed against new rules.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

import msgspec

from remediator.private import private_dir


class Recorder:
    """Appends accepted webhook bodies to a JSON-lines file (mode 0600: alerts are private)."""

    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)  # also when the file existed with a wider mode
        self.path = path
        self._file: IO[str] = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, batch: list[tuple[float, str]]) -> None:
        """One line per body; flushed per batch (a crash may lose the last batch's lines)."""
        for received_at, body in batch:
            if "\n" in body or "\r" in body:
                # Whitespace only (JSON strings cannot hold raw line breaks). msgspec
                # reformats without reading values: numbers json would refuse (5,000
                # digits) or change (1e400) are kept as they came.
                body = msgspec.json.format(body, indent=-1)
            self._file.write(f'{{"received_at":{received_at!r},"body":{body}}}\n')
        self._file.flush()

    def close(self) -> None:
        """Flush and close."""
        self._file.close()
