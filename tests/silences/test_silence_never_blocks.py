"""A silence that breaks on a bug never holds back the step it was for."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.engine_harness import EngineHarness, notification
from support.sshd import SshServer

from remediator.engine import runner

RULE = """\
rules:
  - name: restart
    match: [alertname = NodeDown]
    target: web1
    steps:
      - action: restart_service
        params: {service: kaldrix-node}
        verify: 5m
    silence: true
"""
AM = "alertmanager: {url: 'http://127.0.0.1:9/'}\n"


async def test_a_silence_that_raises_fails_alone_and_the_step_runs(
    tmp_path: Path, sshd: SshServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the silence code raises (a bug, not an Alertmanager error it expects), the
    step's command still runs and the failure is counted."""

    async def broken(*_: object) -> None:
        raise RuntimeError("a bug in the silence code")

    monkeypatch.setattr(runner, "silence_unavailable", broken)
    monkeypatch.setattr(runner, "silence_step", broken)
    h = await EngineHarness.start(tmp_path, RULE, sshd, extra=AM)
    try:
        await h.send(notification({"alertname": "NodeDown"}))
        await h.engine.tick()
        assert "step_succeeded" in h.events()
        assert sshd.calls("systemctl")[0] == ["restart", "kaldrix-node"]
        failed = h.engine.ctx.metrics.silences.labels(result="failed")._value.get()
        assert failed == 1
    finally:
        await h.close()
