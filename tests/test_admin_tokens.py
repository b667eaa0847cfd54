"""One admin token is one person: personal tokens (server.admin_tokens) decide as their
NAME, the shared token (server.admin_token_env) is one person whatever `by` says.

Found: with `required: 2`, two approvals over the admin API with the one shared token
and two different `by` names ran a two-person step. These tests run the real daemon.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import storeview
from support.cli import run
from support.daemon import ADMIN_TOKEN, SIGNING_SECRET, Daemon, webhook, write_config
from support.fakeslack import click_body, sign

from remediator.auth import AdminTokens, TokenHolder

RULES = """\
rules:
  - name: page-only
    match: [alertname = Page]
    escalate: critical
  - name: risky
    match: [alertname = Risky]
    steps:
      - action: script
        params: {argv: ["true"]}
        approval: required
    escalate: critical
"""
# Appended to the `critical` chain, then the approval policy: two people must approve.
POLICY = (
    "    acknowledgers: [U024BE7LH, alice]\n"
    "approvals:\n  default:\n    approvers: [U024BE7LH, alice]\n    required: 2\n"
    "    channel: '#ops-approvals'\n    timeout: 15m\n    on_timeout: escalate\n"
)
TOKENS = {
    "ALICE_ADMIN_TOKEN": "alice-secret-token",
    "U024_ADMIN_TOKEN": "u024-secret-token",
    "BOB_ADMIN_TOKEN": "bob-secret-token",
}
SERVER = (
    "  admin_tokens:\n"
    "    alice: ALICE_ADMIN_TOKEN\n"
    "    U024BE7LH: U024_ADMIN_TOKEN\n"
    "    bob: BOB_ADMIN_TOKEN\n"
)


def alert(name: str) -> dict[str, Any]:
    return webhook({"alertname": name, "instance": "web1:9100"})


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """Personal tokens for alice, U024BE7LH (a Slack user id) and bob, and the shared one."""
    cfg = write_config(tmp_path / "d", RULES, policies=POLICY, server_extra=SERVER)
    d = Daemon.for_config(cfg, env=TOKENS).start()
    yield d
    assert d.stop() == 0
    assert "Traceback" not in d.logs()


def decide(
    d: Daemon, verb: str, token: str, body: dict[str, str] | None = None, incident: int = 1
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    raw_body = json.dumps(body).encode() if body is not None else None
    status, raw = d.request("POST", f"/api/incidents/{incident}/{verb}", raw_body, headers)
    return status, json.loads(raw)


def waiting(d: Daemon, name: str) -> None:
    assert d.post_webhook(alert(name)) == 200
    storeview.wait_for(
        "the approval request", lambda: "approval_requested" in storeview.events(d.db, 1)
    )


def test_the_shared_token_votes_once_whatever_by_says(daemon: Daemon) -> None:
    """Two shared-token approvals naming two approvers are one vote: nothing runs. A
    personal token then counts as its owner, and the step runs."""
    waiting(daemon, "Risky")
    first = decide(daemon, "approve", ADMIN_TOKEN, {"by": "U024BE7LH"})
    assert first == (
        200,
        {
            "result": "ok",
            "message": "approval recorded; 1 more needed",
            "incident": 1,
            "state": "awaiting_approval",
        },
    )
    status, second = decide(daemon, "approve", ADMIN_TOKEN, {"by": "alice"})
    assert status == 409
    assert second["error"].startswith("admin-token has already voted on this approval")
    assert storeview.incidents(daemon.db)[0]["state"] == "awaiting_approval"

    status, ok = decide(daemon, "approve", TOKENS["ALICE_ADMIN_TOKEN"])
    assert (status, ok["message"], ok["state"]) == (
        200,
        "approved by admin-token, alice",
        "pending",
    )
    storeview.wait_for("the step", lambda: "step_succeeded" in storeview.events(daemon.db, 1))
    audit = dict(storeview.audit(daemon.db, 1))
    assert audit["approval_vote"]["by"] == "admin-token"
    assert audit["approval_vote"]["as"] == "U024BE7LH"
    assert (audit["approved"]["by"], audit["approved"]["approvers"]) == (
        "alice",
        ["admin-token", "alice"],
    )


def test_a_personal_token_decides_only_as_its_owner(daemon: Daemon) -> None:
    """`by` must be the token's NAME if given (403 naming both otherwise); a NAME that is
    not an approver is refused like anyone else; the shared token needs `by`."""
    waiting(daemon, "Risky")
    alice = TOKENS["ALICE_ADMIN_TOKEN"]
    assert decide(daemon, "approve", alice, {"by": "U024BE7LH"}) == (
        403,
        {
            "error": "this admin token is alice's: it decides as alice, not as U024BE7LH"
            ' (leave "by" out, or send "by": "alice")'
        },
    )
    assert decide(daemon, "approve", TOKENS["BOB_ADMIN_TOKEN"]) == (
        403,
        {"error": "bob may not approve: not in the approvers"},
    )
    assert decide(daemon, "approve", ADMIN_TOKEN, {}) == (
        400,
        {
            "error": '"by" (who decides: an approver name or Slack user id) is required with'
            " the shared admin token; a personal token (server.admin_tokens) decides as its"
            " owner"
        },
    )
    assert decide(daemon, "approve", "alice-secret-token-", {"by": "alice"}) == (
        401,
        {"error": "missing or wrong admin token"},
    )
    assert decide(daemon, "approve", alice, {"by": "alice"})[0] == 200
    assert decide(daemon, "approve", alice) == (
        409,
        {"error": "alice has already voted on this approval"},
    )
    assert storeview.incidents(daemon.db)[0]["state"] == "awaiting_approval"
    refused = [d for e, d in storeview.audit(daemon.db, 1) if e == "approval_refused"]
    assert [(r["by"], r["via"]) for r in refused] == [("bob", "api")]


def test_a_slack_click_and_the_same_persons_token_are_one_vote(daemon: Daemon) -> None:
    """A token named after a Slack user id is that user: after their Approve click, their
    token's approval is `already voted`, not the second person `required: 2` asks for."""
    waiting(daemon, "Risky")
    click = click_body("approve", "1", "U024BE7LH")
    status, _ = daemon.request("POST", "/slack/interactions", click, sign(SIGNING_SECRET, click))
    assert status == 200
    storeview.wait_for("the Slack vote", lambda: "approval_vote" in storeview.events(daemon.db, 1))
    assert decide(daemon, "approve", TOKENS["U024_ADMIN_TOKEN"]) == (
        409,
        {"error": "U024BE7LH has already voted on this approval"},
    )
    assert storeview.incidents(daemon.db)[0]["state"] == "awaiting_approval"


def test_acknowledging_with_a_personal_token_checks_its_owner(daemon: Daemon) -> None:
    """The chain's acknowledgers are checked against the token's NAME, not a claimed `by`."""
    assert daemon.post_webhook(alert("Page")) == 200
    storeview.wait_for(
        "the escalation", lambda: "escalation_started" in storeview.events(daemon.db, 1)
    )
    assert decide(daemon, "ack", TOKENS["BOB_ADMIN_TOKEN"]) == (
        403,
        {"error": "bob may not acknowledge: not in the acknowledgers"},
    )
    assert decide(daemon, "ack", TOKENS["BOB_ADMIN_TOKEN"], {"by": "alice"})[0] == 403
    status, done = decide(daemon, "ack", TOKENS["U024_ADMIN_TOKEN"], {"by": "U024BE7LH"})
    assert (status, done["message"]) == (200, "acknowledged by U024BE7LH")


def test_the_cli_decides_as_the_owner_of_its_token(daemon: Daemon) -> None:
    """REMEDIATOR_ADMIN_TOKEN holding a personal token: no --by needed; the shared token
    without --by is refused with the reason."""
    waiting(daemon, "Risky")
    cfg = str(daemon.config)
    shared = run("approve", "1", "-c", cfg)
    assert shared.returncode == 1
    assert "is required with the shared admin token" in shared.stderr
    personal = run("approve", "1", "-c", cfg, env={"REMEDIATOR_ADMIN_TOKEN": "alice-secret-token"})
    assert personal.returncode == 0, personal.stderr
    assert personal.stdout.strip() == (
        "incident 1: approval recorded; 1 more needed (state: awaiting_approval)"
    )
    assert dict(storeview.audit(daemon.db, 1))["approval_vote"]["by"] == "alice"


def test_a_listed_token_whose_variable_is_unset_stops_the_start(tmp_path: Path) -> None:
    """Start-up names the config key and the variable; two people with one token is refused."""
    cfg = write_config(tmp_path / "d", RULES, policies=POLICY, server_extra=SERVER)
    unset = run("serve", "-c", str(cfg), env={"ALICE_ADMIN_TOKEN": "", "U024_ADMIN_TOKEN": "x"})
    assert unset.returncode == 1
    assert (
        "server.admin_tokens.alice: environment variable ALICE_ADMIN_TOKEN is not set or empty"
        in unset.stderr
    )
    same = {**TOKENS, "BOB_ADMIN_TOKEN": TOKENS["ALICE_ADMIN_TOKEN"]}
    shared = run("serve", "-c", str(cfg), env=same)
    assert shared.returncode == 1
    assert (
        "server.admin_tokens: alice (ALICE_ADMIN_TOKEN) and bob (BOB_ADMIN_TOKEN) hold the same"
        " token; give each person a token of their own" in shared.stderr
    )


class TestIdentify:
    """AdminTokens.identify: which holder an Authorization header belongs to."""

    tokens = AdminTokens({"alice": "a-token", "U024BE7LH": "u-token"}, "shared-token")

    def test_each_token_names_its_holder(self) -> None:
        """A personal token is its NAME; the shared one has no owner; the scheme is Bearer
        in any case, the token exact."""
        assert self.tokens.identify("Bearer a-token") == TokenHolder("alice")
        assert self.tokens.identify("bearer u-token") == TokenHolder("U024BE7LH")
        assert self.tokens.identify("Bearer shared-token") == TokenHolder(None)

    @pytest.mark.parametrize(
        "header",
        [
            None,
            "",
            "Bearer",
            "Bearer ",
            "a-token",
            "Basic a-token",
            "Bearer a-toke",
            "Bearer a-tokenx",
        ],
    )
    def test_anything_else_is_nobody(self, header: str | None) -> None:
        """No header, another scheme, a prefix or an extension of a token: no holder."""
        assert self.tokens.identify(header) is None
