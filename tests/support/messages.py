"""Message builders' test helpers: views of a made-up incident, and every builder checked."""

from __future__ import annotations

import re
from email import message_from_bytes
from email.policy import default as email_policy
from typing import Any

from remediator.actions.base import Plan
from remediator.actions.firewall import block_ips_script
from remediator.actions.params import parse_block_ips
from remediator.config.models import Host
from remediator.notify.email import build_message, page_email
from remediator.notify.slackmsg import approval_message, incident_message, page_message
from remediator.notify.views import ApprovalView, IncidentView
from remediator.store.records import (
    Approval,
    ApprovalState,
    Incident,
    State,
    StepRecord,
    StepState,
)

HOST = Host(name="api1", address="10.0.3.11", port=2222, user="ops")
NFT = ("nft", "-f", "-")
# A line of the labels section: `key` = `value`, no backtick or line break inside a span.
LABEL_LINE = re.compile(r"^`[^`\n]*` = `[^`\n]*`$|^… \d+ more labels$")


def block_plan(*ips: str) -> Plan:
    script = block_ips_script(parse_block_ips(list(ips)), 3600)
    return Plan("block_ips", HOST, commands=(NFT,), stdin=(script,))


def views(
    labels: dict[str, str], command: Any, summary: str = "disk full"
) -> tuple[IncidentView, ApprovalView]:
    incident = Incident(
        12, "block-sources", "fp", "t0", "api1", State.AWAITING_APPROVAL, labels,
        {"summary": summary}, 0, 1.0, 2.0, None,
    )  # fmt: skip
    step = StepRecord(1, 12, 0, "ssh", StepState.FAILED, command, 1, 1.0, 1.0, 2.0, 1, "out", "err")
    approval = Approval(
        3, 12, 1, "block_ips", command, ApprovalState.PENDING, 1, 1.0, 600.0, None, None, None
    )
    view = IncidentView(incident, [step], [approval], None, "http://remediator.test/x")
    return view, ApprovalView(approval, [], view)


def texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


def buttons(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def check_every_builder(labels: dict[str, str], command: Any, summary: str = "") -> None:
    """Every builder makes its message; headers on one line; labels inside their spans."""
    view, approval = views(labels, command, summary)
    for text, blocks in (
        incident_message(view),
        page_message(view, summary, "step 1 of critical"),
        approval_message(approval),
    ):
        assert "\n" not in text
        for section in texts(blocks):
            assert len(section) <= 3000
            assert "\x00" not in section
            assert "\u202e" not in section
        for section in texts(blocks):
            if section.startswith("*Labels*\n"):
                assert all(LABEL_LINE.match(line) for line in section.split("\n")[1:]), section
    subject, mail, html = page_email(approval.incident, summary, "approval", command)
    assert "\n" not in subject
    assert "\r" not in subject
    raw = build_message("remediator@example.com", "oncall@example.com", subject, mail, html,
                        "<outbox-1@example.com>").as_bytes()  # fmt: skip
    parsed = message_from_bytes(raw, policy=email_policy)
    assert "\n" not in str(parsed["Subject"])
    assert parsed["Bcc"] is None
    assert parsed.get_body(("plain",)) is not None
