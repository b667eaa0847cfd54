"""Approvals on a fake clock: asked in Slack, decided once, two-person rule, timeouts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from support.daemon import write_config
from support.engine_harness import EngineHarness
from support.fakeslack import FakeSlack
from support.smtpsink import SmtpSink
from support.sshd import SshServer

from remediator.config import load_config
from remediator.engine import approvals
from remediator.engine.decisions import Outcome, Result, Voter

RULE = """\
rules:
  - name: reboot-node
    match: [alertname = NodeStuck]
    target: web1
    steps:
      - action: ssh
        params: {argv: [probe-stub, reboot]}
        approval: required
    escalate: critical
"""
ALERT = {"alertname": "NodeStuck"}


def policy(required: int = 1, on_timeout: str = "escalate") -> str:
    return (
        "approvals:\n  default:\n    approvers: [U024BE7LH, U0G9QF9C6, alice]\n"
        f"    channel: '#ops-approvals'\n    timeout: 15m\n    on_timeout: {on_timeout}\n"
        f"    required: {required}\n"
    )


Start = Callable[..., Awaitable[EngineHarness]]


@pytest.fixture
async def start(
    tmp_path: Path, sshd: SshServer, slack: FakeSlack, store_url: str
) -> AsyncIterator[Start]:
    sshd.install_recorder("probe-stub")
    made: list[EngineHarness] = []

    async def make(policies: str, **kw: str) -> EngineHarness:
        h = await EngineHarness.start(
            tmp_path,
            RULE,
            sshd,
            policies=policies,
            slack_url=slack.api_url,
            store_url=store_url,
            **kw,
        )
        made.append(h)
        return h

    yield make
    for h in made:
        await h.close()


async def vote(
    h: EngineHarness, who: str | Voter, decision: str = "approve", approval: int = 1
) -> Outcome:
    voter = who if isinstance(who, Voter) else Voter.person(who, "slack")
    async with h.store.write() as tx:
        out = await approvals.decide(h.ctx, tx, approval, voter, decision, None, h.clock.now())
    await h.engine.tick()
    await h.deliver()
    return out


async def test_step_waits_for_approval_then_runs_once(
    start: Start, sshd: SshServer, slack: FakeSlack
) -> None:
    """Asked in #ops-approvals with Approve/Deny (confirm dialogs); approved: runs once."""
    h = await start(policy())
    await h.fire(ALERT)
    await h.deliver()
    assert sshd.calls("probe-stub") == []
    assert h.incidents()[0]["state"] == "awaiting_approval"
    [ask] = [b for b in slack.of("chat.postMessage") if b["channel"] == "#ops-approvals"]
    buttons = ask["blocks"][-1]["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [("approve", "1"), ("deny", "1")]
    assert all("confirm" in b for b in buttons)
    assert "$ probe-stub reboot" in ask["blocks"][1]["text"]["text"]  # the whole command

    refused = await vote(h, "mallory")
    assert (refused.result, sshd.calls("probe-stub")) == (Result.NOT_AN_APPROVER, [])
    assert dict(h.audit())["approval_refused"]["by"] == "mallory"

    approved = await vote(h, "U024BE7LH")
    assert (approved.result, approved.changed) == (Result.APPROVED, True)
    assert sshd.calls("probe-stub") == [["reboot"]]
    again = await vote(h, "U0G9QF9C6")
    assert (again.result, again.message) == (
        Result.ALREADY_DECIDED,
        "already approved by U024BE7LH",
    )
    await h.advance(3600)
    assert sshd.calls("probe-stub") == [["reboot"]]
    # The approval message lost its buttons and says who approved.
    final = [u for u in slack.of("chat.update") if "approved" in u["text"]][-1]
    assert all(b["type"] != "actions" for b in final["blocks"])


async def test_two_person_rule_needs_two_different_approvers(start: Start, sshd: SshServer) -> None:
    """`required: 2`: one approver twice is not two; a second person runs it."""
    h = await start(policy(required=2))
    await h.fire(ALERT)
    first = await vote(h, "U024BE7LH")
    assert (first.result, first.message) == (
        Result.VOTE_RECORDED,
        "approval recorded; 1 more needed",
    )
    twice = await vote(h, "U024BE7LH")
    assert (twice.result, sshd.calls("probe-stub")) == (Result.ALREADY_VOTED, [])
    await vote(h, "alice")
    assert sshd.calls("probe-stub") == [["reboot"]]
    assert dict(h.audit())["approved"]["approvers"] == ["U024BE7LH", "alice"]


async def test_the_shared_admin_token_is_one_person_whatever_name_it_gives(
    start: Start, sshd: SshServer
) -> None:
    """`required: 2`: two shared-token votes naming two approvers are one vote; a second
    person (a Slack click) makes two. The name given is kept as `as`, checked, not counted."""
    h = await start(policy(required=2))
    await h.fire(ALERT)
    first = await vote(h, Voter.shared_token("alice"))
    assert first.result is Result.VOTE_RECORDED
    second = await vote(h, Voter.shared_token("U0G9QF9C6"))
    assert (second.result, sshd.calls("probe-stub")) == (Result.ALREADY_VOTED, [])
    assert second.message.startswith("admin-token has already voted on this approval")
    assert "server.admin_tokens" in second.message
    assert dict(h.audit())["approval_vote"] == {
        "approval": 1,
        "step": 0,
        "by": "admin-token",
        "via": "api",
        "as": "alice",
        "approvals": 1,
        "required": 2,
    }
    refused = await vote(h, Voter.shared_token("mallory"))
    assert refused.result is Result.NOT_AN_APPROVER  # the name given is still checked
    approved = await vote(h, "U024BE7LH")
    assert (approved.result, approved.message) == (
        Result.APPROVED,
        "approved by U024BE7LH, admin-token",
    )
    assert sshd.calls("probe-stub") == [["reboot"]]
    assert dict(h.audit())["approved"]["approvers"] == ["U024BE7LH", "admin-token"]


async def test_a_slack_user_and_their_personal_token_are_one_person(
    start: Start, sshd: SshServer
) -> None:
    """A token named after a Slack user id votes as that user: their click and their API
    call on one approval are one vote, not the two `required: 2` asks for."""
    h = await start(policy(required=2))
    await h.fire(ALERT)
    assert (await vote(h, "U024BE7LH")).result is Result.VOTE_RECORDED
    again = await vote(h, Voter.person("U024BE7LH", "api"))
    assert (again.result, again.message) == (
        Result.ALREADY_VOTED,
        "U024BE7LH has already voted on this approval",
    )
    assert sshd.calls("probe-stub") == []
    done = await vote(h, Voter.person("alice", "api"))
    assert (done.result, sshd.calls("probe-stub")) == (Result.APPROVED, [["reboot"]])


async def test_deny_escalates_and_runs_nothing(start: Start, sshd: SshServer) -> None:
    """A denial is final: the chain pages, the step never runs."""
    h = await start(policy())
    await h.fire(ALERT)
    denied = await vote(h, "alice", "deny")
    assert (denied.result, denied.state) == (Result.DENIED, "escalating")
    await h.advance(3600)
    assert sshd.calls("probe-stub") == []
    assert h.incidents()[0]["state"] == "escalating"
    assert "denied by alice" in dict(h.audit())["exhausted"]["reason"]


async def test_timeout_with_on_timeout_escalate_pages_the_chain(
    start: Start, sshd: SshServer, slack: FakeSlack
) -> None:
    """Nobody decides in 15 min: the approval expires and the chain pages."""
    h = await start(policy(on_timeout="escalate"))
    await h.fire(ALERT)
    await h.advance(899)
    assert "approval_expired" not in h.events()
    await h.advance(1)
    await h.deliver()
    events = h.events()
    assert events.index("approval_expired") < events.index("escalation_started")
    assert [b["channel"] for b in slack.of("chat.postMessage")].count("#ops") == 1
    late = await vote(h, "alice")
    assert (late.result, sshd.calls("probe-stub")) == (Result.ALREADY_DECIDED, [])


async def test_timeout_with_on_timeout_deny_records_the_denial(
    start: Start, sshd: SshServer
) -> None:
    """on_timeout: deny: recorded as denied by the timeout; nothing runs."""
    h = await start(policy(on_timeout="deny"))
    await h.fire(ALERT)
    await h.advance(900)
    denied = dict(h.audit())["approval_denied"]
    assert denied["by"] == "timeout"
    assert "on_timeout: deny" in denied["reason"]
    assert sshd.calls("probe-stub") == []


async def test_resolve_cancels_a_pending_approval(start: Start, sshd: SshServer) -> None:
    """The alert resolved while waiting: the approval is cancelled; a late approve does nothing."""
    h = await start(policy())
    await h.fire(ALERT)
    await h.resolve(ALERT)
    late = await vote(h, "alice")
    assert late.result is Result.ALREADY_DECIDED
    assert sshd.calls("probe-stub") == []
    assert h.incidents()[0]["state"] == "resolved"


async def test_step_log_is_threaded_under_the_incident_message(
    start: Start, slack: FakeSlack
) -> None:
    """Each step's progress is a reply in the incident message's thread, not a new post."""
    h = await start(policy())
    await h.fire(ALERT)
    await h.deliver()
    await vote(h, "alice")
    posts = [c for c in slack.calls if c.method == "chat.postMessage"]
    [parent] = [c for c in posts if c.body["channel"] == "#ops-alerts"]
    replies = [c.body for c in posts if "thread_ts" in c.body]
    assert [r["text"] for r in replies] == [
        "step 1 `ssh`: running",
        "step 1 `ssh`: succeeded (exit 0)",
    ]
    assert all(
        (r["channel"], r["thread_ts"]) == (parent.answer["channel"], parent.answer["ts"])
        for r in replies
    )
    assert posts.index(parent) < min(posts.index(c) for c in posts if "thread_ts" in c.body)
    assert slack.of("chat.update")[-1]["text"].endswith(": verifying")  # updated in place


async def test_approval_request_falls_back_to_email_when_slack_refuses(
    start: Start, slack: FakeSlack, smtp: SmtpSink, sshd: SshServer
) -> None:
    """Slack rejects the approval message: fallback_to gets an email saying how to decide."""
    slack.failing("error", "channel_not_found")
    h = await start(policy(), email=smtp.config())
    await h.fire(ALERT)
    await h.deliver()
    mails = smtp.to("fallback-oncall@example.com")
    [ask] = [m for m in mails if "needs approval" in m.get_body(("plain",)).get_content()]
    body = ask.get_body(("plain",)).get_content()
    assert "channel_not_found" in body
    assert "remediator approve|deny 1" in body
    assert "probe-stub reboot" in body
    approved = await vote(h, "alice")
    assert approved.changed
    assert sshd.calls("probe-stub") == [["reboot"]]


async def test_a_step_changed_by_a_reload_after_approval_is_not_run(
    start: Start, sshd: SshServer, tmp_path: Path
) -> None:
    """Approvers saw `probe-stub reboot`; a reload changed it: nothing runs, humans are paged."""
    h = await start(policy())
    await h.fire(ALERT)
    changed = RULE.replace("[probe-stub, reboot]", "[probe-stub, poweroff]")
    reloaded = load_config(
        write_config(tmp_path / "reloaded", changed, sshd=sshd, policies=policy())
    )
    h.ctx.swap_config(reloaded)
    approved = await vote(h, "alice")
    assert approved.changed
    assert sshd.calls("probe-stub") == []
    refused = dict(h.audit())["step_refused"]
    assert "changed after it was approved" in refused["reason"]
    assert h.incidents()[0]["state"] == "escalating"


async def test_always_for_applies_to_the_rendered_command(
    tmp_path: Path, sshd: SshServer, slack: FakeSlack, store_url: str
) -> None:
    """`ssh:reboot` catches `[probe-stub, "{{ labels.verb }}"]` with verb=reboot (the rule's
    text holds no `reboot`), while verb=status runs without asking."""
    sshd.install_recorder("probe-stub")
    rule = RULE.replace("[probe-stub, reboot]", '[probe-stub, "{{ labels.verb }}"]').replace(
        "        approval: required\n", ""
    )
    always = policy() + '  always_for: ["ssh:reboot"]\n'
    h = await EngineHarness.start(
        tmp_path, rule, sshd, policies=always, slack_url=slack.api_url, store_url=store_url
    )
    try:
        await h.fire({**ALERT, "verb": "reboot"})
        assert h.incidents()[0]["state"] == "awaiting_approval"
        assert sshd.calls("probe-stub") == []
        await h.resolve({**ALERT, "verb": "reboot"})
        await h.fire({**ALERT, "verb": "status"})
        assert sshd.calls("probe-stub") == [["status"]]
        assert "approval_requested" not in h.events(2)
    finally:
        await h.close()


async def test_an_alertname_with_a_line_feed_still_reaches_the_approvers_by_email(
    tmp_path: Path, sshd: SshServer, slack: FakeSlack, smtp: SmtpSink, store_url: str
) -> None:
    """The label that crashed the outbox (an alertname ending in a line feed): the fallback
    email is built and delivered, its Subject on one line, the whole command in its body."""
    sshd.install_recorder("probe-stub")
    slack.failing("error", "channel_not_found")
    rule = RULE.replace("match: [alertname = NodeStuck]", "match: [severity = page]")
    h = await EngineHarness.start(
        tmp_path,
        rule,
        sshd,
        policies=policy(),
        slack_url=slack.api_url,
        email=smtp.config(),
        store_url=store_url,
    )
    try:
        await h.fire({"alertname": "NodeStuck\n", "severity": "page"})
        await h.deliver()
        [ask] = smtp.to("fallback-oncall@example.com")[:1]
        assert ask["Subject"].endswith("(NodeStuck\\n)")
        body = ask.get_body(("plain",)).get_content()
        assert "$ probe-stub reboot" in body
        assert "on web1 (127.0.0.1:" in body
    finally:
        await h.close()


SECURITY = (
    "  security:\n    approvers: [U05TD4V1S, U05SL8K2Q]\n    channel: '#security-approvals'\n"
    "    timeout: 5m\n    on_timeout: deny\n    required: 2\n"
)


async def test_a_step_under_a_named_policy_asks_its_approvers_in_its_channel(
    tmp_path: Path, sshd: SshServer, slack: FakeSlack, store_url: str
) -> None:
    """`approval: security`: asked in the policy's channel, naming the policy; a default
    approver is refused; two of security's approvers (its `required: 2`) run the step."""
    sshd.install_recorder("probe-stub")
    rule = RULE.replace("approval: required", "approval: security")
    h = await EngineHarness.start(
        tmp_path,
        rule,
        sshd,
        policies=policy() + SECURITY,
        slack_url=slack.api_url,
        store_url=store_url,
    )
    try:
        await h.fire(ALERT)
        await h.deliver()
        [ask] = [b for b in slack.of("chat.postMessage") if "Approval needed" in b["text"]]
        assert ask["channel"] == "#security-approvals"
        assert "policy `security`" in ask["blocks"][0]["text"]["text"]
        requested = dict(h.audit())["approval_requested"]
        assert (requested["policy"], requested["required"]) == ("security", 2)
        assert requested["approvers"] == ["U05TD4V1S", "U05SL8K2Q"]

        refused = await vote(h, "alice")
        assert (refused.result, refused.message) == (
            Result.NOT_AN_APPROVER,
            "alice may not approve: not in the approvers of policy security",
        )
        assert dict(h.audit())["approval_refused"]["policy"] == "security"
        first = await vote(h, "U05TD4V1S")
        assert (first.result, sshd.calls("probe-stub")) == (Result.VOTE_RECORDED, [])
        second = await vote(h, "U05SL8K2Q")
        assert second.result is Result.APPROVED
        assert sshd.calls("probe-stub") == [["reboot"]]
    finally:
        await h.close()


async def test_a_named_policy_without_a_channel_asks_in_defaults(
    tmp_path: Path, sshd: SshServer, slack: FakeSlack, store_url: str
) -> None:
    """A policy that names no `channel:` asks where `default` asks (its approvals
    channel), not in the incidents' `slack.channel`."""
    rule = RULE.replace("approval: required", "approval: security")
    no_channel = SECURITY.replace("    channel: '#security-approvals'\n", "")
    h = await EngineHarness.start(
        tmp_path,
        rule,
        sshd,
        policies=policy() + no_channel,
        slack_url=slack.api_url,
        store_url=store_url,
    )
    try:
        await h.fire(ALERT)
        await h.deliver()
        [ask] = [b for b in slack.of("chat.postMessage") if "Approval needed" in b["text"]]
        assert ask["channel"] == "#ops-approvals"
    finally:
        await h.close()


async def test_a_step_under_a_named_policy_times_out_per_that_policy(
    tmp_path: Path, sshd: SshServer, slack: FakeSlack, store_url: str
) -> None:
    """security's `timeout: 5m` and `on_timeout: deny` apply, not default's 15m escalate."""
    sshd.install_recorder("probe-stub")
    rule = RULE.replace("approval: required", "approval: security")
    h = await EngineHarness.start(
        tmp_path,
        rule,
        sshd,
        policies=policy() + SECURITY,
        slack_url=slack.api_url,
        store_url=store_url,
    )
    try:
        await h.fire(ALERT)
        await h.advance(299)
        assert "approval_denied" not in h.events()
        await h.advance(1)
        denied = dict(h.audit())["approval_denied"]
        assert denied["by"] == "timeout"
        assert "nobody decided within 5m (on_timeout: deny)" in denied["reason"]
        assert sshd.calls("probe-stub") == []
    finally:
        await h.close()


async def test_an_always_for_entry_naming_a_policy_asks_that_policy(
    tmp_path: Path, sshd: SshServer, slack: FakeSlack, store_url: str
) -> None:
    """`always_for: [{action: "ssh:reboot", policy: security}]` asks security of a step
    that says `approval: required` (default) or nothing; a default approver is refused."""
    sshd.install_recorder("probe-stub")
    always = policy() + SECURITY + '  always_for: [{action: "ssh:reboot", policy: security}]\n'
    h = await EngineHarness.start(
        tmp_path, RULE, sshd, policies=always, slack_url=slack.api_url, store_url=store_url
    )
    try:
        await h.fire(ALERT)
        assert dict(h.audit())["approval_requested"]["policy"] == "security"
        refused = await vote(h, "U024BE7LH")
        assert (refused.result, sshd.calls("probe-stub")) == (Result.NOT_AN_APPROVER, [])
    finally:
        await h.close()


async def test_the_fallback_email_names_the_policy_whose_approvers_decide(
    tmp_path: Path, sshd: SshServer, slack: FakeSlack, smtp: SmtpSink, store_url: str
) -> None:
    """Slack refuses a request under `security`: the fallback email says its approvers decide."""
    sshd.install_recorder("probe-stub")
    slack.failing("error", "channel_not_found")
    rule = RULE.replace("approval: required", "approval: security")
    h = await EngineHarness.start(
        tmp_path,
        rule,
        sshd,
        policies=policy() + SECURITY,
        slack_url=slack.api_url,
        email=smtp.config(),
        store_url=store_url,
    )
    try:
        await h.fire(ALERT)
        await h.deliver()
        mails = smtp.to("fallback-oncall@example.com")
        [ask] = [m for m in mails if "needs approval" in m.get_body(("plain",)).get_content()]
        body = " ".join(ask.get_body(("plain",)).get_content().split())
        assert "by the approvers of policy security" in body
    finally:
        await h.close()


async def test_a_step_whose_policy_changed_by_a_reload_after_approval_is_not_run(
    start: Start, sshd: SshServer, tmp_path: Path
) -> None:
    """Default's approvers approved; a reload put the step under `security`: the approval
    no longer covers it, nothing runs, humans are paged."""
    h = await start(policy())
    await h.fire(ALERT)
    moved = RULE.replace("approval: required", "approval: security")
    reloaded = load_config(
        write_config(tmp_path / "reloaded", moved, sshd=sshd, policies=policy() + SECURITY)
    )
    h.ctx.swap_config(reloaded)
    approved = await vote(h, "alice")
    assert approved.changed
    assert sshd.calls("probe-stub") == []
    assert "changed after it was approved" in dict(h.audit())["step_refused"]["reason"]
