"""Replicas visible: each daemon heartbeats in the store, with the hash of its rules.

Several replicas may share one PostgreSQL store, each loading its own files. Every few
seconds each one writes its row in the `replicas` table (who, since when, which version,
the hash of its rules, policies and inventory, where it listens); GET /api/replicas and
`remediator replicas` list those seen in the last minute. A replica whose hash differs
from a peer's is running other rules: `remediator_config_hash{hash}` shows it per
replica, and each replica logs a warning when it first sees a peer on another hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
from collections.abc import Callable

from remediator import __version__
from remediator.clock import Clock
from remediator.config.models import Config
from remediator.errors import StoreError
from remediator.store.base import Store
from remediator.store.records import Replica

log = logging.getLogger(__name__)
HEARTBEAT_S = 5.0
SEEN_WITHIN_S = 60.0  # a replica silent this long is not listed
HASH_CHARS = 16


def config_hash(config: Config) -> str:
    """A short hash of what decides behaviour: rules, policies and the inventory."""
    shape = {
        "rules": [r.model_dump(mode="json") for r in config.rules],
        "policies": config.policies.model_dump(mode="json"),
        "hosts": {name: h.model_dump(mode="json") for name, h in config.hosts.items()},
        "dry_run": config.file.dry_run,
    }
    raw = json.dumps(shape, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:HASH_CHARS]


def process_name() -> str:
    """hostname:pid, how an operator finds the process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """Writes this replica's row every `every_s`; warns once per peer on another hash."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        replica_id: str,
        listen: str,
        current_hash: Callable[[], str],
        *,
        every_s: float = HEARTBEAT_S,
    ) -> None:
        self.store = store
        self.clock = clock
        self.replica_id = replica_id
        self.listen = listen
        self.current_hash = current_hash  # the running config's (it changes on reload)
        self.every_s = every_s
        self.started_at = clock.now()
        self._warned: dict[str, str] = {}  # peer id -> the differing hash warned about

    async def beat(self) -> list[Replica]:
        """Write this replica's row; return every replica seen within a minute."""
        now = self.clock.now()
        me = Replica(
            id=self.replica_id,
            name=process_name(),
            started_at=self.started_at,
            last_seen_at=now,
            version=__version__,
            config_hash=self.current_hash(),
            listen=self.listen,
        )
        async with self.store.write() as tx:
            await tx.heartbeat(me)
            return await tx.replicas_seen_since(now - SEEN_WITHIN_S)

    async def once(self) -> list[Replica]:
        """Beat, and warn about peers on another hash; return the replicas seen."""
        seen = await self.beat()
        self._compare(seen)
        return seen

    async def loop(self, stopping: asyncio.Event) -> None:
        """Beat now and every `every_s` until `stopping`; a store error waits for the next."""
        while not stopping.is_set():
            try:
                await self.once()
            except StoreError as exc:
                log.warning("replica heartbeat failed", extra={"error": str(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.every_s)

    def _compare(self, seen: list[Replica]) -> None:
        mine = self.current_hash()
        for peer in seen:
            if peer.id == self.replica_id or peer.config_hash == mine:
                self._warned.pop(peer.id, None)
                continue
            if self._warned.get(peer.id) != peer.config_hash:
                self._warned[peer.id] = peer.config_hash
                log.warning(
                    "a replica runs other rules, policies or inventory than this one",
                    extra={
                        "replica": peer.name,
                        "its_hash": peer.config_hash,
                        "this_hash": mine,
                    },
                )


async def readiness(store: Store, clock: Clock, current_hash: str) -> dict[str, object]:
    """What /readyz adds: this replica's hash and each replica's (by id: /readyz needs no
    token, so no host names or addresses)."""
    async with store.read() as tx:
        seen = await tx.replicas_seen_since(clock.now() - SEEN_WITHIN_S)
    return {"config_hash": current_hash, "replicas": {r.id: r.config_hash for r in seen}}
