"""Never down: one item that raises, in any loop, fails alone and on record.

Each test starts the real daemon with support.faults installed, makes one item raise in
one loop, then shows that the daemon still answers webhooks and runs the next alert's
step, that the item is a dead letter (stored, audited, counted, its incident paged),
and that it does not come back after a restart.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Any

from support import cli, storeview
from support.daemon import SIGNING_SECRET, Daemon, webhook, write_config
from support.fakeslack import click_body, sign
from support.metrics import sample

RULES = """\
rules:
  - name: fix
    match: [alertname = Broken]
    steps:
      - action: script
        params: {argv: [/usr/bin/touch, "{{ labels.out }}"], timeout: 10s}
        verify: 5m
    escalate: critical
  - name: page-only
    match: [alertname = PageOnly]
    escalate: critical
"""


def daemon(tmp_path: Path, extra: str = "") -> Daemon:
    d = Daemon.for_config(write_config(tmp_path / "d", RULES, extra=extra))
    d.faults = True
    return d.start()


def broken(out: Path, n: int, **labels: str) -> dict[str, Any]:
    """A firing alert whose step touches `out`; `n` keeps instances apart."""
    return webhook({"alertname": "Broken", "out": str(out), "n": str(n), **labels})


def dead_letters(d: Daemon) -> list[dict[str, Any]]:
    return storeview.query(d.db, "SELECT * FROM dead_letters ORDER BY id")


def metric(d: Daemon, name: str, labels: str = "") -> float:
    status, body = d.request("GET", "/metrics")
    assert status == 200
    return sample(body.decode(), name, labels)


def still_works(d: Daemon, tmp_path: Path, n: int) -> None:
    """The daemon takes the next alert and runs its step."""
    out = tmp_path / f"ran-{n}"
    assert d.post_webhook(broken(out, n)) == 200
    storeview.wait_for(f"alert {n}'s step to run", out.exists)
    assert d.request("GET", "/readyz")[0] == 200


def incident_with(d: Daemon, label: str, value: str) -> dict[str, Any]:
    [incident] = [i for i in storeview.incidents(d.db) if i["labels"].get(label) == value]
    return incident


def test_intake_poison_alert_is_a_dead_letter_and_paged(tmp_path: Path) -> None:
    """An alert intake raises on: the other alerts of its notification go through, it is kept
    as a dead letter, its incident goes to humans, and neither a restart nor a re-send of the
    same notification brings the failure back."""
    d = daemon(tmp_path)
    bad_out, good_out = tmp_path / "never", tmp_path / "sibling"
    body = broken(bad_out, 1, fault="intake")
    body["alerts"].append(broken(good_out, 2)["alerts"][0])
    assert d.post_webhook(body) == 200
    storeview.wait_for("the sibling alert's step", good_out.exists)
    [dead] = dead_letters(d)
    assert dead["loop"] == "intake"
    assert "injected fault in the intake loop" in dead["error"]
    assert json.loads(dead["payload"])["alert"]["labels"]["fault"] == "intake"
    incident = incident_with(d, "fault", "intake")
    assert incident["state"] == "escalating"
    assert "poison_item" in [e for e, _ in storeview.all_audit(d.db)]
    assert metric(d, "remediator_poison_items_total", 'loop="intake"') == 1
    still_works(d, tmp_path, 3)

    assert d.stop() == 0
    d.start()
    assert d.post_webhook(body) == 200  # Alertmanager re-sends the same notification
    still_works(d, tmp_path, 4)
    assert len(dead_letters(d)) == 1
    assert not bad_out.exists()
    assert d.stop() == 0

    listed = cli.run("dead-letters", "-c", str(d.config))
    assert listed.returncode == 0, listed.stderr
    [row] = cli.table_rows(listed.stdout)
    assert row[2:4] == ["intake", "inbox:1"]
    assert "RuntimeError: injected fault" in " ".join(row)
    as_json = json.loads(cli.run("dead-letters", "-c", str(d.config), "--json").stdout)
    assert as_json[0]["payload"]["alert"]["labels"]["fault"] == "intake"


def test_work_item_that_raises_is_retired_and_its_incident_paged(tmp_path: Path) -> None:
    """A step whose work item raises is not retried: dead letter, incident to humans."""
    d = daemon(tmp_path)
    assert d.post_webhook(broken(tmp_path / "never", 1, fault="work")) == 200
    storeview.wait_for("the dead letter", lambda: dead_letters(d))
    incident = incident_with(d, "fault", "work")
    events = storeview.events(d.db, incident["id"])
    storeview.wait_for("the hand-over", lambda: "escalation_started" in storeview.events(d.db, 1))
    assert "poison_item" in events
    [work] = storeview.query(d.db, "SELECT outcome FROM work WHERE kind='run_step'")
    assert work["outcome"] == "poison"
    assert metric(d, "remediator_poison_items_total", 'loop="work"') == 1
    assert metric(d, "remediator_dead_letters") == 1
    still_works(d, tmp_path, 2)

    assert d.stop() == 0
    d.start()
    still_works(d, tmp_path, 3)
    assert len(dead_letters(d)) == 1
    assert d.stop() == 0


def test_outbox_row_that_raises_is_given_up_and_delivery_goes_on(tmp_path: Path) -> None:
    """A page whose message cannot be built fails alone; later pages and steps go on."""
    d = daemon(tmp_path)
    assert d.post_webhook(webhook({"alertname": "PageOnly", "fault": "outbox"})) == 200
    storeview.wait_for("the dead letter", lambda: dead_letters(d))
    [dead] = dead_letters(d)
    assert dead["loop"] == "outbox"
    [row] = storeview.query(d.db, "SELECT state, last_error FROM outbox WHERE kind='slack_post'")
    assert row["state"] == "failed"
    assert "injected fault in the outbox loop" in row["last_error"]
    assert metric(d, "remediator_poison_items_total", 'loop="outbox"') == 1
    still_works(d, tmp_path, 1)
    assert d.stop() == 0
    d.start()
    still_works(d, tmp_path, 2)
    assert len(dead_letters(d)) == 1
    assert d.stop() == 0


def test_ingest_failure_is_a_503_and_the_next_webhook_is_stored(tmp_path: Path) -> None:
    """A batch the ingest loop raises on is refused with 503 (Alertmanager retries it)."""
    d = daemon(tmp_path)
    assert d.post_webhook(broken(tmp_path / "never", 1, note="fault-ingest")) == 503
    assert metric(d, "remediator_poison_items_total", 'loop="ingest"') == 1
    still_works(d, tmp_path, 2)
    assert d.stop() == 0


def test_a_slack_click_that_raises_fails_alone(tmp_path: Path) -> None:
    """A signed click whose decision raises: Slack gets its 200, the failure is counted,
    and the daemon goes on."""
    d = daemon(tmp_path)
    body = click_body("ack", "1", "UFAULT")
    status, _ = d.request("POST", "/slack/interactions", body, sign(SIGNING_SECRET, body))
    assert status == 200
    storeview.wait_for(
        "the failed click on record",
        lambda: metric(d, "remediator_poison_items_total", 'loop="slack"') == 1,
    )
    assert "slack click failed" in d.logs()
    still_works(d, tmp_path, 1)
    assert d.stop() == 0


def test_a_reload_that_raises_keeps_the_running_set(tmp_path: Path) -> None:
    """SIGHUP with a reload that raises: the old rules run on, the failure is on record."""
    d = daemon(tmp_path)
    (d.config.parent / "FAULT_RELOAD").touch()
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    storeview.wait_for(
        "the failed reload",
        lambda: metric(d, "remediator_poison_items_total", 'loop="reload"') == 1,
    )
    assert metric(d, "remediator_config_last_reload_successful") == 0
    still_works(d, tmp_path, 1)
    (d.config.parent / "FAULT_RELOAD").unlink()
    d.proc.send_signal(signal.SIGHUP)
    storeview.wait_for(
        "the next reload", lambda: metric(d, "remediator_config_last_reload_successful") == 1
    )
    assert d.stop() == 0


def test_a_loop_that_dies_is_restarted_and_readyz_names_it(tmp_path: Path) -> None:
    """The work loop dies: /readyz is 503 naming it, webhooks are still stored, and once
    the loop is restarted the stored alert's step runs."""
    d = daemon(tmp_path)
    marker = d.config.parent / "FAULT_WORK_LOOP"
    marker.touch()

    def not_ready() -> bytes | None:
        status, body = d.request("GET", "/readyz")
        return body if status == 503 else None

    why = storeview.wait_for("/readyz to name the loop", not_ready)
    assert "loop work is down" in json.loads(why)["error"]
    assert metric(d, "remediator_loop_up", 'loop="work"') == 0
    out = tmp_path / "after"
    assert d.post_webhook(broken(out, 1)) == 200
    time.sleep(1)
    assert not out.exists()
    marker.unlink()
    storeview.wait_for("the step after the restart", out.exists, timeout_s=40)
    storeview.wait_for("ready again", lambda: d.request("GET", "/readyz")[0] == 200)
    assert metric(d, "remediator_loop_restarts_total", 'loop="work"') >= 1
    assert d.stop() == 0


def test_a_deleted_store_stops_the_daemon(tmp_path: Path) -> None:
    """The store file deleted under a running daemon: it stops (exit 1) with the reason,
    instead of acknowledging webhooks into a file nobody will read again."""
    d = daemon(tmp_path)
    d.db.unlink()
    # Not acknowledged in the seconds before the store watch notices: a 503 (or, when the
    # daemon already stopped, no answer at all).
    with contextlib.suppress(OSError):
        assert d.post_webhook(broken(tmp_path / "never", 1)) == 503
    assert d.proc is not None
    assert d.proc.wait(20) == 1
    assert "was deleted or replaced" in d.logs()
