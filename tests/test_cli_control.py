"""`remediator quarantine` and `release` on the store, as an operator runs them.

(`pause` and `resume` go through the daemon: tests/test_cli_admin.py.)
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from support.daemon import write_config

from remediator import cliviews
from remediator.store.records import TargetHealth

RULE = "rules:\n  - name: r\n    match: [alertname = X]\n    steps:\n      - action: notify\n        params: {message: x}\n"


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remediator", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_release_of_a_pair_not_quarantined_says_so(tmp_path: Path) -> None:
    """release exits 1 with a message when nothing is quarantined; quarantine lists none."""
    config = write_config(tmp_path / "d", RULE)
    out = cli(config, "release", "r", "web1")
    assert out.returncode == 1
    assert "r on web1 is not quarantined" in out.stderr
    listing = cli(config, "quarantine")
    assert listing.returncode == 0
    assert listing.stdout == "no (rule, target) pair is quarantined\n"


def test_quarantine_reasons_from_the_fleet_are_escaped() -> None:
    """A reason carrying remote output cannot send escape sequences to the terminal."""
    hostile = "exit 1: \x1b[2J\x1b]0;pwned\x07 done"
    health = TargetHealth("r", "web1", 3, 1_767_607_200.0, hostile, 1_767_607_200.0)
    out = Console(file=io.StringIO(), width=300, color_system=None)
    out.print(cliviews.quarantine_table([health]))
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b" not in text
    assert "\\x1b[2J" in text
