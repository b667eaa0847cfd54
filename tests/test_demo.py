"""`make demo` brings the chain up on loopback and answers a person's commands."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_demo_shows_a_node_down_becoming_an_incident() -> None:
    """`down` makes the exporter fail its scrape; `incidents` then lists the NodeDown
    incident of the shipped rule (in dry run: nothing is sent to a host); `quit` stops
    every process it started."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.demo"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    assert proc.stdin is not None
    out = proc.stdout
    reader = threading.Thread(target=lambda: [lines.put(x) for x in out], daemon=True)
    reader.start()

    def wait_for(text: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if text in line:
                return line
        raise AssertionError(f"the demo never printed {text!r}")

    try:
        wait_for("remediator http://127.0.0.1:", 120)
        proc.stdin.write("down\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        found = ""
        while not found and time.monotonic() < deadline:
            proc.stdin.write("incidents\n")
            proc.stdin.flush()
            try:
                found = wait_for("restart-unresponsive-node", 3)
            except AssertionError:
                continue
        assert "NodeDown" in found
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdin.close()
        reader.join(10)
        proc.stdout.close()
