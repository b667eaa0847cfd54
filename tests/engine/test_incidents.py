"""Incidents: matching, the first step over real SSH, idempotence, resolve, guards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support import storeview
from support.engine_harness import EngineHarness, notification, spooled
from support.sshd import SshServer

RULE = """\
rules:
  - name: restart-node
    match: [alertname = NodeDown]
    target: "{{ labels.instance | host }}"
    require:
      instance: '^[a-z0-9.-]+(:[0-9]+)?$'
    steps:
      - action: restart_service
        params: {service: kaldrix-node}
        verify: 5m
    escalate: critical
    cooldown: 30m
"""
DOWN = {"alertname": "NodeDown", "instance": "web1:9100"}


@pytest.fixture
async def h(tmp_path: Path, sshd: SshServer, store_url: str) -> AsyncIterator[EngineHarness]:
    harness = await EngineHarness.start(tmp_path, RULE, sshd, store_url=store_url)
    yield harness
    await harness.close()


async def test_firing_alert_restarts_the_service_once(h: EngineHarness, sshd: SshServer) -> None:
    """restart then is-active run on the target; the incident waits in its verify window."""
    await h.fire(DOWN)
    assert sshd.calls("systemctl") == [["restart", "kaldrix-node"], ["is-active", "kaldrix-node"]]
    [incident] = h.incidents()
    assert (incident["rule"], incident["target"], incident["state"]) == (
        "restart-node",
        "web1",
        "verifying",
    )
    assert h.events() == [
        "matched",
        "step_scheduled",
        "step_dispatching",
        "step_executing",
        "step_succeeded",
        "verifying",
    ]


async def test_resent_and_duplicate_notifications_change_nothing(
    h: EngineHarness, sshd: SshServer
) -> None:
    """Re-sends (repeat_interval) and HA peers' duplicates open no second incident."""
    await h.fire(DOWN)
    await h.fire(DOWN)
    await h.send(notification(DOWN, groupKey="peer-2", receiver="other"))
    await h.advance(60)
    assert len(h.incidents()) == 1
    assert sshd.calls("systemctl") == [["restart", "kaldrix-node"], ["is-active", "kaldrix-node"]]


async def test_resolve_after_the_step_closes_as_remediated(h: EngineHarness) -> None:
    """A resolved notification closes the incident as remediated and cancels its timer."""
    await h.fire(DOWN)
    await h.resolve(DOWN)
    [incident] = h.incidents()
    assert incident["state"] == "remediated"
    assert h.audit()[-1] == (
        "resolved",
        {"state": "remediated", "previous": "verifying", "cancelled_work": 1},
    )
    await h.advance(3600)
    assert h.events()[-1] == "resolved"


async def test_resolve_before_any_step_closes_as_resolved(
    h: EngineHarness, sshd: SshServer
) -> None:
    """Firing and resolved in one batch: the step never runs, the incident is `resolved`."""
    await h.store.append_inbox(
        [
            (h.clock.now(), spooled(notification(DOWN))),
            (h.clock.now(), spooled(notification(DOWN, "resolved"))),
        ]
    )
    await h.engine.tick()
    assert h.incidents()[0]["state"] == "resolved"
    assert sshd.calls("systemctl") == []


async def test_alert_no_rule_matches_is_stored_only(h: EngineHarness, sshd: SshServer) -> None:
    """An unmatched alert opens no incident."""
    await h.fire({"alertname": "Other", "instance": "web1:9100"})
    assert h.incidents() == []
    assert sshd.calls("systemctl") == []


@pytest.mark.parametrize(
    "instance", ["x;touch /tmp/pwned", "$(id)", "web1:9100\nreboot", "web1\x00:9100", ""]
)
async def test_failed_require_escalates_and_runs_nothing(
    h: EngineHarness, sshd: SshServer, instance: str
) -> None:
    """A label that fails `require` is audited with the reason; the incident escalates."""
    await h.fire({"alertname": "NodeDown", "instance": instance})
    [incident] = h.incidents()
    assert incident["state"] == "escalating"
    audit = dict(h.audit())
    assert audit["require_failed"]["reason"].startswith("require: label instance=")
    assert audit["exhausted"]["escalate"] == "critical"
    assert sshd.calls("systemctl") == []
    assert not Path("/tmp/pwned").exists()


async def test_target_outside_the_inventory_is_never_contacted(
    h: EngineHarness, sshd: SshServer
) -> None:
    """A well-formed label naming a host the operator did not list escalates instead."""
    await h.fire({"alertname": "NodeDown", "instance": "db9.example.org:9100"})
    audit = dict(h.audit())
    assert audit["target_refused"] == {"reason": "target 'db9.example.org' is not in the inventory"}
    assert h.incidents()[0]["state"] == "escalating"
    assert sshd.calls("systemctl") == []


async def test_target_may_be_named_by_address(h: EngineHarness, sshd: SshServer) -> None:
    """An instance label holding the host's address resolves to that inventory host."""
    await h.fire({"alertname": "NodeDown", "instance": "127.0.0.1:9100"})
    assert h.incidents()[0]["target"] == "web1"
    assert len(sshd.calls("systemctl")) == 2


async def test_cooldown_holds_a_new_incident_then_lets_go(
    h: EngineHarness, sshd: SshServer
) -> None:
    """Within 30m of an attempt a new incident for the same target escalates; after, it runs."""
    await h.fire(DOWN)
    await h.resolve(DOWN)
    await h.fire(DOWN, starts_at="2026-11-23T09:10:00Z")
    second = h.incidents()[1]
    assert second["state"] == "escalating"
    held = dict(h.audit(second["id"]))["guard_refused"]
    assert held["guard"] == "cooldown"
    assert held["reason"] == "cooldown for 30m"
    assert len(sshd.calls("systemctl")) == 2

    h.clock.advance(30 * 60 + 1)
    await h.fire(DOWN, starts_at="2026-11-23T09:50:00Z")
    assert h.incidents()[2]["state"] == "verifying"
    assert len(sshd.calls("systemctl")) == 4


async def test_failed_command_is_a_result_not_a_retry(
    tmp_path: Path, sshd: SshServer, store_url: str
) -> None:
    """A non-zero exit fails the step once, is audited with its status, and escalates."""
    sshd.install_recorder("systemctl", exit_code=3)
    h = await EngineHarness.start(tmp_path, RULE, sshd, store_url=store_url)
    try:
        await h.fire(DOWN)
        await h.advance(3600)
    finally:
        await h.close()
    assert sshd.calls("systemctl") == [["restart", "kaldrix-node"]]
    audit = dict(h.audit())
    assert audit["step_failed"]["exit_status"] == 3
    assert audit["step_failed"]["error"] == "`systemctl restart kaldrix-node` exited 3"
    assert h.incidents()[0]["state"] == "escalating"


async def test_an_unreadable_spooled_row_is_audited_and_skipped(
    h: EngineHarness, sshd: SshServer
) -> None:
    """A row the receiver should have refused (a time off the calendar in UTC) cannot stop
    the rows behind it: it is audited as unreadable and dropped."""
    poison = notification(DOWN, starts_at="0001-01-01T00:00:00+01:00")
    await h.store.append_inbox([(h.clock.now(), poison), (h.clock.now(), notification(DOWN))])
    await h.engine.tick()
    assert [i["state"] for i in h.incidents()] == ["verifying"]
    assert await h.store.inbox_pending() == 0
    rows = storeview.query(h.db, "SELECT event FROM audit WHERE incident_id IS NULL")
    assert rows == [{"event": "inbox_unreadable"}]


TWO_RULES = """\
rules:
  - name: first
    match: [alertname = NodeDown]
    continue: true
    steps:
      - action: notify
        params: {message: first}
        verify: 1m
      - action: notify
        params: {message: again}
        verify: 5m
  - name: second
    match: [alertname = NodeDown]
    steps:
      - action: notify
        params: {message: second}
        verify: 5m
"""


async def test_a_resolve_closes_its_alerts_incidents_in_the_order_they_opened(
    tmp_path: Path, store_url: str
) -> None:
    """An alert two rules took resolves: their incidents close oldest first, also when the
    older one changed last (PostgreSQL hands back a row an UPDATE rewrote after the others
    unless the query asks for an order)."""
    h = await EngineHarness.start(tmp_path, TWO_RULES, None, store_url=store_url)
    try:
        await h.fire(DOWN)
        await h.advance(60)  # the first incident's second step: its row changes last
        await h.resolve(DOWN)
    finally:
        await h.close()
    closed = storeview.query(
        h.db, "SELECT incident_id FROM audit WHERE event = 'resolved' ORDER BY id"
    )
    assert [r["incident_id"] for r in closed] == [1, 2]


async def test_labels_and_details_keep_their_key_order(h: EngineHarness) -> None:
    """Labels read back in the order the notification gave them, audit details in the order
    the engine wrote them, on both backends (messages list labels in that order; a JSONB
    column would sort keys by length)."""
    labels = {**DOWN, "a_very_long_label_name": "x", "zone": "eu-1", "b": "y"}
    await h.fire(labels)
    async with h.store.read() as tx:
        incident = await tx.incident(1)
        audit = await tx.audit_for(1)
    assert incident is not None
    assert list(incident.labels) == list(labels)
    assert list(h.incidents()[0]["labels"]) == list(labels)
    assert [list(row.detail) for row in audit if row.event == "verifying"] == [["step", "until"]]
