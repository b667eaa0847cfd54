"""`remediator test` and `remediator replay` run in one process and say how long they took.

Each case (and a replay) runs on a throw-away store; no case starts a process of its own
(the daemon's spool writer is not needed offline), and the last line says the time per
case or per notification.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import pytest
from support.daemon import write_config
from support.procs import children

from remediator import cli
from remediator.config.loader import load_config
from remediator.simulate import Simulation

RULE = """\
rules:
  - name: restart-node
    match: [alertname = NodeDown]
    target: "{{ labels.instance | host }}"
    steps:
      - action: http
        params: {method: POST, url: "http://{{ target.address }}:8080/restart"}
    escalate: critical
"""
HOSTS = {"web1": {"address": "10.0.0.1"}, "web2": {"address": "10.0.0.2"}}
TESTS = """\
tests:
  - name: node down is restarted
    alerts:
      - {at: 0s, labels: {alertname: NodeDown, instance: "web1:9100"}}
    until: 1m
    expect:
      - {at: 0s, incident: 1, matched: restart-node, target: web1}
      - {at: 0s, incident: 1, run: http, step: 1}
  - name: each case starts on an empty store
    alerts:
      - {at: 0s, labels: {alertname: NodeDown, instance: "web2:9100"}}
    until: 1m
    expect:
      - {at: 0s, incident: 1, matched: restart-node, target: web2}
      - {at: 0s, incident: 1, run: http, step: 1}
"""


def _no_process(*_: Any, **__: Any) -> NoReturn:
    raise AssertionError("an offline tool started a process")


@pytest.fixture
def no_children(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting a process in this test fails it (asyncio's subprocesses use Popen too)."""
    monkeypatch.setattr(subprocess, "Popen", _no_process)
    monkeypatch.setattr(os, "fork", _no_process)
    monkeypatch.setattr(os, "posix_spawn", _no_process)
    monkeypatch.setattr(os, "posix_spawnp", _no_process)


def notification(instance: str) -> dict[str, Any]:
    alert = {
        "status": "firing",
        "labels": {"alertname": "NodeDown", "instance": f"{instance}:9100"},
        "startsAt": "2026-11-23T09:00:00Z",
    }
    return {"version": "4", "status": "firing", "alerts": [alert]}


def test_rule_tests_start_no_process_and_report_the_time_per_case(
    tmp_path: Path, no_children: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two cases pass without a child process; the summary gives the time per case."""
    config = write_config(tmp_path / "cfg", RULE, hosts=HOSTS)
    tests = tmp_path / "node.test.yml"
    tests.write_text(TESTS)
    assert cli.main(["test", "-c", str(config), str(tests)]) == 0
    out = capsys.readouterr()
    assert out.out.count("ok   ") == 2, out.out
    summary = out.err.splitlines()[-1]
    assert re.fullmatch(r"2 passed, 0 failed in \d+\.\d s \([0-9.]+ ms per case\)", summary)
    assert children(os.getpid()) == []


def test_replay_starts_no_process_and_reports_the_time_per_notification(
    tmp_path: Path, no_children: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A replay runs without a child process; the summary gives the time per notification."""
    config = write_config(tmp_path / "cfg", RULE, hosts=HOSTS)
    recording = tmp_path / "rec.jsonl"
    lines = [
        json.dumps({"received_at": 1767607200.0 + i, "body": notification(host)})
        for i, host in enumerate(["web1", "web2", "web1"])
    ]
    recording.write_text("\n".join(lines) + "\n")
    assert cli.main(["replay", "-c", str(config), str(recording)]) == 0
    out = capsys.readouterr()
    assert "matched: restart-node, target: web2" in out.out
    summary = out.err.splitlines()[-1]
    assert re.fullmatch(
        r"3 notifications replayed, 0 lines skipped in \d+\.\d s "
        r"\([0-9.]+ ms per notification\)",
        summary,
    )
    assert children(os.getpid()) == []


async def test_simulations_open_at_once_each_have_their_own_store(tmp_path: Path) -> None:
    """A simulation opened while another is open does not share its store: each sees only
    its own alerts (incident 1 each), and the first still works after the second closed."""
    config = load_config(write_config(tmp_path / "cfg", RULE, hosts=HOSTS))

    async def matched(sim: Simulation) -> list[tuple[int | None, str]]:
        return [(d.incident, d.fields.get("target", "")) for d in await sim.decisions()]

    async with Simulation(config) as first:
        await first.send(json.dumps(notification("web1")))
        async with Simulation(config) as second:
            await second.send(json.dumps(notification("web2")))
            assert await matched(second) == [(1, "web2"), (1, "")]
        await first.send(json.dumps(notification("web2")))
        assert await matched(first) == [(1, "web1"), (1, ""), (2, "web2"), (2, "")]
