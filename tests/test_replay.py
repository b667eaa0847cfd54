"""The daemon records what it accepts; `remediator replay` prints the same timeline twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from support import storeview
from support.daemon import Daemon, webhook, write_config
from support.sshd import SshServer
from test_crash import RULE

HOSTS = {f"web{n}": {"address": "127.0.0.1"} for n in range(2, 6)}


def notification(status: str, instances: list[str], minute: int = 0) -> dict[str, Any]:
    alerts = [
        {
            "status": status,
            "labels": {"alertname": "NodeDown", "instance": f"{i}:9100"},
            "startsAt": f"2026-11-23T09:{minute:02d}:00Z",
        }
        for i in instances
    ]
    return {"version": "4", "status": status, "receiver": "remediator", "alerts": alerts}


def storm() -> list[dict[str, Any]]:
    """Twelve notifications: waves of firing alerts, re-sends, a hostile label, resolutions."""
    bodies = []
    for minute in range(3):
        bodies.append(notification("firing", ["web1", "web2", "web3"], minute))
        bodies.append(notification("firing", ["web1", "web2", "web3"], minute))  # a re-send
        bodies.append(notification("firing", ["web4", "web5", "nothere;reboot"], minute))
        bodies.append(notification("resolved", ["web2", "web4"], minute))
    return bodies


def replay(config: Path, recording: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remediator", "replay", "-c", str(config), str(recording)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_recorded_storm_replays_to_the_same_timeline_twice(tmp_path: Path, sshd: SshServer) -> None:
    """Only accepted bodies are recorded; two replays print the same decisions, and as many
    incidents as the daemon opened."""
    extra = "dry_run: true\nrecord: state/received.jsonl\n"
    d = Daemon.for_config(write_config(tmp_path / "d", RULE, sshd=sshd, hosts=HOSTS, extra=extra))
    d.start()
    sent = storm()
    for body in sent:
        assert d.post_webhook(body) == 200
    assert d.post_webhook(sent[0], token="wrong") == 401
    status, _ = d.request(
        "POST",
        "/webhook/alertmanager",
        b"{not json",
        {"Authorization": "Bearer test-webhook-token"},
    )
    assert status == 400
    d.wait_applied()  # all of it: the incidents are compared with the replay's
    assert d.stop() == 0
    recording = d.config.parent / "state" / "received.jsonl"
    assert oct(recording.stat().st_mode & 0o777) == "0o600"
    lines = [json.loads(line) for line in recording.read_text().splitlines()]
    assert [line["body"] for line in lines] == sent
    assert all(isinstance(line["received_at"], float) for line in lines)

    first, second = replay(d.config, recording), replay(d.config, recording)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    timeline = first.stdout.splitlines()
    matched = [t for t in timeline if "matched: restart-node" in t]
    assert len(matched) == len(storeview.incidents(d.db))
    assert any("refused: target" in t for t in timeline)  # nothere;reboot is not in inventory
    assert any("run: restart_service" in t and "host: web3" in t for t in timeline)
    assert any("closed: remediated" in t for t in timeline)
    assert f"{len(sent)} notifications replayed, 0 lines skipped" in first.stderr


def test_bad_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    """A line that is not JSON, or not a webhook body, is named by file:line; exit 1."""
    config = write_config(tmp_path / "d", "rules: []\n")
    recording = tmp_path / "rec.jsonl"
    good = json.dumps(notification("firing", ["web1"]))
    recording.write_text(
        f"{good}\nnot json\n"
        '{"received_at": "yesterday", "body": {}}\n'
        '{"received_at": 1767607200.5, "body": {"version": "4"}}\n'
    )
    out = replay(config, recording)
    assert out.returncode == 1
    assert f"{recording}:2: not JSON" in out.stderr
    assert (
        f"{recording}:3: expected epoch seconds or an RFC 3339 time, not 'yesterday'" in out.stderr
    )
    assert f"{recording}:4: not a webhook body" in out.stderr
    assert "1 notifications replayed, 3 lines skipped" in out.stderr


def test_bodies_json_refuses_are_recorded_and_ingest_goes_on(tmp_path: Path) -> None:
    """A body msgspec accepts and json refuses (a 5,000-digit integer under an unknown
    key), pretty-printed or not, gets its 200 and one recorded line; the next alert opens
    an incident, and `remediator replay` reads every line."""
    rules = "rules:\n  - name: page-only\n    match: [alertname = Page]\n    escalate: critical\n"
    extra = "record: state/received.jsonl\n"
    d = Daemon.for_config(write_config(tmp_path / "d", rules, extra=extra)).start()
    huge = "1" * 5000
    other = json.dumps(notification("firing", ["web1"]))
    pretty = json.dumps(notification("firing", ["web2"]), indent=2)[:-1] + f', "x": {huge}\n}}'
    compact = other[:-1] + f',"x":{huge}}}'
    headers = {"Authorization": "Bearer test-webhook-token"}
    for body in (pretty, compact):
        assert d.request("POST", "/webhook/alertmanager", body.encode(), headers)[0] == 200
    assert d.post_webhook(webhook({"alertname": "Page"})) == 200
    storeview.wait_for("the page's incident", lambda: storeview.incidents(d.db))
    assert d.stop() == 0
    assert "Traceback" not in d.logs()
    recording = d.config.parent / "state" / "received.jsonl"
    text = recording.read_text()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == 3
    assert [f'"x":{huge}}}}}' in line for line in lines[:2]] == [True, True]
    out = replay(d.config, recording)
    assert out.returncode == 0, out.stderr
    assert "3 notifications replayed, 0 lines skipped" in out.stderr
    assert "matched: page-only" in out.stdout


def test_times_past_the_calendar_are_reported_and_skipped(tmp_path: Path) -> None:
    """A received_at json or float() cannot read, or past the year 9999, names its line."""
    config = write_config(tmp_path / "d", "rules: []\n")
    recording = tmp_path / "rec.jsonl"
    body = json.dumps(notification("firing", ["web1"]))
    times = ["1e400", "1" + "0" * 400, "1" * 5000, "true", '"0001-01-01T00:00:00+14:00"']
    lines = [f'{{"received_at": {t}, "body": {body}}}' for t in times]
    lines.append(f'{{"received_at": null, "body": {body}}}')  # null: no time, as if absent
    lines.append(f'{{"received_at": 1767607200, "body": {json.dumps(body)}}}')  # body as text
    recording.write_text("\n".join(lines) + "\n")
    out = replay(config, recording)
    assert out.returncode == 1
    errors = out.stderr.splitlines()
    assert errors[:5] == [
        f"{recording}:1: expected epoch seconds or an RFC 3339 time, not 1e400",
        f"{recording}:2: expected epoch seconds or an RFC 3339 time, not {'1' + '0' * 59}",
        f"{recording}:3: expected epoch seconds or an RFC 3339 time, not {'1' * 60}",
        f"{recording}:4: expected epoch seconds or an RFC 3339 time, not true",
        f"{recording}:5: expected epoch seconds or an RFC 3339 time, not '0001-01-01T00:00:00+14:00'",
    ]
    assert "2 notifications replayed, 5 lines skipped" in out.stderr


def test_an_until_past_floats_is_a_usage_error(tmp_path: Path) -> None:
    """`--until` must be a finite duration: 400 nines of seconds is refused, not run."""
    config = write_config(tmp_path / "d", "rules: []\n")
    recording = tmp_path / "rec.jsonl"
    recording.write_text(json.dumps(notification("firing", ["web1"])) + "\n")
    until = ["--until", "9" * 400 + "s"]
    out = subprocess.run(
        [sys.executable, "-m", "remediator", "replay", "-c", str(config), str(recording), *until],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "not a finite number of seconds" in out.stderr
