"""Addresses `block_ips` never drops: the fleet's own and the ops network (no self-lockout).

An attacker choosing the `source_ip` label must not get the fleet to cut off its own
operators. Built from one config (the engine rebuilds it on every reload), so a plan is
always checked against the current inventory and rules:

- every inventory host's address (one written as a DNS name is not resolved: write
  addresses as IPs to have them protected);
- every `allow_from` network of a `firewall_lockdown` step in any rule (the ops network
  that keeps SSH during a lockdown);
- the address remediator listens on, when it is a specific address.

A block that overlaps any of them (an address inside `allow_from`, a network holding a
host) is refused, naming the address and why. IPv4-mapped IPv6 addresses
(`::ffff:10.0.1.11`) count as the IPv4 address they map.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field

from remediator.actions.params import FirewallLockdownParams, IpNetwork, parse_network
from remediator.config.models import Config
from remediator.config.server import parse_listen
from remediator.errors import ActionError

MAX_NAMED = 5  # conflicts spelt out in one refusal; the rest are counted
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _span(net: IpNetwork) -> tuple[int, int, int]:
    """(version, first, last) as integers; an IPv4-mapped IPv6 network as its IPv4 one."""
    if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(_MAPPED):
        first = int(net.network_address) - int(_MAPPED.network_address)
        return 4, first, first + net.num_addresses - 1
    return net.version, int(net.network_address), int(net.broadcast_address)


def _text(version: int, address: int) -> str:
    return str(ipaddress.IPv4Address(address) if version == 4 else ipaddress.IPv6Address(address))


def _element(net: IpNetwork) -> str:
    """1.2.3.4, 10.0.0.0/24, ::ffff:10.0.3.11 (a mapped address as it was written)."""
    address = net.network_address
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    text = f"::ffff:{mapped}" if mapped is not None else str(address)
    return text if net.prefixlen == net.max_prefixlen else f"{text}/{net.prefixlen}"


@dataclass(frozen=True)
class _Range:
    """A protected network (`label`, as written) and what it is."""

    version: int
    first: int
    last: int
    label: str
    what: str


@dataclass
class Protected:
    """What a block may not touch: single addresses sorted (bisected), networks listed."""

    ranges: list[_Range] = field(default_factory=list)
    _points: dict[int, list[tuple[int, str]]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        for r in self.ranges:
            if r.first == r.last:
                self._points.setdefault(r.version, []).append((r.first, r.what))
        for points in self._points.values():
            points.sort()
        self.ranges = [r for r in self.ranges if r.first != r.last]

    @classmethod
    def from_config(cls, config: Config) -> Protected:
        """Inventory addresses, lockdown `allow_from` networks, the listen address."""
        found: list[tuple[IpNetwork, str]] = []
        for host in config.hosts.values():
            net = _ip(host.address)
            if net is not None:
                found.append((net, f"the address of inventory host {host.name}"))
        for rule in config.rules:
            for j, step in enumerate(rule.steps):
                for part in step.parts:
                    if not isinstance(part.params, FirewallLockdownParams):
                        continue
                    what = (
                        f"the allow_from of firewall_lockdown in rule {rule.name} (step {j + 1}):"
                        " the ops network must keep its access"
                    )
                    found += [(parse_network(cidr), what) for cidr in part.params.allow_from]
        listen = _ip(parse_listen(config.file.server.listen)[0])
        if listen is not None and not listen.network_address.is_unspecified:
            found.append((listen, "the address remediator listens on (server.listen)"))
        return cls([_Range(*_span(net), _element(net), what) for net, what in found])

    def conflict(self, net: IpNetwork) -> str | None:
        """Why blocking `net` would cut off the fleet's own, or None."""
        version, first, last = _span(net)
        shown = _element(net)
        points = self._points.get(version, [])
        hit = bisect_left(points, (first, ""))
        if hit < len(points) and points[hit][0] <= last:
            address, what = points[hit]
            if first == last:
                return f"{shown} is {what}"
            return f"{shown} covers {_text(version, address)}, {what}"
        for r in self.ranges:
            if r.version == version and r.first <= last and first <= r.last:
                where = "is inside" if r.first <= first and last <= r.last else "overlaps"
                return f"{shown} {where} {r.label}, {r.what}"
        return None

    def check(self, nets: Iterable[IpNetwork]) -> None:
        """Raise ActionError naming each protected address a block would drop, and why."""
        found = [c for c in (self.conflict(net) for net in nets) if c is not None]
        if not found:
            return
        more = f"; and {len(found) - MAX_NAMED} more" if len(found) > MAX_NAMED else ""
        raise ActionError(
            "refusing to block (no self-lockout): " + "; ".join(found[:MAX_NAMED]) + more
        )


def _ip(text: str) -> IpNetwork | None:
    """An IP literal as a one-address network; None for a DNS name."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return ipaddress.ip_network(address)
