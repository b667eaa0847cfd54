"""`remediator quarantine` and `release` on the store, as an operator runs them.

(`pause` and `resume` go through the daemon: tests/test_cli_admin.py.)
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from support.conflicts import LosesRaces
from support.daemon import write_config

from remediator import cliviews, control
from remediator.store import open_store_url
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


async def test_a_release_or_pause_that_loses_a_race_is_run_again(tmp_path: Path) -> None:
    """`release` and pause/resume write the store beside running replicas: one that loses
    a race (another replica wrote the same rows first; its transaction rolled back) runs
    again on what the winner committed, instead of failing the operator's command."""
    store = open_store_url(f"sqlite:///{tmp_path / 'store.db'}", tmp_path)
    await store.open()
    try:
        async with store.write() as tx:
            await tx.save_target_health(TargetHealth("r", "web1", 3, 1.0, "3 failures", 1.0))
        racing = LosesRaces(store, losses=2)
        assert await control.release_quarantine(racing, "r", "web1", "alice", 2.0)  # type: ignore[arg-type]
        paused = await control.set_paused(racing, True, "deploy", 3.0)  # type: ignore[arg-type]
        assert paused.paused
        assert racing.lost == 2
        assert await control.quarantines(store) == []
        assert (await control.pause_state(store)).paused
    finally:
        await store.close()
