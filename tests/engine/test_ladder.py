"""Steps in order with verify windows, on a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.engine_harness import EngineHarness
from support.sshd import SshServer

LADDER = """\
rules:
  - name: ladder
    match: [alertname = Stuck]
    target: web1
    steps:
      - action: restart_service
        params: {service: node}
        verify: 5m
      - action: ssh
        params: {argv: [probe-stub, second]}
        verify: 10m
    escalate: critical
"""
STUCK = {"alertname": "Stuck"}


@pytest.fixture
async def h(tmp_path: Path, sshd: SshServer, store_url: str) -> AsyncIterator[EngineHarness]:
    sshd.install_recorder("probe-stub")
    harness = await EngineHarness.start(tmp_path, LADDER, sshd, store_url=store_url)
    yield harness
    await harness.close()


async def test_next_step_runs_when_the_verify_window_passes(
    h: EngineHarness, sshd: SshServer
) -> None:
    """Still firing after 5m: step 2 runs; still firing after its 10m: exhausted."""
    await h.fire(STUCK)
    await h.advance(299)
    assert sshd.calls("probe-stub") == []
    await h.advance(1)
    assert sshd.calls("probe-stub") == [["second"]]
    assert h.incidents()[0]["state"] == "verifying"
    await h.advance(600)
    assert h.incidents()[0]["state"] == "escalating"
    assert dict(h.audit())["exhausted"]["reason"] == "alert still firing after the last step"


async def test_resolve_inside_the_window_stops_the_ladder(
    h: EngineHarness, sshd: SshServer
) -> None:
    """Resolved within step 1's window: remediated, step 2 never runs."""
    await h.fire(STUCK)
    await h.advance(120)
    await h.resolve(STUCK)
    await h.advance(3600)
    assert h.incidents()[0]["state"] == "remediated"
    assert sshd.calls("probe-stub") == []
    assert len(sshd.calls("systemctl")) == 2
