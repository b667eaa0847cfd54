"""Hot reload of rules/, policies/, the inventory and dry_run: on SIGHUP and when files change.

A new set is loaded and checked in full (as `remediator check` does) off the event loop,
then swapped in at once. A set with any problem is rejected: each problem is logged as
`file:line: path: message`, `remediator_config_last_reload_successful` drops to 0, and
the last good set keeps running. Sections that need a restart (server, store, ssh,
slack, email, notifications, record, alertmanager) are not swapped; a change to them is
logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import watchfiles

from remediator import heap
from remediator.config import load_config
from remediator.config.loader import YAML_SUFFIXES
from remediator.config.models import Config
from remediator.deadletters import describe
from remediator.engine.context import EngineContext
from remediator.errors import ConfigError, StoreError
from remediator.metrics import Metrics
from remediator.store.events import ConfigReloaded

log = logging.getLogger(__name__)
RESTART_ONLY = (
    "server",
    "store",
    "rules",
    "policies",
    "ssh",
    "slack",
    "email",
    "notifications",
    "record",
    "alertmanager",
)


def merge(running: Config, loaded: Config) -> tuple[Config, list[str]]:
    """What a reload may change taken from `loaded`; the rest kept; names needing a restart."""
    restart = [
        key for key in RESTART_ONLY if getattr(running.file, key) != getattr(loaded.file, key)
    ]
    file = running.file.model_copy(
        update={"inventory": loaded.file.inventory, "dry_run": loaded.file.dry_run}
    )
    merged = running.model_copy(
        update={
            "file": file,
            "rules": loaded.rules,
            "rule_files": loaded.rule_files,
            "policies": loaded.policies,
            "hosts": loaded.hosts,
        }
    )
    return merged, restart


class Reloader:
    """Owns the reload of one daemon's config."""

    def __init__(
        self,
        ctx: EngineContext,
        metrics: Metrics,
        clock: Callable[[], float],
        replica: str = "",
    ) -> None:
        self.ctx = ctx
        self.metrics = metrics
        self.clock = clock
        self.replica = replica  # whose reload the audit row records
        self._lock = asyncio.Lock()
        self._digests = file_digests(self.files())
        metrics.reload_time.set(clock())

    async def reload(self, why: str) -> bool:
        """Load, check and swap in the config files; False (and the old set kept) on problems."""
        async with self._lock:
            path = self.ctx.config.path
            try:
                loaded = await asyncio.to_thread(load_config, path)
            except ConfigError as exc:
                self._failed(why, [p.format() for p in exc.problems])
                return False
            except Exception as exc:  # an unreadable file must not stop the daemon
                self.metrics.poison_items.labels(loop="reload").inc()
                self._failed(why, [f"{path}: {describe(exc)}"])
                return False
            previous = self.ctx.config_hash
            try:
                merged, restart = merge(self.ctx.config, loaded)
                self.ctx.swap_config(merged)
            except Exception as exc:  # a bug: the old set keeps running, on record
                self.metrics.poison_items.labels(loop="reload").inc()
                log.exception("reload: swapping in the new config failed")
                self._failed(why, [f"{path}: internal error: {describe(exc)}"])
                return False
            heap.settle()
            self.metrics.reload_ok.set(1)
            self.metrics.reload_time.set(self.clock())
            self.metrics.reloads.labels(result="success").inc()
            log.info(
                "config reloaded",
                extra={"why": why, "rules": len(merged.rules), "hosts": len(merged.hosts)},
            )
            if restart:
                log.warning(
                    "config sections changed that only a restart applies; still running the old",
                    extra={"sections": restart},
                )
            await self._record(why, previous)  # first: the file watch compares its digests
            await self._wake_held()
            return True

    async def _wake_held(self) -> None:
        """Held steps look again under the new policies (a raised `max_unavailable` or
        concurrency limit, a host moved out of a group): nothing else would wake them
        before their hold_timeout. Oldest holds first."""
        try:
            async with self.ctx.store.write() as tx:
                await tx.wake_held(None, self.clock())
        except StoreError as exc:  # the reload stands; they are looked at by their timeout
            log.error("reload: held steps not woken", extra={"error": str(exc)})
        self.ctx.work_ready.set()

    async def _record(self, why: str, previous: str) -> None:
        """An audit row of the reload: which files changed and the hash now running (its
        failure is logged: the reload stands, and the file watch goes on)."""
        try:
            await self._write_record(why, previous)
        except Exception:
            log.exception("reload not recorded in the audit trail")

    async def _write_record(self, why: str, previous: str) -> None:
        digests = await asyncio.to_thread(file_digests, self.files())
        changed = sorted(
            name
            for name in digests.keys() | self._digests.keys()
            if digests.get(name) != self._digests.get(name)
        )
        self._digests = digests
        entry = ConfigReloaded(why, changed, self.ctx.config_hash, previous, self.replica)
        try:
            async with self.ctx.store.write() as tx:
                await tx.audit(None, entry, self.clock())
        except StoreError as exc:  # the reload stands; only its record is missing
            log.error("reload not recorded in the audit trail", extra={"error": str(exc)})

    def files(self) -> list[Path]:
        """remediator.yml and the YAML files directly in rules/ and policies/."""
        found = [self.ctx.config.path]
        for folder in self.watched():
            if folder.is_dir():
                found += sorted(p for p in folder.iterdir() if p.suffix in YAML_SUFFIXES)
            else:
                found.append(folder)
        return found

    def _failed(self, why: str, problems: list[str]) -> None:
        self.metrics.reload_ok.set(0)
        self.metrics.reloads.labels(result="failure").inc()
        for problem in problems:
            log.error("reload rejected: %s", problem)
        log.error(
            "config reload rejected; the last good rules and policies keep running",
            extra={"why": why, "problems": len(problems)},
        )

    def watched(self) -> list[Path]:
        """The folders whose YAML files trigger a reload."""
        file = self.ctx.config.file
        names = [file.rules, *([file.policies] if file.policies else [])]
        return [self.ctx.config.resolve_path(n) for n in names]

    async def watch(self, stopping: asyncio.Event, debounce_ms: int = 400) -> None:
        """Reload when a YAML file directly in rules/ or policies/ changes, or when a
        Kubernetes ConfigMap volume holding them is updated (its `..data` symlink swaps)."""
        folders = [f.resolve() for f in self.watched() if f.is_dir()]
        config_file = self.ctx.config.path.resolve()
        config_dir = config_file.parent

        def relevant(_: watchfiles.Change, name: str) -> bool:
            path = Path(name)
            if path.name == "..data" or path == config_file:
                return True
            return path.parent in folders and path.suffix in YAML_SUFFIXES

        # Not recursive: the config's folder may hold the store, a venv, the repo.
        paths = [*folders, *([config_dir] if config_dir not in folders else [])]
        try:
            async for changes in watchfiles.awatch(
                *paths,
                watch_filter=relevant,
                stop_event=stopping,
                debounce=debounce_ms,
                recursive=False,
            ):
                names = sorted({Path(name).name for _, name in changes})
                await self.reload(f"changed: {', '.join(names)}")
        except Exception as exc:  # e.g. the inotify watch limit: keep serving, SIGHUP works
            log.error(
                "watching rules/ and policies/ failed; reload with SIGHUP",
                extra={"error": str(exc)},
            )


def file_digests(paths: list[Path]) -> dict[str, str]:
    """SHA-256 of each readable file, by path (a file that cannot be read is left out)."""
    digests = {}
    for path in paths:
        try:
            digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            continue
    return digests
