"""rate_limit, block_ips, firewall_lockdown: the exact nft scripts, validated inputs, nft -c."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from support.daemon import write_config
from support.sshd import SshServer

from remediator.actions.base import Plan
from remediator.actions.firewall import BlockIpsAction, FirewallLockdownAction, RateLimitAction
from remediator.actions.params import (
    MAX_BLOCK_IPS,
    BlockIpsParams,
    FirewallLockdownParams,
    RateLimitParams,
)
from remediator.actions.sshpool import SshPool, SshSettings
from remediator.config import load_config
from remediator.config.models import Host
from remediator.errors import ActionError, ConfigError

NFT = Path("/usr/sbin/nft")
HOST = Host(name="web1", address="192.0.2.10", port=2222, user="ops")
OFFLINE_POOL = SshPool(SshSettings(Path("/dev/null"), (), 1.0, 1.0, 1))
needs_nft = pytest.mark.skipif(
    not NFT.exists() or os.geteuid() != 0, reason="nft -c needs /usr/sbin/nft and root"
)

RATE_LIMIT_8080 = """\
add table inet remediator
add chain inet remediator rate_limit_tcp_8080 { type filter hook input priority -5; policy accept; }
flush chain inet remediator rate_limit_tcp_8080
add rule inet remediator rate_limit_tcp_8080 tcp dport 8080 ct state new limit rate over 10/second burst 5 packets counter drop
"""

BLOCK_IPS_1H = """\
add table inet remediator
add set inet remediator blocked_v4 { type ipv4_addr; flags interval, timeout; auto-merge; }
add set inet remediator blocked_v6 { type ipv6_addr; flags interval, timeout; auto-merge; }
add chain inet remediator block_ips { type filter hook input priority -10; policy accept; }
flush chain inet remediator block_ips
add rule inet remediator block_ips ip saddr @blocked_v4 counter drop
add rule inet remediator block_ips ip6 saddr @blocked_v6 counter drop
add element inet remediator blocked_v4 { 203.0.113.7 timeout 3600s, 198.51.100.0/24 timeout 3600s }
add element inet remediator blocked_v6 { 2001:db8::1 timeout 3600s, 2001:db8:1::/64 timeout 3600s }
"""

LOCKDOWN = """\
add table inet remediator_lockdown
delete table inet remediator_lockdown
table inet remediator_lockdown {
	chain input {
		type filter hook input priority -20; policy drop;
		iif "lo" accept
		ct state established,related accept
		icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
		tcp dport 2222 ip saddr { 10.20.0.0/16, 192.0.2.1 } accept
		tcp dport 2222 ip6 saddr { fd00:1::/48 } accept
	}
}
"""


def rate_limit(**values: Any) -> Plan:
    return RateLimitAction(OFFLINE_POOL).plan(RateLimitParams.model_validate(values), {}, HOST)


def block_ips(ips: str, **values: Any) -> Plan:
    p = BlockIpsParams.model_validate({"ips": "{{ labels.ips }}", **values})
    return BlockIpsAction(OFFLINE_POOL).plan(p, {"labels": {"ips": ips}}, HOST)


def lockdown(**values: Any) -> Plan:
    p = FirewallLockdownParams.model_validate(values)
    return FirewallLockdownAction(OFFLINE_POOL).plan(p, {}, HOST)


def script(plan: Plan) -> str:
    assert plan.commands == (("nft", "-f", "-"),)
    (text,) = plan.stdin
    assert text is not None
    return text


def nft_check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "script.nft"
    path.write_text(text)
    return subprocess.run([str(NFT), "-c", "-f", str(path)], capture_output=True, text=True)


def test_rate_limit_script_is_exact() -> None:
    """One chain per protocol and port, flushed and refilled with one limit rule."""
    assert script(rate_limit(port=8080, rate="10/second")) == RATE_LIMIT_8080


def test_block_ips_script_is_exact_for_v4_and_v6() -> None:
    """Label values split on commas/spaces, normalised, sorted into the v4 and v6 sets."""
    ips = "203.0.113.7, 198.51.100.9/24\n2001:DB8:0::1 2001:db8:1::/64,203.0.113.7"
    assert script(block_ips(ips, timeout="1h")) == BLOCK_IPS_1H


def test_block_ips_without_timeout_adds_permanent_elements() -> None:
    """No timeout: elements carry none; only the family that has entries gets a line."""
    text = script(block_ips("2001:db8::5"))
    assert text.endswith("add element inet remediator blocked_v6 { 2001:db8::5 }\n")
    assert "blocked_v4 {" not in text.split("counter drop\n")[-1]


def test_small_ipv6_addresses_stay_ipv6() -> None:
    """`::5` and `::1.2.3.4` are IPv6 (never reinterpreted as 0.0.0.5 or 1.2.3.4)."""
    text = script(block_ips("::5 ::1.2.3.4"))
    assert text.endswith("add element inet remediator blocked_v6 { ::5, ::102:304 }\n")


def test_lockdown_script_is_exact_and_uses_the_inventory_ssh_port() -> None:
    """Without ssh_port the target's inventory port (2222) is the one left open."""
    plan = lockdown(allow_from=["10.20.3.4/16", "192.0.2.1", "fd00:1::/48"])
    assert script(plan) == LOCKDOWN
    assert plan.describe()["stdin"] == [LOCKDOWN]


def test_lockdown_with_only_v4_sources_and_explicit_port() -> None:
    """ssh_port overrides the inventory; no v6 sources means no v6 SSH rule."""
    text = script(lockdown(allow_from=["10.0.0.0/8"], ssh_port=22))
    assert "tcp dport 22 ip saddr { 10.0.0.0/8 } accept\n" in text
    assert "ip6 saddr" not in text


@pytest.mark.parametrize(
    ("hostile", "reason"),
    [
        ("1.2.3.4; flush ruleset", "'1.2.3.4;' is not an IP address or network"),
        ("$(id)", "'$(id)' is not an IP address or network"),
        ("1.2.3.4}", "'1.2.3.4}' is not an IP address or network"),
        ("1.2.3.4/33", "'1.2.3.4/33' is not an IP address or network"),
        ("fe80::1%$(id)", "'fe80::1%$(id)': an address with a zone (%...) cannot be filtered"),
        ("0.0.0.0/0", "'0.0.0.0/0' is too broad to block: the prefix must be /16 or longer"),
        ("::/0", "'::/0' is too broad to block: the prefix must be /48 or longer"),
        ("10.0.0.1/8", "'10.0.0.1/8' is too broad to block: the prefix must be /16 or longer"),
        ("127.0.0.1", "'127.0.0.1' is a loopback or unspecified address"),
        ("::1", "'::1' is a loopback or unspecified address"),
    ],
)
def test_hostile_or_dangerous_ips_are_refused_naming_the_value(hostile: str, reason: str) -> None:
    """Anything that is not a specific, blockable address or network is an ActionError."""
    with pytest.raises(ActionError) as caught:
        block_ips(f"203.0.113.7 {hostile}")
    assert str(caught.value) == f"refusing to block: {reason}"


def test_empty_and_oversized_ip_lists_are_refused() -> None:
    """A label rendering to no address, or more than the cap, runs nothing."""
    with pytest.raises(ActionError, match="no IP addresses to block"):
        block_ips(" , ")
    many = " ".join(f"10.{i // 256}.{i % 256}.1" for i in range(MAX_BLOCK_IPS + 1))
    with pytest.raises(ActionError, match=f"the limit is {MAX_BLOCK_IPS}"):
        block_ips(many)


@pytest.mark.parametrize(
    ("model", "values", "message"),
    [
        (RateLimitParams, {"port": 0, "rate": "1/second"}, "greater than or equal to 1"),
        (RateLimitParams, {"port": 80, "rate": "10/sec"}, "must look like 10/second"),
        (RateLimitParams, {"port": 80, "rate": "0/minute"}, "must look like 10/second"),
        (RateLimitParams, {"port": 80, "rate": "10/second\n"}, "must look like 10/second"),
        (RateLimitParams, {"port": 80, "rate": "\u0663/second"}, "must look like 10/second"),
        (RateLimitParams, {"port": 80, "rate": "1/hour", "burst": 0}, "greater than or equal"),
        (RateLimitParams, {"port": 80, "rate": "1/hour", "protocol": "icmp"}, "'tcp' or 'udp'"),
        (BlockIpsParams, {"ips": ["1.2.3.4", "nope"]}, "'nope' is not an IP address"),
        (BlockIpsParams, {"ips": "1.2.3.4", "timeout": "0s"}, "greater than or equal to 1"),
        (FirewallLockdownParams, {"allow_from": []}, "at least 1 item"),
        (FirewallLockdownParams, {"allow_from": ["10.0.0.0/33"]}, "not an IP address"),
        (FirewallLockdownParams, {"allow_from": ["10/8"], "ssh_port": 70000}, "less than"),
    ],
)
def test_operator_mistakes_fail_when_rules_load(
    model: type[Any], values: dict[str, Any], message: str
) -> None:
    """Literal params are validated by the models, so `remediator check` reports them."""
    with pytest.raises(ValidationError, match=message):
        model.model_validate(values)


CHECKED_RULES = """\
rules:
  - name: abuse
    match: [alertname = Abuse]
    target: web1
    steps:
      - action: rate_limit
        params: {port: 8080, rate: 10/sec}
      - action: block_ips
        params: {ips: ["{{ labels.src }}", "1.2.3.4;"]}
      - action: firewall_lockdown
        params: {allow_from: [10.0.0.0/8]}
"""


def test_check_reports_bad_params_with_file_and_line(tmp_path: Path) -> None:
    """`remediator check` names file:line and path for each bad param and the missing `ssh:`."""
    path = write_config(tmp_path, CHECKED_RULES, hosts={"web1": {"address": "192.0.2.10"}})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).splitlines() == [
        "rules/rules.yml:7: rules[0].steps[0].params.rate: rate '10/sec' must look like 10/second (or /minute, /hour)",
        "rules/rules.yml:9: rules[0].steps[1].params.ips: '1.2.3.4;' is not an IP address or network",
        "rules/rules.yml:6: rules[0].steps[0].action: rate_limit runs over SSH, so remediator.yml needs an `ssh:` section",
        "rules/rules.yml:8: rules[0].steps[1].action: block_ips runs over SSH, so remediator.yml needs an `ssh:` section",
        "rules/rules.yml:10: rules[0].steps[2].action: firewall_lockdown runs over SSH, so remediator.yml needs an `ssh:` section",
        "rules/rules.yml:2: rule abuse.steps[2]: step 2 (firewall_lockdown) needs approval, but no policy file defines `approvals:` (who may approve, timeout, on_timeout)",
    ]


@needs_nft
@pytest.mark.parametrize(
    "make",
    [
        lambda: rate_limit(port=8080, rate="10/second"),
        lambda: rate_limit(port=53, rate="100/minute", burst=50, protocol="udp"),
        lambda: block_ips("203.0.113.7 198.51.100.0/24 2001:db8::1", timeout="90m"),
        lambda: block_ips("203.0.113.7"),
        lambda: block_ips("2001:db8::/48"),
        lambda: lockdown(allow_from=["10.20.3.4/16", "192.0.2.1", "fd00:1::/48"]),
        lambda: lockdown(allow_from=["fd00::/8"], ssh_port=22),
    ],
)
def test_nft_accepts_every_generated_script(tmp_path: Path, make: Any) -> None:
    """`nft -c -f` (check only, nothing applied) parses each script without error."""
    result = nft_check(tmp_path, script(make()))
    assert result.returncode == 0, result.stderr


@pytest.fixture
async def pool(sshd: SshServer) -> AsyncIterator[SshPool]:
    """A pool trusting the test sshd."""
    ssh = SshPool(SshSettings(sshd.known_hosts, (sshd.client_key,), 5.0, 10.0, 1))
    yield ssh
    await ssh.close()


async def noop() -> None:
    """A before_send that records nothing."""


@needs_nft
async def test_script_reaches_nft_on_stdin_over_ssh(
    sshd: SshServer, pool: SshPool, tmp_path: Path
) -> None:
    """Over SSH the exact script arrives on `nft -f -` stdin; a check-mode nft accepts it."""
    saved = tmp_path / "stdin.nft"
    stand_in = sshd.bin_dir / "nft"
    stand_in.write_text(f"#!/bin/sh\ncat > {saved}\nexec {NFT} -c -f {saved}\n")
    stand_in.chmod(0o755)
    target = HOST.model_copy(update={"address": "127.0.0.1", "port": sshd.port, "user": "root"})
    action = BlockIpsAction(pool)
    p = BlockIpsParams.model_validate({"ips": "{{ labels.src }}", "timeout": "10m"})
    plan = action.plan(p, {"labels": {"src": "203.0.113.7"}}, target)
    outcome = await action.execute(plan, noop)
    assert outcome.ok, outcome.output
    assert saved.read_text() == script(plan)
    assert shutil.which("nft", path=str(sshd.bin_dir)) == str(stand_in)
