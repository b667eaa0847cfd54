"""`approvals.always_for` decided on the rendered plan: what will run, not the template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from remediator.actions.approval import check_always_for, plan_approval_policy
from remediator.actions.base import Plan
from remediator.actions.firewall import FirewallLockdownAction
from remediator.actions.http import HttpAction
from remediator.actions.params import (
    FirewallLockdownParams,
    HttpParams,
    RestartServiceParams,
    SshParams,
)
from remediator.actions.ssh import RestartServiceAction, SshAction
from remediator.actions.sshpool import SshPool, SshSettings
from remediator.config.models import AlwaysFor, Host, RuleSpec
from remediator.errors import ActionError

HOST = Host(name="web1", address="192.0.2.10", port=22, user="ops")
OFFLINE_POOL = SshPool(SshSettings(Path("/dev/null"), (), 1.0, 1.0, 1))
POLICY = ["block_ips", "ssh:reboot"]


def ssh(argv: list[str], **labels: str) -> Plan:
    params = SshParams.model_validate({"argv": argv})
    return SshAction(OFFLINE_POOL).plan(params, {"labels": labels}, HOST)


def entries(always_for: list[str | dict[str, str]]) -> list[AlwaysFor]:
    return [
        AlwaysFor.model_validate({"action": e} if isinstance(e, str) else e) for e in always_for
    ]


def asks(
    plan: Plan, always_for: list[str | dict[str, str]] = POLICY, approval: str = "auto"
) -> str | None:
    return plan_approval_policy(plan, approval, entries(always_for))


def needs(plan: Plan, always_for: list[str] = POLICY, approval: str = "auto") -> bool:
    return asks(plan, list(always_for), approval) is not None


@pytest.mark.parametrize(
    ("argv", "labels"),
    [
        (["systemctl", "{{ labels.verb }}"], {"verb": "reboot"}),
        (["{{ labels.cmd }}"], {"cmd": "/sbin/reboot"}),
        (["/usr/sbin/REBOOT", "-f"], {}),
        (["sh", "-c", "sleep 1; /sbin/reboot"], {}),
        (["sh", "-c", "{{ labels.x }}"], {"x": "true&&reboot"}),
        (["shutdown", "-r", "now"], {}),
        (["systemctl", "{{ labels.verb }}"], {"verb": "poweroff"}),
        (["systemctl", "start", "reboot.target"], {}),
        (["halt", "--reboot"], {}),
        (["init", "6"], {}),
        (["systemctl", "kexec"], {}),
    ],
)
def test_ssh_reboot_matches_what_will_run(argv: list[str], labels: dict[str, str]) -> None:
    """`ssh:reboot` matches the rendered argv, a path's basename, a shell string, and the
    other ways to take a host down (shutdown, poweroff, halt, kexec, init)."""
    assert needs(ssh(argv, **labels))


@pytest.mark.parametrize(
    "argv",
    [
        ["systemctl", "restart", "nginx"],
        ["systemctl", "is-active", "rebooter"],
        ["cat", "/var/log/reboots"],
        ["echo", "not-a-reboot"],
    ],
)
def test_ssh_reboot_leaves_other_commands_alone(argv: list[str]) -> None:
    """Commands without a power word (a word that merely contains one) run without asking."""
    assert not needs(ssh(argv))


def test_ssh_entries_cover_every_action_that_runs_commands_over_ssh() -> None:
    """A restart_service of `reboot.target` (service from a label) reboots the host: it asks."""
    params = RestartServiceParams.model_validate({"service": "{{ labels.svc }}"})
    plan = RestartServiceAction(OFFLINE_POOL).plan(
        params, {"labels": {"svc": "reboot.target"}}, HOST
    )
    assert needs(plan)
    plain = RestartServiceAction(OFFLINE_POOL).plan(params, {"labels": {"svc": "nginx"}}, HOST)
    assert not needs(plain)


def test_action_names_required_and_lockdown_always_ask() -> None:
    """An action named in always_for, `approval: required` and firewall_lockdown always ask."""
    assert needs(Plan("block_ips", HOST, commands=(("nft", "-f", "-"),)))
    assert needs(ssh(["uptime"]), approval="required")
    assert needs(Plan("firewall_lockdown", HOST), always_for=[])
    assert not needs(ssh(["uptime"]))


def test_other_actions_entries_only_match_their_action() -> None:
    """`script:reboot` does not make an ssh step ask; `script` steps with reboot do."""
    assert not needs(ssh(["reboot"]), always_for=["script:reboot"])
    script = Plan("script", None, commands=(("/usr/local/bin/reboot-lb",),))
    assert not needs(script, always_for=["script:reboot"])
    assert needs(Plan("script", None, commands=(("reboot",),)), always_for=["script:reboot"])


def test_http_entries_match_method_and_path_segments() -> None:
    """`http:circuit-breaker` matches the rendered URL's path, percent-encoded or not."""
    params = HttpParams.model_validate(
        {"url": "http://{{ target.address }}:8545/admin/{{ labels.p }}/open"}
    )
    context: dict[str, Any] = {
        "labels": {"p": "circuit-breaker"},
        "target": {"address": "192.0.2.10"},
    }
    plan = HttpAction(environ={}).plan(params, context, HOST)
    assert needs(plan, always_for=["http:circuit-breaker"])
    assert needs(plan, always_for=["http:post"])
    assert not needs(plan, always_for=["http:delete"])
    encoded = Plan(
        "http", None, request={"method": "PUT", "url": "http://h/admin/circuit%2Dbreaker"}
    )
    assert needs(encoded, always_for=["http:circuit-breaker"])


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("sssh:reboot", "unknown action 'sssh'"),
        ("rebot", "unknown action 'rebot'"),
        ("ssh:", "write one word after the colon"),
        ("ssh:systemctl reboot", "write one word after the colon"),
        ("ssh:/sbin/reboot", "write one word after the colon"),
    ],
)
def test_check_refuses_always_for_entries_that_would_never_match(entry: str, problem: str) -> None:
    """A typo in always_for would silently let steps run unasked: `check` names it."""
    assert problem in (check_always_for(entry) or "")
    assert check_always_for("ssh:reboot") is None
    assert check_always_for("block_ips") is None


@pytest.mark.parametrize(
    "unit",
    [
        "ctrl-alt-del.target",
        "runlevel6.target",
        "runlevel0.target",
        "systemd-reboot.service",
        "systemd-poweroff.service",
        "rescue.target",
        "emergency.target",
        "hibernate.target",
    ],
)
def test_every_unit_that_takes_the_host_down_asks(unit: str) -> None:
    """Units that reboot, power off, isolate or suspend the host count as `ssh:reboot`."""
    params = RestartServiceParams.model_validate({"service": "{{ labels.unit }}"})
    plan = RestartServiceAction(OFFLINE_POOL).plan(params, {"labels": {"unit": unit}}, HOST)
    assert needs(plan)


@pytest.mark.parametrize("verb", ["rescue", "emergency", "isolate", "suspend", "hybrid-sleep"])
def test_systemctl_verbs_that_take_the_host_down_ask(verb: str) -> None:
    """`systemctl VERB` from a label asks when VERB stops or isolates the host."""
    assert needs(ssh(["systemctl", verb]))


LOCKDOWN = Plan("firewall_lockdown", HOST)
SECURITY = {"action": "firewall_lockdown", "policy": "security"}


def test_the_policy_a_step_is_asked_under() -> None:
    """`approval: required` and a plain `always_for` entry ask `default`; `approval: NAME`
    asks NAME; an `always_for` entry naming a policy asks it (`required` included)."""
    assert asks(ssh(["uptime"]), approval="required") == "default"
    assert asks(ssh(["reboot"])) == "default"
    assert asks(ssh(["uptime"]), approval="network") == "network"
    assert asks(ssh(["reboot"]), approval="network") == "network"  # a plain entry: the step's
    assert asks(LOCKDOWN, always_for=[]) == "default"
    assert asks(LOCKDOWN, always_for=[SECURITY]) == "security"
    assert asks(LOCKDOWN, always_for=[SECURITY], approval="required") == "security"
    assert asks(ssh(["uptime"]), always_for=[SECURITY]) is None


def test_policies_that_disagree_refuse_the_step_whatever_their_order() -> None:
    """When the policies that apply to a step differ (its `approval:` and the matching
    `always_for` entries), the step is refused: neither the entries' order nor a word a
    label puts in the command (`reboot.target`) picks weaker approvers."""
    with pytest.raises(ActionError, match="network, security"):
        asks(LOCKDOWN, always_for=[SECURITY], approval="network")
    nft_to_ops = {"action": "ssh:nft", "policy": "ops"}
    lockdown = FirewallLockdownAction(OFFLINE_POOL).plan(
        FirewallLockdownParams.model_validate({"allow_from": ["10.0.0.0/8"]}), {}, HOST
    )
    for order in ([nft_to_ops, SECURITY], [SECURITY, nft_to_ops]):
        with pytest.raises(ActionError, match="ops, security"):
            asks(lockdown, always_for=order)
    reboot_to_ops = {"action": "ssh:reboot", "policy": "ops"}
    restart = ["systemctl", "restart", "{{ labels.unit }}"]
    assert asks(ssh(restart, unit="nginx"), [reboot_to_ops], "security") == "security"
    for unit in ("reboot.target", "nginx;reboot"):
        with pytest.raises(ActionError, match="ops, security"):
            asks(ssh(restart, unit=unit), [reboot_to_ops], "security")


def test_a_rules_approval_is_its_steps_unless_they_say_otherwise() -> None:
    """`approval: security` on a rule asks security for its steps; a step's own
    `approval:` (auto included) wins."""
    rule = RuleSpec.model_validate(
        {
            "name": "r",
            "match": ["alertname = X"],
            "approval": "security",
            "steps": [
                {"action": "ssh", "params": {"argv": ["uptime"]}},
                {"action": "ssh", "params": {"argv": ["uptime"]}, "approval": "auto"},
            ],
        }
    )
    assert [rule.approval_of(s) for s in rule.steps] == ["security", "auto"]
    assert asks(ssh(["uptime"]), approval=rule.approval_of(rule.steps[0])) == "security"
    assert asks(ssh(["uptime"]), approval=rule.approval_of(rule.steps[1])) is None
