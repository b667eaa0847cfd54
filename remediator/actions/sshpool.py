"""One reused SSH connection per host; strict host keys; retries for connection errors only."""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from remediator.actions.base import clip_output
from remediator.config.models import Host
from remediator.errors import AuthError, ConnectError, HostKeyError, OutcomeUnknown

log = logging.getLogger(__name__)


def command_line(argv: Sequence[str]) -> str:
    """What the remote shell gets: each element shell-quoted (shlex.join), never re-split."""
    return shlex.join(argv)


@dataclass(frozen=True)
class SshSettings:
    """Resolved `ssh:` config."""

    known_hosts: Path
    client_keys: tuple[Path, ...]
    connect_timeout_s: float
    command_timeout_s: float
    connect_attempts: int
    retry_wait_s: float = 0.5


@dataclass(frozen=True)
class CommandResult:
    """A finished remote command."""

    exit_status: int
    stdout: str
    stderr: str


class SshPool:
    """Connections keyed by (address, port, user), opened on first use."""

    def __init__(self, settings: SshSettings) -> None:
        self.settings = settings
        self._conns: dict[tuple[str, int, str], asyncssh.SSHClientConnection] = {}
        self._locks: dict[tuple[str, int, str], asyncio.Lock] = {}

    async def connection(self, host: Host) -> asyncssh.SSHClientConnection:
        """A live connection to `host`, reusing the last one; retries ConnectError only."""
        key = (host.address, host.port, host.user)
        async with self._locks.setdefault(key, asyncio.Lock()):
            conn = self._conns.get(key)
            if conn is not None and not conn.is_closed():
                return conn
            retrying = AsyncRetrying(
                retry=retry_if_exception_type(ConnectError),
                stop=stop_after_attempt(self.settings.connect_attempts),
                wait=wait_exponential(multiplier=self.settings.retry_wait_s, max=10),
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    conn = await self._connect(host)
            assert conn is not None
            self._conns[key] = conn
            return conn

    async def _connect(self, host: Host) -> asyncssh.SSHClientConnection:
        s = self.settings
        where = f"{host.name} ({host.user}@{host.address}:{host.port})"
        try:
            return await asyncssh.connect(
                host.address,
                port=host.port,
                username=host.user,
                client_keys=[str(k) for k in s.client_keys] or None,
                known_hosts=str(s.known_hosts),
                connect_timeout=s.connect_timeout_s,
                agent_path=None,
                config=[],
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostKeyError(
                f"{where}: host key not verified against {s.known_hosts} ({exc.reason}); "
                f"add the host's key there (ssh-keyscan -p {host.port} {host.address}), "
                "after checking it out of band"
            ) from None
        except asyncssh.PermissionDenied as exc:
            raise AuthError(f"{where}: authentication refused ({exc.reason})") from None
        except (OSError, TimeoutError, asyncssh.Error) as exc:
            raise ConnectError(f"{where}: cannot connect: {exc}") from None

    async def run(
        self,
        conn: asyncssh.SSHClientConnection,
        argv: Sequence[str],
        host: Host,
        input: str | None = None,
    ) -> CommandResult:
        """Run argv, each element shell-quoted, `input` on stdin; a non-zero exit is a result."""
        command = command_line(argv)
        try:
            proc = await conn.run(
                command, check=False, timeout=self.settings.command_timeout_s, input=input
            )
        except asyncssh.TimeoutError:
            raise OutcomeUnknown(
                f"{host.name}: `{command}` did not finish within "
                f"{self.settings.command_timeout_s:g}s"
            ) from None
        except (OSError, asyncssh.Error) as exc:
            # The command may have started: report it as sent, never retry it.
            raise OutcomeUnknown(
                f"{host.name}: connection lost while running `{command}`: {exc}"
            ) from None
        status = proc.exit_status if proc.exit_status is not None else -1
        stdout, stderr = str(proc.stdout or ""), str(proc.stderr or "")
        return CommandResult(status, clip_output(stdout), clip_output(stderr))

    async def close(self) -> None:
        """Close every connection."""
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            conn.close()
        for conn in conns:
            await conn.wait_closed()
