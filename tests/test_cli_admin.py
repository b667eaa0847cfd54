"""`incidents`, `show`, `pause`, `resume` and their errors against a real running daemon.

The CLI talks to the daemon's admin API (found from the config's server.listen, or
--url), with the token from the env var server.admin_token_env names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import storeview
from support.cli import run, table_rows
from support.daemon import Daemon, webhook, write_config
from support.metrics import sample
from support.sshd import free_port

RULES = """\
rules:
  - name: page-only
    match: ['alertname =~ "Page.*"']
    escalate: critical
  - name: risky
    match: [alertname = Risky]
    steps:
      - action: script
        params: {argv: [echo, "{{ labels.instance }}"]}
        approval: required
        verify: 10m
"""
POLICY = (
    "approvals:\n  default:\n    approvers: [U024BE7LH]\n"
    "    channel: '#ops-approvals'\n    timeout: 15m\n    on_timeout: escalate\n"
)
HOSTILE = "Page[red]x[/red]:smile:\x1b[2J"


def alert(name: str) -> dict[str, Any]:
    return webhook({"alertname": name, "instance": "web1:9100"})


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon.for_config(write_config(tmp_path / "d", RULES, policies=POLICY)).start()
    yield d
    assert d.stop() == 0


def fire(d: Daemon, name: str, count: int) -> None:
    assert d.post_webhook(alert(name)) == 200
    storeview.wait_for(
        f"incident {count} escalating",
        lambda: "escalation_started" in storeview.events(d.db, count),
    )


def test_incidents_lists_the_daemons_incidents_in_a_table(daemon: Daemon) -> None:
    """One row per incident, newest first; --open and --state filter; --json is the API's."""
    fire(daemon, "PageA", 1)
    fire(daemon, "PageB", 2)
    cfg = str(daemon.config)
    listing = run("incidents", "-c", cfg)
    assert listing.returncode == 0, listing.stderr
    rows = table_rows(listing.stdout)
    assert [r[:5] for r in rows] == [
        ["2", "escalating", "page-only", "-", "PageB"],
        ["1", "escalating", "page-only", "-", "PageA"],
    ]
    assert "ID" in listing.stdout.splitlines()[1]
    assert "\x1b[" not in listing.stdout  # not a terminal: no colours
    assert [
        r[0] for r in table_rows(run("incidents", "--open", "--limit", "1", "-c", cfg).stdout)
    ] == ["2"]
    closed = run("incidents", "--state", "closed", "-c", cfg)
    assert (closed.returncode, closed.stdout.strip()) == (0, "no incidents (closed)")
    raw = run("incidents", "--json", "--url", daemon.url)
    assert raw.returncode == 0, raw.stderr
    assert [i["labels"]["alertname"] for i in json.loads(raw.stdout)["incidents"]] == [
        "PageB",
        "PageA",
    ]


def test_show_prints_summary_steps_and_audit_and_404_is_clear(daemon: Daemon) -> None:
    """show ID: a summary grid, then the Steps and Audit tables; an unknown id exits 1."""
    fire(daemon, "PageA", 1)
    shown = run("show", "1", "-c", str(daemon.config))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["incident", "1", "escalating", "(open)"]
    assert lines[1].split() == ["rule", "page-only"]
    assert "labels      alertname=PageA instance=web1:9100" in shown.stdout
    assert "escalation  critical: " in shown.stdout
    assert [line.strip() for line in lines if line.startswith(("Steps", "Audit"))] == [
        "Steps: none run",
        "Audit",
    ]
    events = [row[1] for row in table_rows(shown.stdout)]
    assert events[:3] == ["matched", "exhausted", "escalation_started"]
    as_json = json.loads(run("show", "1", "--json", "-c", str(daemon.config)).stdout)
    assert [a["event"] for a in as_json["audit"]][:3] == events[:3]
    missing = run("show", "99", "-c", str(daemon.config))
    assert (missing.returncode, missing.stderr.strip()) == (1, "remediator: no incident 99")


def test_show_has_the_command_to_approve_then_the_step_it_ran(daemon: Daemon) -> None:
    """Waiting: an Approvals table with the exact command; approved: a Steps row, exit 0."""
    assert daemon.post_webhook(alert("Risky")) == 200
    storeview.wait_for(
        "the approval request", lambda: "approval_requested" in storeview.events(daemon.db, 1)
    )
    cfg = str(daemon.config)
    waiting = run("show", "1", "-c", cfg)
    assert waiting.returncode == 0, waiting.stderr
    assert "Approvals" in waiting.stdout
    rows = table_rows(waiting.stdout)
    assert rows[0] == ["1", "1", "script", "default", "pending", "1", rows[0][6], "-"]
    # The whole command: where, argv, environment (a long PATH folds), timeout.
    command = [r[2] for r in rows[1:] if not r[0]]
    assert command[:2] == ["on the remediator host itself:", "$ echo web1:9100"]
    assert command[2].startswith("environment:")
    assert "timeout: 60s" in command
    denied = run("deny", "1", "--by", "mallory", "-c", cfg)
    assert (denied.returncode, denied.stderr.strip()) == (
        1,
        "remediator: deny 1: mallory may not deny: not in the approvers",
    )
    approved = run("approve", "1", "--by", "U024BE7LH", "--reason", "go", "-c", cfg)
    assert approved.returncode == 0, approved.stderr
    # The shared token: one identity, `admin-token`; --by is checked and kept as `as`.
    assert approved.stdout.startswith("incident 1: approved by admin-token (as U024BE7LH) (state: ")
    storeview.wait_for("the step", lambda: "step_succeeded" in storeview.events(daemon.db, 1))
    ran = run("show", "1", "-c", cfg)
    step = next(r for r in table_rows(ran.stdout) if r[1] == "script" and r[2] == "succeeded")
    assert (step[0], step[5], step[6]) == ("1", "0", "echo web1:9100")  # step 1, exit 0


def test_labels_cannot_inject_markup_or_terminal_escapes(daemon: Daemon) -> None:
    """A label is shown literally: rich markup stays text, an escape is shown as \\x1b."""
    fire(daemon, HOSTILE, 1)
    for args in (["incidents"], ["show", "1"]):
        out = run(*args, "-c", str(daemon.config))
        assert out.returncode == 0, out.stderr
        assert "Page[red]x[/red]:smile:\\x1b[2J" in out.stdout
        assert "\x1b" not in out.stdout


def test_pause_and_resume_switch_the_running_daemon(daemon: Daemon) -> None:
    """pause stores the switch with its reason (metrics say paused); resume clears it."""
    cfg = str(daemon.config)
    out = run("pause", "--reason", "deploy of v2", "-c", cfg)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("automation paused since ")
    assert out.stdout.rstrip().endswith(": deploy of v2")
    _, metrics = daemon.request("GET", "/metrics")
    assert sample(metrics.decode(), "remediator_paused") == 1
    again = run("pause", "--reason", "other", "--json", "-c", cfg)
    state = json.loads(again.stdout)
    assert (state["paused"], state["reason"]) == (True, "deploy of v2")  # the first one stands
    out = run("resume", "-c", cfg)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("automation running since ")
    _, metrics = daemon.request("GET", "/metrics")
    assert sample(metrics.decode(), "remediator_paused") == 0


def test_a_wrong_or_missing_token_names_the_env_var(daemon: Daemon) -> None:
    """401 from the daemon, or no token at all: exit 1 saying which env var to set."""
    wrong = run("incidents", "-c", str(daemon.config), env={"REMEDIATOR_ADMIN_TOKEN": "nope"})
    assert (wrong.returncode, wrong.stderr.strip()) == (
        1,
        "remediator: missing or wrong admin token: set REMEDIATOR_ADMIN_TOKEN to the daemon's admin token",
    )
    unset = run("pause", "-c", str(daemon.config), env={"REMEDIATOR_ADMIN_TOKEN": ""})
    assert (unset.returncode, unset.stderr.strip()) == (
        1,
        "remediator: set REMEDIATOR_ADMIN_TOKEN to the daemon's admin token",
    )


def test_an_unreachable_daemon_is_one_clear_line() -> None:
    """Nothing listening at --url: exit 1, one line naming the URL, no traceback."""
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["incidents"], ["show", "1"], ["resume"], ["ack", "1"]):
        out = run(*args, "--url", url)
        assert out.returncode == 1
        assert out.stderr.startswith(f"remediator: cannot reach the daemon at {url}: "), out.stderr
        assert len(out.stderr.splitlines()) == 1
