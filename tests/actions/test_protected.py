"""block_ips never drops the fleet's own: inventory addresses and the lockdown's ops network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.daemon import write_config
from support.engine_harness import EngineHarness
from support.sshd import SshServer

from remediator.actions.params import parse_network
from remediator.actions.protected import Protected
from remediator.config import load_config
from remediator.errors import ActionError, ConfigError

RULES = """\
rules:
  - name: block-sources
    match: [alertname = FailedLoginsHigh]
    target: web1
    dry_run: true
    steps:
      - action: block_ips
        params: {ips: "{{ labels.source_ip }}", timeout: 1h}
    escalate: critical
  - name: lockdown
    match: [alertname = SecurityBreach]
    target: web1
    steps:
      - action: firewall_lockdown
        params: {allow_from: [10.0.9.0/24, "fd00:9::/48"]}
    escalate: critical
"""
POLICIES = "approvals:\n  default: {approvers: [alice]}\n"
HOSTS: dict[str, dict[str, Any]] = {
    "api1": {"address": "10.0.3.11"},
    "db1": {"address": "2001:db8:5::7"},
    "named": {"address": "backup.example.internal"},
}


@pytest.fixture
def protected(tmp_path: Path) -> Protected:
    cfg = write_config(
        tmp_path, RULES, hosts=HOSTS, policies=POLICIES, extra="ssh:\n  username: ops\n"
    )
    return Protected.from_config(load_config(cfg))


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        ("10.0.3.11", "10.0.3.11 is the address of inventory host api1"),
        ("10.0.3.0/24", "10.0.3.0/24 covers 10.0.3.11, the address of inventory host api1"),
        ("::ffff:10.0.3.11", "::ffff:10.0.3.11 is the address of inventory host api1"),
        (
            "2001:db8:5::/64",
            "2001:db8:5::/64 covers 2001:db8:5::7, the address of inventory host db1",
        ),
        (
            "10.0.9.77",
            "10.0.9.77 is inside 10.0.9.0/24, the allow_from of firewall_lockdown in rule "
            "lockdown (step 1): the ops network must keep its access",
        ),
        ("10.0.8.0/22", "10.0.8.0/22 overlaps 10.0.9.0/24, the allow_from of firewall_lockdown"),
        ("fd00:9:0:1::5", "fd00:9:0:1::5 is inside fd00:9::/48"),
    ],
)
def test_protected_addresses_are_refused_naming_address_and_why(
    protected: Protected, block: str, reason: str
) -> None:
    """Hosts, networks holding them, and anything in the lockdown's allow_from are refused."""
    with pytest.raises(ActionError) as exc:
        protected.check([parse_network(block)])
    assert reason in str(exc.value)
    assert str(exc.value).startswith("refusing to block (no self-lockout): ")


def test_other_addresses_pass_and_names_are_not_resolved(protected: Protected) -> None:
    """Attackers' addresses pass; a host written as a DNS name is not looked up."""
    protected.check([parse_network(a) for a in ("203.0.113.7", "10.0.4.0/24", "2001:db8:6::/48")])


def test_refusal_counts_what_it_does_not_spell_out(protected: Protected) -> None:
    """Seven protected addresses in one block: five named, the rest counted."""
    nets = [parse_network(f"10.0.9.{n}") for n in range(1, 8)] + [parse_network("203.0.113.7")]
    with pytest.raises(ActionError, match=r"10\.0\.9\.5 is inside .*; and 2 more$"):
        protected.check(nets)


def test_listen_address_is_protected(tmp_path: Path) -> None:
    """The address remediator listens on (its own) cannot be blocked either."""
    cfg = write_config(
        tmp_path, RULES, hosts=HOSTS, policies=POLICIES, extra="ssh:\n  username: ops\n"
    )
    cfg.write_text(cfg.read_text().replace("listen: 127.0.0.1:", "listen: 192.0.2.44:"))
    with pytest.raises(ActionError, match=r"192\.0\.2\.44 is the address remediator listens on"):
        Protected.from_config(load_config(cfg)).check([parse_network("192.0.2.44")])


def test_check_refuses_literal_addresses_of_the_fleet(tmp_path: Path) -> None:
    """`ips: [10.0.3.11]` written in a rule is caught by `remediator check`."""
    rules = RULES.replace('"{{ labels.source_ip }}"', '[203.0.113.9, "{{ labels.x }}", 10.0.3.11]')
    cfg = write_config(
        tmp_path, rules, hosts=HOSTS, policies=POLICIES, extra="ssh:\n  username: ops\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    assert "rule block-sources.steps[0].params.ips: refusing to block" in str(exc.value)
    assert "10.0.3.11 is the address of inventory host api1" in str(exc.value)


async def test_engine_refuses_the_step_and_hands_over(tmp_path: Path, sshd: SshServer) -> None:
    """An attacker's source_ip inside the ops network: a `refused` step naming the address,
    the chain pages; after a reload that moves the ops network, the new one is protected."""
    h = await EngineHarness.start(tmp_path, RULES, sshd, hosts=HOSTS, policies=POLICIES)
    try:
        await h.fire({"alertname": "FailedLoginsHigh", "source_ip": "10.0.9.7"})
        refused = dict(h.audit(1))["step_refused"]
        assert refused["step"] == 0
        assert "10.0.9.7 is inside 10.0.9.0/24" in refused["reason"]
        assert h.incidents()[0]["state"] == "escalating"
        assert "step_dispatching" not in h.events(1)

        moved = RULES.replace("10.0.9.0/24", "10.0.8.0/24")
        reloaded = write_config(
            tmp_path / "reloaded", moved, sshd=sshd, hosts=HOSTS, policies=POLICIES
        )
        h.ctx.swap_config(load_config(reloaded))
        await h.fire({"alertname": "FailedLoginsHigh", "source_ip": "10.0.8.5"})
        assert "10.0.8.5 is inside 10.0.8.0/24" in dict(h.audit(2))["step_refused"]["reason"]
        await h.fire({"alertname": "FailedLoginsHigh", "source_ip": "10.0.9.7", "n": "2"})
        assert "step_dry_run" in h.events(3)
    finally:
        await h.close()
