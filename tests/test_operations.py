"""Operating the daemon: probes, metrics, logs, start-up errors, the CLI on its admin API."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from support import cli, storeview
from support.daemon import SECRETS, Daemon, write_config
from support.metrics import sample
from support.sshd import SshServer
from test_crash import ALERT, RULE


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remediator", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=30,
        check=False,
    )


def test_probes_metrics_and_json_logs(tmp_path: Path, sshd: SshServer) -> None:
    """healthz, readyz and metrics answer; every log line is one JSON object."""
    d = Daemon.for_config(write_config(tmp_path / "d", RULE, sshd=sshd)).start()
    try:
        assert d.request("GET", "/healthz") == (200, b'{"status": "ok"}')
        assert d.request("GET", "/readyz")[0] == 200
        assert d.post_webhook(ALERT) == 200
        storeview.wait_for("the step", lambda: "verifying" in storeview.events(d.db, 1))
        _, body = d.request("GET", "/metrics")
        text = body.decode()
        assert sample(text, "remediator_alerts_received_total", 'status="firing"') == 1
        assert sample(text, "remediator_incidents", 'state="verifying"') == 1
        assert (
            sample(text, "remediator_actions_total", 'action="restart_service",result="succeeded"')
            == 1
        )
        assert (
            sample(text, "remediator_action_duration_seconds_count", 'action="restart_service"')
            == 1
        )
        assert sample(text, "remediator_webhook_duration_seconds_count") == 1
    finally:
        assert d.stop() == 0
    lines = [json.loads(line) for line in d.logs().splitlines()]
    assert {"ts", "level", "logger", "msg"} <= set(lines[0])
    assert any(rec["msg"] == "step finished" and rec["state"] == "succeeded" for rec in lines)


def test_serve_keeps_its_files_private(tmp_path: Path) -> None:
    """Started under umask 022, `serve` runs under 077: store, spool, lock and recording are
    0600, the folders it creates 0700."""
    config = write_config(tmp_path / "d", "rules: []\n", extra="record: rec/received.jsonl\n")
    d = Daemon.for_config(config).start(umask=0o022)
    try:
        assert d.post_webhook(ALERT) == 200
        storeview.wait_for("the recording", lambda: (config.parent / "rec/received.jsonl").exists())
        assert d.proc is not None
        status = Path(f"/proc/{d.proc.pid}/status").read_text()
        files = [*d.db.parent.iterdir(), config.parent / "rec" / "received.jsonl"]
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    finally:
        assert d.stop() == 0
    assert "\nUmask:\t0077\n" in status
    assert {"remediator.db-wal", "remediator.spool.db-wal", "received.jsonl"} <= set(modes)
    assert set(modes.values()) == {0o600}
    assert {stat.S_IMODE(p.stat().st_mode) for p in (d.db.parent, config.parent / "rec")} == {0o700}


def test_second_daemon_on_the_same_store_is_refused(tmp_path: Path, sshd: SshServer) -> None:
    """Two daemons on one SQLite file would run actions twice: the second one refuses."""
    d = Daemon.for_config(write_config(tmp_path / "d", RULE, sshd=sshd)).start()
    try:
        other = write_config(tmp_path / "d", RULE, sshd=sshd)  # same store path, new port
        result = run_cli("serve", "-c", str(other), env=SECRETS)
    finally:
        assert d.stop() == 0
    assert result.returncode == 1
    assert "another remediator is running on" in result.stderr


def test_missing_secret_is_a_clear_start_error(tmp_path: Path, sshd: SshServer) -> None:
    """An unset token env var stops the start with the config key named."""
    cfg = write_config(tmp_path / "d", RULE, sshd=sshd)
    env = {k: v for k, v in os.environ.items() if k != "REMEDIATOR_WEBHOOK_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "remediator", "serve", "-c", str(cfg)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert (
        "server.webhook_auth: environment variable REMEDIATOR_WEBHOOK_TOKEN is not set"
        in result.stderr
    )


def test_missing_known_hosts_is_a_clear_start_error(tmp_path: Path, sshd: SshServer) -> None:
    """Strict host keys cannot be switched off by a missing file."""
    cfg = write_config(tmp_path / "d", RULE, sshd=sshd, known_hosts=tmp_path / "nope")
    result = run_cli("serve", "-c", str(cfg), env=SECRETS)
    assert result.returncode == 1
    assert f"ssh.known_hosts: {tmp_path / 'nope'} does not exist" in result.stderr


def test_cli_lists_and_shows_incidents_of_the_running_daemon(
    tmp_path: Path, sshd: SshServer
) -> None:
    """`incidents` and `show ID` ask the daemon (admin API): the step that ran, its exit."""
    d = Daemon.for_config(write_config(tmp_path / "d", RULE, sshd=sshd)).start()
    try:
        assert d.post_webhook(ALERT) == 200
        storeview.wait_for("the step", lambda: "verifying" in storeview.events(d.db, 1))
        listing = cli.run("incidents", "--open", "-c", str(d.config))
        shown = cli.run("show", "1", "-c", str(d.config))
        missing = cli.run("show", "99", "-c", str(d.config))
    finally:
        assert d.stop() == 0
    assert listing.returncode == 0, listing.stderr
    [row] = cli.table_rows(listing.stdout)
    assert row[:5] == ["1", "verifying", "restart-node", "web1", "NodeDown"]
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0].split() == ["incident", "1", "verifying", "(open)"]
    step = next(r for r in cli.table_rows(shown.stdout) if r[1] == "restart_service")
    assert (step[0], step[2], step[5]) == ("1", "succeeded", "0")  # step 1, exit 0
    assert "step_executing" in shown.stdout
    assert (missing.returncode, missing.stderr.strip()) == (1, "remediator: no incident 99")


def test_metrics_show_quarantine_and_pause(tmp_path: Path, sshd: SshServer) -> None:
    """Two failed remediations quarantine (rule, web1) and /metrics says so; so does a pause."""
    sshd.install_recorder("systemctl", exit_code=1)
    config = write_config(
        tmp_path / "d",
        RULE + "    cooldown: 0s\n",
        sshd=sshd,
        policies="safety: {quarantine_after: 2}\n",
    )
    d = Daemon.for_config(config).start()
    try:
        for minute in (0, 1):
            body = json.loads(json.dumps(ALERT))
            body["alerts"][0]["startsAt"] = f"2026-11-23T09:0{minute}:00Z"
            assert d.post_webhook(body) == 200
            storeview.wait_for(
                "the step to fail", lambda m=minute: "exhausted" in storeview.events(d.db, m + 1)
            )
        _, text = d.request("GET", "/metrics")
        labels = 'rule="restart-node",target="web1"'
        assert sample(text.decode(), "remediator_quarantined", labels) == 1
        assert sample(text.decode(), "remediator_paused") == 0
        out = subprocess.run(
            [sys.executable, "-m", "remediator", "pause", "-c", str(config), "--reason", "x"],
            capture_output=True,
            text=True,
            env={**os.environ, **SECRETS},
            timeout=60,
            check=True,
        )
        assert "paused" in out.stdout
        _, text = d.request("GET", "/metrics")
        assert sample(text.decode(), "remediator_paused") == 1
    finally:
        assert d.stop() == 0
