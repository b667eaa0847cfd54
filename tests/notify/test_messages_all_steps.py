"""An `all:` step's approval request shows every part's command: Slack, email, `show`."""

from __future__ import annotations

from rich.console import Console
from support.messages import HOST, block_plan, texts, views

from remediator.actions.approval import approval_command
from remediator.actions.base import Plan
from remediator.apimodels import ApprovalOut, IncidentDetail, IncidentSummary
from remediator.cliviews import incident_view
from remediator.notify.commandtext import describe_command
from remediator.notify.email import page_email
from remediator.notify.slackmsg import approval_message

CAPTURE = Plan("ssh", HOST, commands=(("capture-forensics", "--out", "/var/evidence"),))


def together() -> dict[str, object]:
    plan = Plan.together("all", (block_plan("203.0.113.7"), CAPTURE))
    return approval_command(plan.describe(), "security")


def test_slack_asks_once_for_every_part_with_each_command() -> None:
    """The Slack request says how many parts run together and shows each part's
    commands (the nft script line by line too) under a line naming the part."""
    _, approval = views({"alertname": "SecurityBreach"}, together())
    slack = "\n".join(texts(approval_message(approval)[1]))
    assert "(2 parts run together), for the approvers of policy `security`" in slack
    assert "part 1 of 2, run together: block_ips" in slack
    assert "$ nft -f -" in slack
    assert "add element inet remediator blocked_v4 { 203.0.113.7 timeout 3600s }" in slack
    assert "part 2 of 2, run together: ssh" in slack
    assert "$ capture-forensics --out /var/evidence" in slack


def test_email_and_show_list_every_part() -> None:
    """The fallback email and `remediator show` carry each part's command as well."""
    view, approval = views({"alertname": "SecurityBreach"}, together())
    _, mail, html = page_email(view, "breach", "approval", together())
    for text in (mail, html):
        assert "part 1 of 2, run together: block_ips" in text
        assert "capture-forensics --out /var/evidence" in text
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
    assert "part 2 of 2, run together: ssh" in shown
    assert "$ capture-forensics --out /var/evidence" in shown
    assert describe_command(together()).startswith("together: nft -f - on api1 & ")
