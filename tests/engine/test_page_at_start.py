"""`page_at_start: true`: the rule's chain pages when the incident opens, while its steps run.

An acknowledgement while automation is still in charge stops the paging only: the step
goes on, a pending approval stays decidable, the incident keeps its state. If automation
then gives up, whoever acknowledged has the incident: no second page. Unacknowledged, the
chain already paging goes on through the hand-over (one chain per incident).
"""

from __future__ import annotations

from pathlib import Path

from support import storeview
from support.engine_harness import EngineHarness, notification

from remediator.engine import approvals
from remediator.engine.decisions import Outcome, Result, Voter

CHAIN = """\
  twostep:
    steps:
      - notify: ['slack:#first']
      - after: 10m
        notify: ['slack:#second']
"""
APPROVERS = "approvals:\n  default: {approvers: [alice], timeout: 15m}\n"
RULE = """\
rules:
  - name: breach
    match: [alertname = Breach]
    steps:
      - action: script
        params: {argv: [/usr/bin/touch, "OUT"], timeout: 10s}
        verify: 5m
    escalate: twostep
    page_at_start: true
"""
ALERT = {"alertname": "Breach"}


def pages(h: EngineHarness) -> list[str]:
    rows = storeview.query(h.db, "SELECT target FROM outbox WHERE kind='slack_post' ORDER BY id")
    return [r["target"] for r in rows]


async def ack(h: EngineHarness, who: str = "alice") -> Outcome:
    async with h.store.write() as tx:
        return await approvals.acknowledge(h.ctx, tx, 1, Voter.person(who, "api"), h.clock.now())


async def start(tmp_path: Path, store_url: str, rules: str, policies: str) -> EngineHarness:
    out = tmp_path / "ran"
    return await EngineHarness.start(
        tmp_path, rules.replace("OUT", str(out)), None, policies=policies, store_url=store_url
    )


async def test_the_chain_pages_at_open_while_the_first_step_runs(
    tmp_path: Path, store_url: str
) -> None:
    """One incident: its step runs and its chain's first page goes out at once, audited as
    started at open; the chain's later step pages on while the step's verify window runs."""
    h = await start(tmp_path, store_url, RULE, CHAIN)
    try:
        await h.send(notification(ALERT))
        assert (tmp_path / "ran").exists()
        assert len(h.incidents()) == 1
        assert h.incidents()[0]["state"] == "verifying"
        assert pages(h) == ["#first"]
        started = dict(h.audit())["escalation_started"]
        assert started["chain"] == "twostep"
        assert started["reason"].startswith("page_at_start")
    finally:
        await h.close()


async def test_an_ack_stops_paging_and_the_step_runs_once_approved(
    tmp_path: Path, store_url: str
) -> None:
    """Acknowledged while the step waits for approval: the chain stops, the approval stays
    pending, the incident stays `awaiting_approval`, and an approve still runs the step."""
    rule = RULE.replace("timeout: 10s}", "timeout: 10s}\n        approval: required")
    h = await start(tmp_path, store_url, rule, CHAIN + APPROVERS)
    try:
        await h.send(notification(ALERT))
        assert h.incidents()[0]["state"] == "awaiting_approval"
        assert pages(h) == ["#first"]
        await h.advance(60)
        outcome = await ack(h)
        assert outcome.result is Result.ACKNOWLEDGED
        assert h.incidents()[0]["state"] == "awaiting_approval"
        assert dict(h.audit())["paging_acknowledged"]["by"] == "alice"
        assert (await ack(h)).result is Result.ALREADY_DECIDED
        await h.advance(600)
        assert pages(h) == ["#first"]  # the chain's 10m page never goes out
        async with h.store.write() as tx:
            decided = await approvals.decide_incident(
                h.ctx, tx, 1, "approve", Voter.person("alice", "api"), None, h.clock.now()
            )
        assert decided.result is Result.APPROVED
        await h.advance(1)
        assert (tmp_path / "ran").exists()
        assert h.incidents()[0]["state"] == "verifying"
    finally:
        await h.close()


async def test_exhausted_after_an_ack_pages_no_one_and_stays_acknowledged(
    tmp_path: Path, store_url: str
) -> None:
    """The step ran, the ack came, the alert still fires after the verify window: the
    hand-over is audited, the incident is `acknowledged` (the acknowledger has it), and
    nobody is paged again."""
    h = await start(tmp_path, store_url, RULE, CHAIN)
    try:
        await h.send(notification(ALERT))
        await h.advance(60)
        assert (await ack(h)).result is Result.ACKNOWLEDGED
        assert h.incidents()[0]["state"] == "verifying"
        await h.advance(300)
        assert h.incidents()[0]["state"] == "acknowledged"
        audit = dict(h.audit())
        assert "exhausted" in audit
        assert audit["handed_to_acknowledger"] == {"by": "alice", "chain": "twostep"}
        await h.advance(900)
        assert pages(h) == ["#first"]
        assert h.events().count("escalation_started") == 1
    finally:
        await h.close()


async def test_exhausted_without_an_ack_the_same_chain_pages_on(
    tmp_path: Path, store_url: str
) -> None:
    """Nobody acknowledged: the hand-over starts no second chain (no second first page);
    the chain started at open pages its next step on its own timing; an ack from then on
    takes the incident over as for any escalated incident."""
    h = await start(tmp_path, store_url, RULE, CHAIN)
    try:
        await h.send(notification(ALERT))
        await h.advance(300)
        assert h.incidents()[0]["state"] == "escalating"
        assert h.events().count("escalation_started") == 1
        assert pages(h) == ["#first"]
        await h.advance(300)
        assert pages(h) == ["#first", "#second"]
        assert (await ack(h)).result is Result.ACKNOWLEDGED
        assert h.incidents()[0]["state"] == "acknowledged"
        assert "acknowledged" in h.events()
        assert "paging_acknowledged" not in h.events()
    finally:
        await h.close()
