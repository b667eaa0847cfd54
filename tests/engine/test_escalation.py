"""Escalation chains on a fake clock, delivered to a fake Slack API and a real SMTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from support.engine_harness import EngineHarness
from support.fakeslack import FakeSlack
from support.smtpsink import SmtpSink

from remediator.engine import approvals
from remediator.engine.decisions import Result, Voter

PAGE_ONLY = """\
rules:
  - name: page-only
    match: [alertname = BlockProductionStopped]
    escalate: p0
"""
POLICY = """\
  p0:
    steps:
      - notify: ["slack:#ops-team-alerts"]
      - after: 10m
        notify: ["slack:@U024BE7LH", "email:blockchain-oncall@example.com"]
      - after: 30m
        notify: ["email:cto@example.com"]
"""
ALERT = {"alertname": "BlockProductionStopped", "chain": "mainnet"}
Start = Callable[..., Awaitable[EngineHarness]]


@pytest.fixture
async def start(
    tmp_path: Path, slack: FakeSlack, smtp: SmtpSink, store_url: str
) -> AsyncIterator[Start]:
    harnesses: list[EngineHarness] = []

    async def make(rules: str = PAGE_ONLY, policies: str = POLICY, **kw: str) -> EngineHarness:
        h = await EngineHarness.start(
            tmp_path,
            rules,
            None,
            policies=policies,
            slack_url=slack.api_url,
            email=smtp.config(),
            store_url=store_url,
            **kw,
        )
        harnesses.append(h)
        return h

    yield make
    for h in harnesses:
        await h.close()


def pages_to(slack: FakeSlack, channel: str) -> list[str]:
    return [b["text"] for b in slack.of("chat.postMessage") if b["channel"] == channel]


async def run(h: EngineHarness, seconds: float = 0) -> None:
    """Advance the fake clock, run due work, deliver what it queued."""
    await h.advance(seconds)
    await h.deliver()


async def test_chain_pages_in_steps_and_acknowledge_stops_the_rest(
    start: Start, slack: FakeSlack, smtp: SmtpSink
) -> None:
    """Step 1 at once; step 2 after 10 min unacknowledged; an ack stops step 3."""
    h = await start()
    await h.fire(ALERT)
    await h.deliver()
    assert len(pages_to(slack, "#ops-team-alerts")) == 1
    assert h.incidents()[0]["state"] == "escalating"
    await run(h, 599)
    assert pages_to(slack, "U024BE7LH") == []
    assert smtp.to("blockchain-oncall@example.com") == []
    await run(h, 1)
    assert len(pages_to(slack, "U024BE7LH")) == 1
    [mail] = smtp.to("blockchain-oncall@example.com")
    assert "page-only" in mail["Subject"]
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode()
        for p in mail.walk()
        if not p.is_multipart()
    }
    assert "chain=mainnet" in parts["text/plain"]
    assert "http://remediator.test/api/incidents/1" in parts["text/plain"]
    assert "<td>chain</td><td>mainnet</td>" in parts["text/html"]
    async with h.store.write() as tx:
        voter = Voter.person("U024BE7LH", "api")
        outcome = await approvals.acknowledge(h.ctx, tx, 1, voter, h.clock.now())
    assert outcome.result is Result.ACKNOWLEDGED
    await run(h, 3600)
    assert smtp.to("cto@example.com") == []
    assert h.incidents()[0]["state"] == "acknowledged"
    events = h.events()
    assert events.count("escalation_notified") == 2
    assert "escalation_stopped" in events
    # The incident's own message was posted in the main channel, then updated in place.
    [posted] = [b for b in slack.of("chat.postMessage") if b["channel"] == "#ops-alerts"]
    assert "acknowledged" in slack.of("chat.update")[-1]["text"]
    assert posted["blocks"][-1]["elements"][0]["action_id"] == "ack"


async def test_resolve_stops_the_chain_and_updates_the_message(
    start: Start, slack: FakeSlack, smtp: SmtpSink
) -> None:
    """A resolved alert stops paging and its Slack message says so."""
    h = await start()
    await h.fire(ALERT)
    await h.deliver()
    await run(h, 60)
    await h.resolve(ALERT)
    await h.deliver()
    await run(h, 3600)
    assert pages_to(slack, "U024BE7LH") == []
    assert smtp.messages == []
    update = slack.of("chat.update")[-1]
    assert update["text"].endswith(": resolved")
    buttons = [
        e["action_id"] for b in update["blocks"] if b["type"] == "actions" for e in b["elements"]
    ]
    assert buttons == ["link"]  # no Acknowledge any more, still the link to the details


async def test_repeat_runs_the_chain_again_until_acknowledged(
    start: Start, slack: FakeSlack
) -> None:
    """`repeat: 1` pages step 1 again one cycle later (last after + severity ack)."""
    policy = (
        "  p0:\n    steps:\n      - notify: ['slack:#ops-team-alerts']\n"
        "      - after: 10m\n        notify: ['slack:#ops-team-alerts']\n    repeat: 1\n"
        "severities:\n  p0: {ack: 5m}\n"
    )
    h = await start(policies=policy)
    await h.fire(ALERT)
    await run(h)
    await run(h, 600)
    assert len(pages_to(slack, "#ops-team-alerts")) == 2
    await run(h, 299)  # the second cycle starts at 10m + 5m
    assert len(pages_to(slack, "#ops-team-alerts")) == 2
    await run(h, 1)
    assert len(pages_to(slack, "#ops-team-alerts")) == 3
    await run(h, 600)
    assert len(pages_to(slack, "#ops-team-alerts")) == 4
    await run(h, 3600)
    assert len(pages_to(slack, "#ops-team-alerts")) == 4
    assert "escalation_finished" in h.events()


async def test_slack_down_pages_by_email_after_its_retries(
    start: Start, slack: FakeSlack, smtp: SmtpSink
) -> None:
    """Slack answering 500: after `slack_attempts` the page goes to email.fallback_to."""
    slack.failing("status", 500)
    h = await start()
    await h.fire(ALERT)
    await h.deliver()
    assert smtp.to("fallback-oncall@example.com") == []
    await run(h, 1)
    await run(h, 2)
    [mail] = smtp.to("fallback-oncall@example.com")
    assert "Slack failed" in mail.get_body(("plain",)).get_content()
    failed = dict(h.audit())["notification_failed"]
    assert failed["fallback"] == ["fallback-oncall@example.com"]
    assert "HTTP 500" in failed["error"]
    await run(h, 3600)
    assert len(smtp.to("fallback-oncall@example.com")) >= 1


async def test_slack_ok_false_falls_back_at_once(
    start: Start, slack: FakeSlack, smtp: SmtpSink
) -> None:
    """`ok: false` with an error no retry fixes (channel_not_found): email right away."""
    slack.failing("error", "channel_not_found")
    h = await start()
    await h.fire(ALERT)
    await h.deliver()
    assert len(smtp.to("fallback-oncall@example.com")) == 1
    assert "channel_not_found" in dict(h.audit())["notification_failed"]["error"]


async def test_rate_limited_slack_waits_retry_after_then_delivers(
    start: Start, slack: FakeSlack, smtp: SmtpSink
) -> None:
    """429 with Retry-After: 30: not retried before 30 s, delivered after, no email."""
    slack.failing("ratelimited", 30, times=1)
    h = await start()
    await h.fire(ALERT)
    await h.deliver()
    # The first call (the incident's message) was rate limited; the page went out.
    assert [b["channel"] for b in slack.of("chat.postMessage")] == [
        "#ops-alerts",
        "#ops-team-alerts",
    ]
    await run(h, 29)
    assert len(slack.calls) == 2
    await run(h, 1)
    assert len(pages_to(slack, "#ops-alerts")) == 2  # the 429'd call and its retry
    assert smtp.messages == []


@pytest.mark.parametrize("retry_after", ["inf", "1e400"])
async def test_a_retry_after_that_is_not_whole_seconds_waits_a_second(
    start: Start, slack: FakeSlack, smtp: SmtpSink, retry_after: str
) -> None:
    """429 with Retry-After `inf` (or other non-whole seconds) does not hold the page
    back for ever: it is retried as after a 429 without one."""
    slack.failing("ratelimited", retry_after, times=1)
    h = await start()
    await h.fire(ALERT)
    await h.deliver()
    assert len(pages_to(slack, "#ops-alerts")) == 1
    await run(h, 60)
    assert len(pages_to(slack, "#ops-alerts")) == 2  # the 429'd call and its retry
    assert smtp.messages == []


async def test_smtp_down_for_a_while_delivers_once_when_it_returns(
    start: Start, smtp: SmtpSink
) -> None:
    """The mail server is down: the page waits in the outbox and arrives once."""
    smtp.stop()
    policy = "  p0:\n    steps:\n      - notify: ['email:blockchain-oncall@example.com']\n"
    h = await start(policies=policy)
    await h.fire(ALERT)
    await h.deliver()
    await run(h, 1)
    await run(h, 2)
    assert smtp.messages == []
    smtp.start()
    await run(h, 5)
    await run(h, 60)
    await run(h, 600)
    assert len(smtp.to("blockchain-oncall@example.com")) == 1
    assert h.events().count("notified") == 1


async def test_a_stopping_outbox_claims_no_more(start: Start, slack: FakeSlack) -> None:
    """On shutdown the outbox stops between batches instead of draining a long queue
    (with Slack unreachable that took minutes); the rows wait for the next start."""
    h = await start()
    await h.fire(ALERT)
    stopping = asyncio.Event()
    stopping.set()
    assert await h.outbox.deliver_due(stopping) == 0
    assert pages_to(slack, "#ops-alerts") == []
    assert await h.outbox.deliver_due() >= 1
    assert len(pages_to(slack, "#ops-alerts")) == 1


BY_SEVERITY = """\
rules:
  - name: page-by-severity
    match: [alertname = BlockProductionStopped]
    escalate: "{{ labels.severity }}"
    escalate_fallback: p0
"""
LOW = "  low:\n    steps:\n      - notify: ['slack:#ops-low']\n"


async def test_a_templated_escalate_pages_the_chain_the_alert_names(
    start: Start, slack: FakeSlack
) -> None:
    """`escalate: "{{ labels.severity }}"` with severity=low pages the `low` chain (the
    `exhausted` audit row names it, not the template), and no fallback is recorded."""
    h = await start(BY_SEVERITY, POLICY + LOW)
    await h.fire({**ALERT, "severity": "low"})
    await h.deliver()
    assert len(pages_to(slack, "#ops-low")) == 1
    assert pages_to(slack, "#ops-team-alerts") == []
    assert "escalate_fallback" not in h.events()
    assert dict(h.audit())["escalation_started"]["chain"] == "low"
    assert dict(h.audit())["exhausted"]["escalate"] == "low"


@pytest.mark.parametrize(
    ("labels", "why"),
    [
        ({"severity": "escalations"}, "rendered 'escalations', which is not a chain"),
        ({"severity": "low\n"}, "rendered 'low\\\\n', which is not a chain"),
        ({}, "has no attribute 'severity'"),
    ],
)
async def test_a_templated_escalate_that_names_no_chain_pages_the_fallback(
    start: Start, slack: FakeSlack, labels: dict[str, str], why: str
) -> None:
    """A severity that is no chain (a hostile value, a line feed, no label at all): the
    rule's `escalate_fallback` pages, audited as `escalate_fallback` with the reason."""
    h = await start(BY_SEVERITY, POLICY + LOW)
    await h.fire({**ALERT, **labels})
    await h.deliver()
    assert len(pages_to(slack, "#ops-team-alerts")) == 1
    assert pages_to(slack, "#ops-low") == []
    audit = dict(h.audit())
    assert audit["escalate_fallback"]["chain"] == "p0"
    assert why in audit["escalate_fallback"]["reason"]
    assert audit["escalation_started"]["chain"] == "p0"
    assert audit["exhausted"]["escalate"] == "p0"
    events = h.events()
    assert events.index("escalate_fallback") < events.index("escalation_started")
