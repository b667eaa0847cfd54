"""`rate_limit`, `block_ips`, `firewall_lockdown`: nftables scripts run as `nft -f -`.

The script goes to nft on stdin over SSH and is applied as one transaction: if any line
is wrong, nothing changes. Each script can be re-run and replaces what an earlier run
of the same action left (never duplicates). Only validated integers, fixed words and
`ipaddress`-normalised addresses are written into a script: no rendered label text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from remediator.actions.base import Plan
from remediator.actions.params import (
    BlockIpsParams,
    FirewallLockdownParams,
    IpNetwork,
    RateLimitParams,
    parse_block_ips,
    parse_network,
)
from remediator.actions.ssh import SshRecipe, need_host
from remediator.config.models import Host, Model
from remediator.errors import ActionError
from remediator.templates import render

TABLE = "inet remediator"
LOCKDOWN_TABLE = "inet remediator_lockdown"
NFT_APPLY = ("nft", "-f", "-")
BLOCK_SETS = ((4, "blocked_v4", "ipv4_addr"), (6, "blocked_v6", "ipv6_addr"))


def _element(net: IpNetwork) -> str:
    """1.2.3.4 for a single address, 10.0.0.0/24 for a network."""
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _of_version(nets: Iterable[IpNetwork], version: int) -> list[str]:
    return [_element(n) for n in nets if n.version == version]


def rate_limit_script(params: RateLimitParams) -> str:
    """One chain per protocol and port, flushed and refilled: re-running replaces the rule."""
    proto, port = params.protocol, int(params.port)
    chain = f"{TABLE} rate_limit_{proto}_{port}"
    count, unit = params.rate.split("/")
    return (
        f"add table {TABLE}\n"
        f"add chain {chain} {{ type filter hook input priority -5; policy accept; }}\n"
        f"flush chain {chain}\n"
        f"add rule {chain} {proto} dport {port} ct state new"
        f" limit rate over {int(count)}/{unit} burst {int(params.burst)} packets counter drop\n"
    )


def block_ips_script(nets: list[IpNetwork], timeout_s: float | None) -> str:
    """Drop sets per address family; sets always allow timeouts, so their flags never change."""
    lines = [f"add table {TABLE}"]
    for _, name, kind in BLOCK_SETS:
        lines.append(
            f"add set {TABLE} {name} {{ type {kind}; flags interval, timeout; auto-merge; }}"
        )
    lines += [
        f"add chain {TABLE} block_ips {{ type filter hook input priority -10; policy accept; }}",
        f"flush chain {TABLE} block_ips",
        f"add rule {TABLE} block_ips ip saddr @blocked_v4 counter drop",
        f"add rule {TABLE} block_ips ip6 saddr @blocked_v6 counter drop",
    ]
    expiry = "" if timeout_s is None else f" timeout {math.ceil(timeout_s)}s"
    for version, name, _ in BLOCK_SETS:
        elements = [e + expiry for e in _of_version(nets, version)]
        if elements:
            lines.append(f"add element {TABLE} {name} {{ {', '.join(elements)} }}")
    return "\n".join(lines) + "\n"


def lockdown_script(allow_from: list[IpNetwork], ssh_port: int) -> str:
    """Replace the lockdown table atomically: drop inbound except SSH from `allow_from`."""
    port = int(ssh_port)
    rules = [
        'iif "lo" accept',
        "ct state established,related accept",
        # IPv6 neighbour discovery, without which no IPv6 peer (allowed or not) gets an answer.
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept",
    ]
    for version, match in ((4, "ip saddr"), (6, "ip6 saddr")):
        cidrs = _of_version(allow_from, version)
        if cidrs:
            rules.append(f"tcp dport {port} {match} {{ {', '.join(cidrs)} }} accept")
    body = "".join(f"\t\t{rule}\n" for rule in rules)
    return (
        f"add table {LOCKDOWN_TABLE}\n"
        f"delete table {LOCKDOWN_TABLE}\n"
        f"table {LOCKDOWN_TABLE} {{\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority -20; policy drop;\n"
        f"{body}"
        "\t}\n"
        "}\n"
    )


class _NftAction(SshRecipe):
    """Feeds one nft script to `nft -f -` on the target."""

    def _nft_plan(self, host: Host | None, script: str, blocks: tuple[IpNetwork, ...] = ()) -> Plan:
        target = need_host(self.name, host)
        return Plan(self.name, target, commands=(NFT_APPLY,), stdin=(script,), blocks=blocks)


class RateLimitAction(_NftAction):
    """Drop new connections to a port above a rate."""

    name = "rate_limit"
    params_model: type[Model] = RateLimitParams

    def plan(self, params: RateLimitParams, context: dict[str, Any], host: Host | None) -> Plan:
        """Build the script from the validated params."""
        return self._nft_plan(host, rate_limit_script(params))


class BlockIpsAction(_NftAction):
    """Add addresses (rendered from labels, then validated) to the drop sets."""

    name = "block_ips"
    params_model: type[Model] = BlockIpsParams

    def plan(self, params: BlockIpsParams, context: dict[str, Any], host: Host | None) -> Plan:
        """Render `ips`, validate every entry as an address or network, build the script."""
        rendered = [render(value, context) for value in params.entries()]
        try:
            nets = parse_block_ips(rendered)
        except ValueError as exc:
            raise ActionError(f"refusing to block: {exc}") from None
        return self._nft_plan(host, block_ips_script(nets, params.timeout), tuple(nets))


class FirewallLockdownAction(_NftAction):
    """Deny all inbound except SSH from the ops network."""

    name = "firewall_lockdown"
    params_model: type[Model] = FirewallLockdownParams
    always_needs_approval = True  # it cuts every connection but the ops network's

    def plan(
        self, params: FirewallLockdownParams, context: dict[str, Any], host: Host | None
    ) -> Plan:
        """SSH port: `ssh_port`, else the target's port in the inventory."""
        target = need_host(self.name, host)
        allow_from = [parse_network(cidr) for cidr in params.allow_from]
        return self._nft_plan(target, lockdown_script(allow_from, params.ssh_port or target.port))
