"""`all:` steps on a real sshd: parts start together after one guard check and one
approval, the step fails when any part fails (after the others finish), and each
part's outcome is in the audit."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from support import storeview
from support.daemon import write_config
from support.engine_harness import EngineHarness, notification
from support.sshd import SshServer

from remediator.actions.sshpool import SshPool
from remediator.config import load_config
from remediator.engine import approvals
from remediator.engine.decisions import Result, Voter
from remediator.notify.commandtext import command_lines

RULE = """\
rules:
  - name: contain
    match: [alertname = Breach]
    target: "{{ labels.instance | host }}"
    steps:
      - verify: 5m
        all:
          - {action: ssh, params: {argv: [capture, "{{ labels.instance }}"]}}
          - {action: ssh, params: {argv: [lockdown, now]}}
    escalate: critical
"""
ALERT = {"alertname": "Breach", "instance": "web1"}
APPROVERS = "approvals:\n  default: {approvers: [alice], timeout: 15m}\n"


async def start(tmp_path: Path, sshd: SshServer, rule: str = RULE, **kw: Any) -> EngineHarness:
    return await EngineHarness.start(tmp_path, rule, sshd, **kw)


def parts(h: EngineHarness) -> list[dict[str, Any]]:
    return [detail for event, detail in h.audit() if event == "step_part"]


async def test_two_ssh_parts_run_at_the_same_time(tmp_path: Path, sshd: SshServer) -> None:
    """Both parts' commands overlap on the host (each takes 1s); the step is marked
    executing once, succeeds as one step record, and each part's outcome is audited."""
    sshd.install_recorder("capture", sleep_s=1)
    sshd.install_recorder("lockdown", sleep_s=1)
    h = await start(tmp_path, sshd)
    try:
        await h.send(notification(ALERT))
        [(a_start, a_end)] = sshd.spans("capture")
        [(b_start, b_end)] = sshd.spans("lockdown")
        assert a_start < b_end, "the parts ran one after the other"
        assert b_start < a_end, "the parts ran one after the other"
        assert sshd.calls("capture") == [["web1"]]
        assert h.events().count("step_executing") == 1
        assert [(p["part"], p["action"], p["state"]) for p in parts(h)] == [
            (0, "ssh", "succeeded"),
            (1, "ssh", "succeeded"),
        ]
        [step] = storeview.steps(h.db, 1)
        assert (step["action"], step["state"]) == ("all", "succeeded")
        assert [p["commands"] for p in step["command"]["parts"]] == [
            [["capture", "web1"]],
            [["lockdown", "now"]],
        ]
        assert h.incidents()[0]["state"] == "verifying"
    finally:
        await h.close()


async def test_one_failing_part_fails_the_step_after_the_other_finishes(
    tmp_path: Path, sshd: SshServer
) -> None:
    """`lockdown` exits 1 at once while `capture` takes 1s: capture still runs to its end,
    then the step fails naming the failed part, each part's outcome audited, and the
    incident goes to humans."""
    sshd.install_recorder("capture", sleep_s=1)
    sshd.install_recorder("lockdown", exit_code=1)
    h = await start(tmp_path, sshd)
    try:
        await h.send(notification(ALERT))
        assert len(sshd.spans("capture")) == 1  # finished, not cut short
        assert [(p["part"], p["state"], p.get("exit_status")) for p in parts(h)] == [
            (0, "succeeded", 0),
            (1, "failed", 1),
        ]
        audit = dict(h.audit())
        assert audit["step_failed"]["error"] == "part 2 (ssh) failed: `lockdown now` exited 1"
        assert audit["exhausted"]["reason"] == (
            "step 1 failed: part 2 (ssh) failed: `lockdown now` exited 1"
        )
        [step] = storeview.steps(h.db, 1)
        assert step["state"] == "failed"
        assert "[part 1 (ssh): succeeded]" in step["output"]
        assert "[part 2 (ssh): failed]" in step["output"]
        assert h.incidents()[0]["state"] == "escalating"
    finally:
        await h.close()


async def test_one_approval_lists_both_commands_and_nothing_runs_before_it(
    tmp_path: Path, sshd: SshServer
) -> None:
    """`approval: required` on the all: step: one request whose command shows both parts'
    commands (what Slack, email and `show` render); no part runs until it is approved,
    then both run."""
    sshd.install_recorder("capture")
    sshd.install_recorder("lockdown")
    rule = RULE.replace("      - verify: 5m\n", "      - verify: 5m\n        approval: required\n")
    h = await start(tmp_path, sshd, rule, policies=APPROVERS)
    try:
        await h.send(notification(ALERT))
        await h.advance(60)
        assert h.incidents()[0]["state"] == "awaiting_approval"
        assert sshd.calls("capture") == []
        assert sshd.calls("lockdown") == []
        async with h.store.read() as tx:
            [approval] = await tx.approvals_of(1)
        lines = command_lines(approval.command)
        assert "part 1 of 2, run together: ssh" in lines
        assert "    $ capture web1" in lines
        assert "part 2 of 2, run together: ssh" in lines
        assert "    $ lockdown now" in lines
        assert h.events().count("approval_requested") == 1
        async with h.store.write() as tx:
            decided = await approvals.decide_incident(
                h.ctx, tx, 1, "approve", Voter.person("alice", "api"), None, h.clock.now()
            )
        assert decided.result is Result.APPROVED
        await h.advance(1)
        assert sshd.calls("capture") == [["web1"]]
        assert sshd.calls("lockdown") == [["now"]]
    finally:
        await h.close()


async def test_parts_under_different_approval_policies_are_refused_at_run_time(
    tmp_path: Path, sshd: SshServer
) -> None:
    """An always_for entry puts one part under `security` while the step asks `default`:
    no single approval can cover both, so nothing runs and the incident goes to humans."""
    sshd.install_recorder("capture")
    sshd.install_recorder("lockdown")
    rule = RULE.replace("      - verify: 5m\n", "      - verify: 5m\n        approval: required\n")
    policies = (
        APPROVERS
        + "  security: {approvers: [bob]}\n"
        + "  always_for: [{action: 'ssh:lockdown', policy: security}]\n"
    )
    h = await start(tmp_path, sshd, rule, policies=policies)
    try:
        await h.send(notification(ALERT))
        assert sshd.calls("capture") == []
        assert sshd.calls("lockdown") == []
        refused = dict(h.audit())["step_refused"]["reason"]
        assert refused.startswith(
            "the parts of this all: step need different approval policies "
            "(part 1: default, part 2: security)"
        )
        assert h.incidents()[0]["state"] == "escalating"
    finally:
        await h.close()


async def test_one_part_needing_approval_makes_the_whole_step_ask_once(
    tmp_path: Path, sshd: SshServer
) -> None:
    """Only the second part says `approval: required`: the step asks once, for both
    parts' commands, and neither part runs before the approval."""
    sshd.install_recorder("capture")
    sshd.install_recorder("lockdown")
    rule = RULE.replace("argv: [lockdown, now]}}", "argv: [lockdown, now]}, approval: required}")
    h = await start(tmp_path, sshd, rule, policies=APPROVERS)
    try:
        await h.send(notification(ALERT))
        assert h.events().count("approval_requested") == 1
        assert h.incidents()[0]["state"] == "awaiting_approval"
        assert sshd.calls("capture") == []
        assert sshd.calls("lockdown") == []
        async with h.store.read() as tx:
            [approval] = await tx.approvals_of(1)
        assert [p["commands"] for p in approval.command["parts"]] == [
            [["capture", "web1"]],
            [["lockdown", "now"]],
        ]
    finally:
        await h.close()


async def test_a_dry_run_all_step_sends_no_part_and_audits_each(
    tmp_path: Path, sshd: SshServer
) -> None:
    """`dry_run: true`: every part is dry (nothing reaches the host), each part audited
    `dry_run`, and the step's `would_run` lists both parts."""
    sshd.install_recorder("capture")
    sshd.install_recorder("lockdown")
    h = await start(tmp_path, sshd, RULE + "    dry_run: true\n")
    try:
        await h.send(notification(ALERT))
        assert sshd.calls("capture") == []
        assert sshd.calls("lockdown") == []
        assert [p["state"] for p in parts(h)] == ["dry_run", "dry_run"]
        would = dict(h.audit())["step_dry_run"]["would_run"]
        assert [p["commands"] for p in would["parts"]] == [
            [["capture", "web1"]],
            [["lockdown", "now"]],
        ]
    finally:
        await h.close()


async def test_a_part_whose_target_left_the_inventory_refuses_the_step(
    tmp_path: Path, sshd: SshServer
) -> None:
    """Awaiting approval, then a reload drops the target from the inventory: the ssh
    part cannot be planned, so the step (and its notify part) is refused, nothing runs."""
    sshd.install_recorder("capture")
    rule = (
        RULE.replace("      - verify: 5m\n", "      - verify: 5m\n        approval: required\n")
        .replace("{{ labels.instance | host }}", "web2")
        .replace(
            "{action: ssh, params: {argv: [lockdown, now]}}",
            "{action: notify, params: {message: hi}}",
        )
    )
    web2 = {"web2": {"address": "127.0.0.1", "port": sshd.port}}
    h = await start(tmp_path, sshd, rule, policies=APPROVERS, hosts=web2)
    try:
        await h.send(notification(ALERT))
        assert h.incidents()[0]["state"] == "awaiting_approval"
        h.ctx.swap_config(
            load_config(write_config(tmp_path / "reloaded", rule, sshd=sshd, policies=APPROVERS))
        )
        async with h.store.write() as tx:
            await approvals.decide_incident(
                h.ctx, tx, 1, "approve", Voter.person("alice", "api"), None, h.clock.now()
            )
        await h.advance(1)
        refused = dict(h.audit())["step_refused"]["reason"]
        assert refused == "target 'web2' is no longer in the inventory"
        assert sshd.calls("capture") == []
        assert "step_dispatching" not in h.events()
    finally:
        await h.close()


async def test_no_part_sends_after_the_alert_resolved_while_another_part_connected(
    tmp_path: Path, sshd: SshServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `notify` part is ready at once, the `ssh` part is still connecting (a slow host)
    when the alert resolves: the step's one "still ours?" check waits for every part, so
    it comes after the resolve and neither part sends (as a single step's would not)."""
    sshd.install_recorder("lockdown")
    rule = RULE.replace(
        '{action: ssh, params: {argv: [capture, "{{ labels.instance }}"]}}',
        '{action: notify, params: {message: "containing {{ labels.instance }}"}}',
    )
    gate = asyncio.Event()
    real = SshPool.connection

    async def slow(self: SshPool, host: Any) -> Any:
        await gate.wait()  # a connect taking connect_timeout x connect_attempts
        return await real(self, host)

    monkeypatch.setattr(SshPool, "connection", slow)
    h = await start(tmp_path, sshd, rule)
    try:
        run = asyncio.create_task(h.send(notification(ALERT)))
        for _ in range(500):
            if "step_dispatching" in h.events():
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # the notify part is at the barrier by now
        assert "step_executing" not in h.events()
        await h.send(notification(ALERT, "resolved"))
        gate.set()
        await run
        await h.engine.tick()
        assert sshd.calls("lockdown") == []
        assert "step_not_sent" in h.events()
        assert "step_executing" not in h.events()
        assert [e for e in h.events() if e == "step_part"] == []
    finally:
        await h.close()
