"""Several `remediator serve` replicas on one PostgreSQL database, as the HA tests run them:
each its own workdir and port, the same rules, a short lease so takeovers fit in a test."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.daemon import RESTART_NODE_RULE, Daemon, write_config
from support.sshd import SshServer

LEASE_S = 3.0  # store.lease of the replicas: a dead one's work is taken this long after
# The node-restart rule, its unit named after the target: the host's record says where.
PER_TARGET_RULE = RESTART_NODE_RULE.replace(
    "{service: kaldrix-node}", '{service: "kaldrix-node@{{ labels.instance | host }}"}'
)
# A rule whose step only notifies, for engine-level replica tests (no SSH).
NOTIFY_RULE = """\
rules:
  - name: restart
    match: [alertname = NodeDown]
    steps:
      - action: notify
        params: {message: down}
"""
# The same step asking approval of one of APPROVERS (no SSH needed to ask).
APPROVED_RULE = NOTIFY_RULE.replace(
    "params: {message: down}", "params: {message: down}\n        approval: required"
)
APPROVERS = (
    "approvals:\n  default:\n    approvers: [U1, U2, alice]\n"
    "    channel: '#ops-approvals'\n    timeout: 15m\n    on_timeout: escalate\n"
)


def pg_store(url: str, lease_s: float = LEASE_S) -> str:
    """The `store:` value for a PostgreSQL database with a short lease."""
    return f"{{url: '{url}', lease: {lease_s}s}}"


def node_hosts(sshd: SshServer, count: int) -> dict[str, dict[str, Any]]:
    """web1..webN, all on the one recording sshd (commands name their target)."""
    return {
        f"web{n}": {"address": "127.0.0.1", "port": sshd.port, "groups": ["web"]}
        for n in range(1, count + 1)
    }


@dataclass
class Replicas:
    """Named replicas sharing one database; `start`/`kill9` by name."""

    by_name: dict[str, Daemon]

    @classmethod
    def configure(
        cls, root: Path, names: tuple[str, ...], rules: str, *, url: str, **config: Any
    ) -> Replicas:
        """Write one config per replica (same rules, the database at `url`)."""
        daemons = {
            name: Daemon.for_config(write_config(root / name, rules, store=pg_store(url), **config))
            for name in names
        }
        return cls(daemons)

    def __getitem__(self, name: str) -> Daemon:
        return self.by_name[name]

    def start(self, *names: str) -> None:
        """Start the named replicas (every one when none is named)."""
        for name in names or tuple(self.by_name):
            self.by_name[name].start()

    def stop(self) -> None:
        """SIGTERM whichever still run."""
        for d in self.by_name.values():
            d.stop()

    def logs(self) -> str:
        """Every replica's log, headed by its name: what a failure shows."""
        return "\n".join(f"--- {name}\n{d.logs()[-6000:]}" for name, d in self.by_name.items())

    def alive(self) -> list[Daemon]:
        """The replicas whose process runs."""
        return [d for d in self.by_name.values() if d.proc is not None and d.proc.poll() is None]


def incidents(d: Daemon, limit: int = 500) -> list[dict[str, Any]]:
    """Every incident the replica's API lists."""
    found: list[dict[str, Any]] = d.api(f"/api/incidents?limit={limit}")["incidents"]
    return found


def events(d: Daemon, incident_id: int) -> list[dict[str, Any]]:
    """An incident's audit rows through the API (event, at, detail)."""
    rows: list[dict[str, Any]] = d.api(f"/api/incidents/{incident_id}")["audit"]
    return rows


def commands_per_target(sshd: SshServer) -> dict[str, int]:
    """`systemctl restart kaldrix-node@TARGET` counted per TARGET, from the host's record."""
    counts: dict[str, int] = {}
    for argv in sshd.calls("systemctl"):
        if argv[0] == "restart":
            target = argv[1].rpartition("@")[2]
            counts[target] = counts.get(target, 0) + 1
    return counts


def wait_until(what: str, check: Any, timeout_s: float, every_s: float = 0.1) -> Any:
    """Poll `check` until truthy (errors of a replica being killed count as not yet)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            if value := check():
                return value
        except (OSError, AssertionError, LookupError, json.JSONDecodeError) as exc:
            last = exc
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last error: {last})")
