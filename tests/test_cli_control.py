"""`remediator pause`, `resume`, `quarantine` and `release` on the store, as an operator runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.daemon import write_config

RULE = "rules:\n  - name: r\n    match: [alertname = X]\n    steps:\n      - action: notify\n        params: {message: x}\n"


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remediator", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_pause_is_stored_and_reported_until_resume(tmp_path: Path) -> None:
    """pause writes the switch with its reason; a second process sees it; resume clears it."""
    config = write_config(tmp_path / "d", RULE)
    out = cli(config, "pause", "--reason", "deploy of v2")
    assert out.returncode == 0, out.stderr
    assert "automation paused since" in out.stdout
    assert "deploy of v2" in out.stdout
    again = cli(config, "pause", "--reason", "other")
    assert "deploy of v2" in again.stdout  # already paused: the first reason stands
    out = cli(config, "resume")
    assert out.returncode == 0, out.stderr
    assert "automation running since" in out.stdout


def test_release_of_a_pair_not_quarantined_says_so(tmp_path: Path) -> None:
    """release exits 1 with a message when nothing is quarantined; quarantine lists none."""
    config = write_config(tmp_path / "d", RULE)
    out = cli(config, "release", "r", "web1")
    assert out.returncode == 1
    assert "r on web1 is not quarantined" in out.stderr
    listing = cli(config, "quarantine")
    assert listing.returncode == 0
    assert listing.stdout.split() == ["RULE", "TARGET", "FAILURES", "SINCE", "REASON"]
