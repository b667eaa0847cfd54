"""Approval requests show the whole command; no label can break or fool a message."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from rich.console import Console
from support.messages import HOST, block_plan, buttons, check_every_builder, texts, views

from remediator.actions.approval import approval_command
from remediator.actions.base import Plan
from remediator.actions.http import HttpAction
from remediator.actions.params import HttpParams
from remediator.apimodels import ApprovalOut, IncidentDetail, IncidentSummary
from remediator.cliviews import incident_view
from remediator.notify.commandtext import command_lines
from remediator.notify.email import build_message, page_email
from remediator.notify.slackmsg import approval_message, incident_message, page_message
from remediator.store.records import Escalation, EscalationState


def test_approval_request_shows_every_line_of_the_nft_script() -> None:
    """Slack, the fallback email and `remediator show` carry the host and the element lists."""
    plan = block_plan("203.0.113.7", "198.51.100.0/24", "2001:db8::1")
    _, approval = views({"alertname": "FailedLoginsHigh"}, plan.describe())
    slack = "\n".join(texts(approval_message(approval)[1]))
    _, mail, html = page_email(approval.incident, "needs approval", "approval", plan.describe())
    detail = IncidentDetail(
        **IncidentSummary.of(approval.incident.incident).model_dump(),
        links=[],
        steps=[],
        approvals=[ApprovalOut.of(approval.approval)],
        escalation=None,
        audit=[],
    )
    console = Console(record=True, width=300)
    console.print(incident_view(detail))
    shown = console.export_text()
    expected = [
        "on api1 (10.0.3.11:2222):",
        "$ nft -f -",
        "add element inet remediator blocked_v4 { 203.0.113.7 timeout 3600s, "
        "198.51.100.0/24 timeout 3600s }",
        "add element inet remediator blocked_v6 { 2001:db8::1 timeout 3600s }",
        "flush chain inet remediator block_ips",
    ]
    for line in expected:
        assert line in slack
        assert line in mail
        assert line in html
        assert line in shown


def test_http_request_shows_method_url_headers_by_name_and_body() -> None:
    """Method, URL, body with the label's value; secret headers named, their values never."""
    params = HttpParams.model_validate(
        {
            "url": "http://{{ target.address }}:8545/admin/circuit-breaker/open",
            "headers": {"Content-Type": "application/json", "Authorization": "Bearer lit3ral"},
            "headers_from_env": {"X-Api-Key": "API_TOKEN"},
            "json": {"reason": "{{ labels.reason }}", "ttl": 600},
        }
    )
    action = HttpAction(environ={"API_TOKEN": "s3cr3t-value"})
    context = {"labels": {"reason": "error rate 40%"}, "target": {"address": "10.0.3.11"}}
    lines = command_lines(action.plan(params, context, HOST).describe())
    assert lines[0] == "POST http://10.0.3.11:8545/admin/circuit-breaker/open"
    assert "header Content-Type: application/json" in lines
    assert "header Authorization: (secret, not shown)" in lines
    assert "header X-Api-Key: (secret from $API_TOKEN, not shown)" in lines
    start = lines.index("body (JSON):") + 1
    body = lines[start : start + 4]
    assert body == ["    {", '      "reason": "error rate 40%",', '      "ttl": 600', "    }"]
    assert lines[-1] == "timeout: 10s"
    joined = "\n".join(lines)
    assert "lit3ral" not in joined
    assert "s3cr3t-value" not in joined


def test_a_command_too_long_for_slack_cannot_be_approved_there() -> None:
    """1,000 IPv6 networks do not fit one message: Slack says so, shows Deny only and names
    the CLI; every section stays under Slack's limits."""
    many = [f"2001:db8:{n:x}::/64" for n in range(1000)]
    _, approval = views({"alertname": "FailedLoginsHigh"}, block_plan(*many).describe())
    _, blocks = approval_message(approval)
    assert buttons(blocks) == ["deny"]
    assert any("`remediator show 12`" in t for t in texts(blocks))
    assert len(blocks) <= 50
    assert all(len(t) <= 3000 for t in texts(blocks))
    few = block_plan(*many[:50]).describe()
    assert buttons(approval_message(views({}, few)[1])[1]) == ["approve", "deny"]


def test_long_lines_are_wrapped_between_addresses_not_inside_one() -> None:
    """A long element list is cut between its items: every address is shown whole."""
    many = [f"203.0.{n // 256}.{n % 256}" for n in range(300)]
    _, approval = views({}, block_plan(*many).describe())
    slack = "\n".join(texts(approval_message(approval)[1]))
    for address in many:
        assert re.search(rf"[ {{]{re.escape(address)} timeout 3600s[,\n ]", slack), address


HOSTILE = [
    "FailedLoginsHigh\n",
    "a\r\nBcc: victim@example.com",
    "nul\x00byte",
    "`ends the span` *bold* <!channel>",
    "```triple```",
    "x" * 100_000,
    "😀 \U0001f9e8 non-BMP",
    "\u202erevolve",
    "\x1b[31mred\u2028line\x85",
    "lone \ud800 surrogate",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_labels_never_stop_a_message(value: str) -> None:
    """Line breaks, NUL, backticks, 100k characters, emoji, bidi overrides, surrogates: every
    message is built, mail headers stay one line, and no label leaves its code span."""
    labels = {"alertname": value, value[:50] or "k": value, "source_ip": "203.0.113.7"}
    # As stored: a Plan refuses NUL in an argument, an older row may still hold one.
    command = {**Plan("ssh", HOST).describe(), "commands": [["probe-stub", value]]}
    check_every_builder(labels, command, summary=value)


def test_backticks_in_labels_are_shown_as_a_look_alike() -> None:
    """A backtick in a value is shown as U+02CB inside its own span; mentions stay escaped."""
    view, _ = views({"job": "`rm -rf` <!channel>"}, {})
    labels = next(t for t in texts(incident_message(view)[1]) if t.startswith("*Labels*"))
    assert "`job` = `\u02cbrm -rf\u02cb &lt;!channel&gt;`" in labels


def test_email_subject_has_line_breaks_escaped() -> None:
    """An alertname ending in a line feed (the crash loop of issue 12) builds a mail whose
    Subject shows `\\n` on one line."""
    view, _ = views({"alertname": "FailedLoginsHigh\n"}, {})
    subject, mail, html = page_email(view, "r", "p")
    assert (
        subject == "[remediator] awaiting_approval: #12 block-sources on api1 (FailedLoginsHigh\\n)"
    )
    msg = build_message("a@example.com", "b@example.com", subject + "\r\nX: y", mail, html, "<m@x>")
    assert msg["Subject"].endswith("(FailedLoginsHigh\\n)\\r\\nX: y")


def test_an_approval_request_names_the_policy_it_is_asked_under() -> None:
    """Slack's request and `remediator show` say which policy's approvers decide; the
    policy is not part of the command shown."""
    plan = block_plan("203.0.113.7")
    command = approval_command(plan.describe(), "security")
    _, approval = views({"alertname": "FailedLoginsHigh"}, command)
    slack = "\n".join(texts(approval_message(approval)[1]))
    assert "for the approvers of policy `security`, exactly this:" in slack
    assert "approval_policy" not in slack
    detail = IncidentDetail(
        **IncidentSummary.of(approval.incident.incident).model_dump(),
        links=[],
        steps=[],
        approvals=[ApprovalOut.of(approval.approval)],
        escalation=None,
        audit=[],
    )
    console = Console(record=True, width=300)
    console.print(incident_view(detail))
    shown = console.export_text()
    assert "┃ POLICY " in shown
    assert re.search(r"│ block_ips +│ security +│ pending", shown), shown
    _, default = views({"alertname": "FailedLoginsHigh"}, plan.describe())
    assert "of policy `default`" in "\n".join(texts(approval_message(default)[1]))


def test_a_page_acknowledged_while_automation_runs_offers_no_second_acknowledge() -> None:
    """`page_at_start`: once someone acknowledged the page while the lockdown still waits
    for approval, the incident's message and later pages say who, with no Acknowledge."""
    view, _ = views({"alertname": "SecurityBreach"}, block_plan("203.0.113.7").describe())
    assert "ack" in buttons(incident_message(view)[1])
    paging = Escalation(
        12, "security", EscalationState.ACKNOWLEDGED, "page_at_start", 1.0, 2.0, "alice"
    )
    acked = replace(view, escalation=paging)
    _, blocks = incident_message(acked)
    assert "ack" not in buttons(blocks)
    assert "acknowledged, stopped by alice" in "\n".join(texts(blocks))
    assert "ack" not in buttons(page_message(acked, "page_at_start", "step 1 of security")[1])
