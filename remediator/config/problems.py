"""One configuration problem, located by file, line and path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """A problem an operator must fix, printed as `file:line: path: message`."""

    file: str
    line: int
    path: str
    message: str

    def format(self) -> str:
        """Render as `file:line: path: message` (path omitted when empty)."""
        where = f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


def format_path(loc: Sequence[str | int]) -> str:
    """Turn ('rules', 3, 'steps', 0) into 'rules[3].steps[0]'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out
