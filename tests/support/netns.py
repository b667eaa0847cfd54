"""A throwaway "host" in a Linux network namespace, for firewall integration tests.

``with namespace_host(workdir) as host:`` makes namespace ``rmt-<pid>-<hex>``
joined to the root namespace by a veth pair on 10.213.X.0/24: the root side
holds ``.1`` (the primary source of root-namespace traffic) and ``.3`` (a
second client), the namespace side ``.2``.  Inside it runs a real sshd on ``.2:22`` (via
tests/support/sshd.py, with no stand-ins on its PATH, so remote ``nft`` is the
real /usr/sbin/nft acting on the namespace only) and a TCP listener on
``.2:8080`` that answers each connection with one byte.  ``connect`` and
``ssh_login`` then prove reachability with real connections from a chosen
source address.

X is claimed atomically by creating the root-side veth ``rmtv<X>``: a second
test process picking the same X gets "File exists" and tries another.  Closing
kills the processes and deletes the namespace and veth even if a test failed;
no nft command ever runs in the root namespace.

Must run as root; anything missing is a ``NetnsError``, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from remediator.actions.sshpool import SshSettings
from remediator.config.models import Host
from support.sshd import SshServer

__all__ = ["LISTENER_PORT", "SSH_PORT", "NetnsError", "NetnsHost", "namespace_host"]

LISTENER_PORT = 8080
SSH_PORT = 22
_PREFIX = "10.213"
_NAME_PREFIX = "rmt-"
_LISTENER_READY_S = 10.0
_STOP_TIMEOUT_S = 5.0

# Serves LISTENER_PORT inside the namespace: one byte per connection, then close.
_LISTENER_SCRIPT = """\
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(128)
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    try:
        conn.sendall(b"!")
    except OSError:
        pass
    conn.close()
"""


class NetnsError(RuntimeError):
    """The namespace host could not be built (not root, no `ip netns`, ...)."""


def _ip(*args: str) -> str:
    """Run ``ip ARGS`` and return stdout; raise NetnsError with its stderr on failure."""
    try:
        proc = subprocess.run(
            ["ip", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise NetnsError("iproute2's `ip` is not installed (apt-get install iproute2)") from None
    if proc.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def _subnet_in_use(x: int) -> bool:
    """True if any root-namespace address or route already mentions 10.213.X.0/24."""
    listing = _ip("-o", "-4", "addr", "show") + _ip("-4", "route", "show", "table", "all")
    return re.search(rf"\b{re.escape(_PREFIX)}\.{x}\.\d", listing) is not None


def _sweep_stale_namespaces() -> None:
    """Delete ``rmt-<pid>-*`` namespaces whose creating test process is gone (crashed runs)."""
    for line in _ip("netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        match = re.fullmatch(rf"{_NAME_PREFIX}(\d+)-[0-9a-f]+", name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            with contextlib.suppress(NetnsError):
                _ip("netns", "del", name)


def _candidate_subnets() -> list[int]:
    """Every usable X, starting from one derived from our pid so parallel runs spread out."""
    start = os.getpid() % 250 + 1
    return [(start + i) % 250 + 1 for i in range(250)]


@dataclass
class NetnsHost:
    """A namespace running sshd and a one-byte TCP listener, reached over a veth pair."""

    name: str
    subnet: int
    veth: str
    workdir: Path
    sshd: SshServer | None = None
    _listener: subprocess.Popen[str] | None = field(default=None, repr=False)
    _has_namespace: bool = field(default=False, repr=False)

    @property
    def address(self) -> str:
        """The namespace's own address (sshd and the listener)."""
        return f"{_PREFIX}.{self.subnet}.2"

    @property
    def client(self) -> str:
        """The root side's primary address, the default source of root-namespace traffic."""
        return f"{_PREFIX}.{self.subnet}.1"

    @property
    def other_client(self) -> str:
        """A second root-side address, used only when bound explicitly."""
        return f"{_PREFIX}.{self.subnet}.3"

    @classmethod
    def create(cls, workdir: Path) -> NetnsHost:
        """Build the namespace, veth, sshd and listener; undo everything on any failure."""
        if os.geteuid() != 0:
            raise NetnsError(
                "the network-namespace host needs root (ip netns, veth, sshd); "
                f"running as uid {os.geteuid()}"
            )
        _sweep_stale_namespaces()
        name = f"{_NAME_PREFIX}{os.getpid()}-{random.getrandbits(24):06x}"
        host = cls(name=name, subnet=0, veth="", workdir=Path(workdir))
        try:
            _ip("netns", "add", name)
            host._has_namespace = True
            host._claim_subnet()
            host._configure_addresses()
            host.sshd = SshServer.start(
                host.workdir / "sshd", listen_address=host.address, port=SSH_PORT, netns=name
            )
            host._start_listener()
        except BaseException:
            host.close()
            raise
        return host

    def _claim_subnet(self) -> None:
        """Create veth ``rmtv<X>`` for the first free X; the name makes the claim atomic."""
        for x in _candidate_subnets():
            if _subnet_in_use(x):
                continue
            veth = f"rmtv{x}"
            try:
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", self.name)
            except NetnsError as exc:
                if "File exists" in str(exc):
                    continue
                raise
            self.subnet, self.veth = x, veth
            return
        raise NetnsError(f"no free {_PREFIX}.X.0/24 subnet for a test namespace")

    def _configure_addresses(self) -> None:
        """Root side .1 and .3, namespace side .2, every link up."""
        net = f"{_PREFIX}.{self.subnet}"
        _ip("addr", "add", f"{net}.1/24", "dev", self.veth)
        _ip("addr", "add", f"{net}.3/24", "dev", self.veth)
        _ip("link", "set", self.veth, "up")
        _ip("-n", self.name, "addr", "add", f"{net}.2/24", "dev", "eth0")
        _ip("-n", self.name, "link", "set", "eth0", "up")
        _ip("-n", self.name, "link", "set", "lo", "up")

    def _start_listener(self) -> None:
        """Start the one-byte TCP server inside the namespace and wait for it to listen."""
        self._listener = subprocess.Popen(
            [*self.exec_prefix(), sys.executable, "-I", "-c", _LISTENER_SCRIPT, *self._listen_on()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._listener.stdout is not None
        ready, _, _ = select.select([self._listener.stdout], [], [], _LISTENER_READY_S)
        line = self._listener.stdout.readline() if ready else ""
        if line.strip() != "ready":
            self._listener.kill()
            _, err = self._listener.communicate(timeout=_STOP_TIMEOUT_S)
            raise NetnsError(f"TCP listener in {self.name} did not start: {err.strip()}")

    def _listen_on(self) -> list[str]:
        """The listener script's argv: address and port."""
        return [self.address, str(LISTENER_PORT)]

    def exec_prefix(self) -> list[str]:
        """argv prefix that runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def nft(self, *args: str) -> str:
        """Run the real ``nft ARGS`` inside the namespace (never the root one); return stdout."""
        proc = subprocess.run(
            [*self.exec_prefix(), "/usr/sbin/nft", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise NetnsError(f"nft {' '.join(args)} in {self.name}: {proc.stderr.strip()}")
        return proc.stdout

    def ruleset(self) -> str:
        """The namespace's current ``nft list ruleset``."""
        return self.nft("list", "ruleset")

    def connect(self, port: int, source: str, timeout_s: float = 1.0) -> bool:
        """True if a TCP connection from ``source`` to ``port`` got a first byte in time."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.bind((source, 0))
            try:
                sock.connect((self.address, port))
                return sock.recv(1) != b""
            except OSError:  # timed out (dropped), refused or unreachable (rejected)
                return False

    async def ssh_login(self, source: str, timeout_s: float = 3.0) -> bool:
        """True if a fresh SSH login from ``source`` runs ``true``; False if the network says no.

        Host-key and authentication errors are raised, not reported as False, so a
        broken harness cannot pass for a firewall that blocks SSH.
        """
        sshd = self._require_sshd()
        try:
            async with asyncssh.connect(
                self.address,
                port=SSH_PORT,
                username="root",
                client_keys=[str(sshd.client_key)],
                known_hosts=str(sshd.known_hosts),
                local_addr=(source, 0),
                connect_timeout=timeout_s,
                agent_path=None,
                config=[],
            ) as conn:
                result = await conn.run("true", check=False, timeout=timeout_s)
        except OSError:  # timed out (dropped), refused or unreachable (rejected)
            return False
        return result.exit_status == 0

    def target(self, name: str = "fw1") -> Host:
        """The inventory host actions act on: root@<namespace address>:22."""
        return Host(name=name, address=self.address, port=SSH_PORT, user="root", groups=())

    def ssh_settings(self) -> SshSettings:
        """Pool settings with this sshd's client key and known_hosts, no retries."""
        sshd = self._require_sshd()
        return SshSettings(
            known_hosts=sshd.known_hosts,
            client_keys=(sshd.client_key,),
            connect_timeout_s=5.0,
            command_timeout_s=20.0,
            connect_attempts=1,
        )

    def _require_sshd(self) -> SshServer:
        if self.sshd is None:
            raise NetnsError(f"sshd in {self.name} is not running")
        return self.sshd

    def close(self) -> None:
        """Kill the listener and sshd, then delete the namespace and veth; never raises."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                listener.communicate(timeout=_STOP_TIMEOUT_S)
        sshd, self.sshd = self.sshd, None
        if sshd is not None:
            sshd.stop()
        # Deleting one veth end deletes its peer at once; a namespace is only freed
        # when its last process exits, so the veth is not left to that.
        if self.veth:
            with contextlib.suppress(NetnsError):
                _ip("link", "del", self.veth)
        if self._has_namespace:
            self._has_namespace = False
            with contextlib.suppress(NetnsError):
                _ip("netns", "del", self.name)


@contextlib.contextmanager
def namespace_host(workdir: Path) -> Iterator[NetnsHost]:
    """A ``NetnsHost`` built in ``workdir`` for the ``with`` block, torn down even on failure."""
    host = NetnsHost.create(workdir)
    try:
        yield host
    finally:
        host.close()
