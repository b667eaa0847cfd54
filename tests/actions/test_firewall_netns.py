"""rate_limit, block_ips and firewall_lockdown against real nftables in a namespace host.

Every claim is checked with real TCP connections and SSH logins from the root
namespace, bound to the namespace's allowed (.1) or other (.3) client address.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.netns import LISTENER_PORT, SSH_PORT, NetnsHost, namespace_host

from remediator.actions.base import Action, Outcome
from remediator.actions.firewall import BlockIpsAction, FirewallLockdownAction, RateLimitAction
from remediator.actions.params import (
    BlockIpsParams,
    FirewallLockdownParams,
    RateLimitParams,
    SshParams,
)
from remediator.actions.ssh import SshAction
from remediator.actions.sshpool import SshPool
from remediator.config.models import Model
from remediator.errors import ActionError

QUICK_S = 0.5  # a refused or dropped SYN is "quick" to give up on; a veth answers in < 1 ms


@pytest.fixture
def netns_host(tmp_path: Path) -> Iterator[NetnsHost]:
    """A namespace "host" with sshd on :22 and a one-byte listener on :8080."""
    with namespace_host(tmp_path / "netns") as host:
        yield host


@pytest.fixture
async def pool(netns_host: NetnsHost) -> AsyncIterator[SshPool]:
    """An SshPool that trusts the namespace sshd's host key."""
    ssh_pool = SshPool(netns_host.ssh_settings())
    try:
        yield ssh_pool
    finally:
        await ssh_pool.close()


async def _nothing() -> None:
    """A before_send hook with nothing to record."""


async def _apply(
    action: Action, params: Model, context: dict[str, Any], host: NetnsHost
) -> Outcome:
    """Plan and execute one action against the namespace host; it must succeed."""
    plan = action.plan(params, context, host.target())
    outcome = await action.execute(plan, _nothing)
    assert outcome.ok, outcome
    return outcome


def _labels(**labels: str) -> dict[str, Any]:
    """A template context carrying these alert labels."""
    return {"labels": labels, "annotations": {}}


def _successes(host: NetnsHost, port: int, source: str, attempts: int = 10) -> int:
    """How many of `attempts` back-to-back new connections from `source` got through."""
    return sum(host.connect(port, source=source, timeout_s=QUICK_S) for _ in range(attempts))


def _without_counters(ruleset: str) -> str:
    """The ruleset with packet/byte counts zeroed, so traffic alone never makes it differ."""
    return re.sub(r"packets \d+ bytes \d+", "packets 0 bytes 0", ruleset)


def _root_tables() -> str:
    """The root namespace's nft tables (read only)."""
    return subprocess.run(
        ["/usr/sbin/nft", "list", "tables"], capture_output=True, text=True, check=True
    ).stdout


async def test_harness_detects_a_drop_rule_sent_over_ssh(
    netns_host: NetnsHost, pool: SshPool
) -> None:
    """A hand-written nft drop run over SSH blocks one source in the namespace only."""
    host = netns_host
    assert host.connect(LISTENER_PORT, source=host.other_client)
    assert await host.ssh_login(source=host.other_client)
    action = SshAction(pool)
    chain = "{ type filter hook input priority 0 ; }"
    drop_other = ["ip", "saddr", host.other_client, "drop"]
    for argv in (
        ["nft", "add", "table", "inet", "rmt_selftest"],
        ["nft", "add", "chain", "inet", "rmt_selftest", "input", chain],
        ["nft", "add", "rule", "inet", "rmt_selftest", "input", *drop_other],
    ):
        plan = action.plan(SshParams(argv=argv), {}, host.target())
        outcome = await action.execute(plan, _nothing)
        assert outcome.ok, outcome
    assert "rmt_selftest" in host.ruleset()
    assert "rmt_selftest" not in _root_tables()
    assert not host.connect(LISTENER_PORT, source=host.other_client)
    assert not await host.ssh_login(source=host.other_client)
    assert host.connect(LISTENER_PORT, source=host.client)
    assert host.connect(SSH_PORT, source=host.client)
    assert await host.ssh_login(source=host.client)


async def test_rate_limit_drops_excess_new_connections_to_its_port_only(
    netns_host: NetnsHost, pool: SshPool
) -> None:
    """rate_limit drops new connections beyond rate+burst on its port; SSH is untouched; reruns add nothing."""
    host = netns_host
    assert _successes(host, LISTENER_PORT, host.client) == 10
    action = RateLimitAction(pool)
    params = RateLimitParams(port=LISTENER_PORT, rate="1/second", burst=2, protocol="tcp")
    await _apply(action, params, {}, host)
    once = _without_counters(host.ruleset())
    await _apply(action, params, {}, host)
    assert f"dport {LISTENER_PORT}" in once
    assert _without_counters(host.ruleset()) == once
    passed = _successes(host, LISTENER_PORT, host.client)
    assert 1 <= passed < 10, f"{passed}/10 connections passed the limit"
    assert _successes(host, SSH_PORT, host.client) == 10
    assert await host.ssh_login(source=host.client)


async def test_block_ips_drops_a_labelled_source_and_refuses_hostile_labels(
    netns_host: NetnsHost, pool: SshPool
) -> None:
    """block_ips drops the address a label names, spares others, and refuses a non-IP label."""
    host = netns_host
    assert host.connect(LISTENER_PORT, source=host.other_client)
    action = BlockIpsAction(pool)
    params = BlockIpsParams(ips="{{ labels.src }}")
    await _apply(action, params, _labels(src=host.other_client), host)
    assert not host.connect(LISTENER_PORT, source=host.other_client)
    assert not host.connect(SSH_PORT, source=host.other_client)
    assert host.connect(LISTENER_PORT, source=host.client)
    assert await host.ssh_login(source=host.client)

    before = _without_counters(host.ruleset())
    with pytest.raises(ActionError):
        action.plan(params, _labels(src=f"{host.other_client}; flush ruleset"), host.target())
    assert _without_counters(host.ruleset()) == before
    assert not host.connect(LISTENER_PORT, source=host.other_client)


async def test_firewall_lockdown_keeps_only_ssh_from_allow_from(
    netns_host: NetnsHost, pool: SshPool
) -> None:
    """firewall_lockdown drops all inbound but SSH from allow_from; new logins from there work."""
    host = netns_host
    assert host.connect(LISTENER_PORT, source=host.client)
    assert host.connect(LISTENER_PORT, source=host.other_client)
    assert await host.ssh_login(source=host.other_client)
    action = FirewallLockdownAction(pool)
    await _apply(action, FirewallLockdownParams(allow_from=[f"{host.client}/32"]), {}, host)
    assert not host.connect(LISTENER_PORT, source=host.client)
    assert not host.connect(LISTENER_PORT, source=host.other_client)
    assert await host.ssh_login(source=host.client)
    assert not await host.ssh_login(source=host.other_client)
    # The pooled connection the lockdown ran over keeps working too.
    await _apply(SshAction(pool), SshParams(argv=["true"]), {}, host)
