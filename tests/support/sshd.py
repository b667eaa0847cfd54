"""A throwaway OpenSSH server on 127.0.0.1 for integration tests.

``SshServer.start(workdir)`` generates an ed25519 host key and client key inside
``workdir``, writes an ``sshd_config`` that only accepts public-key logins for
root, starts ``/usr/sbin/sshd -D -e`` on a free loopback port and waits until it
sends its ``SSH-2.0`` banner.  Remote commands run with ``<workdir>/bin`` first
on ``PATH`` and with ``HOME=<workdir>/home`` (Debian's bash sources ``~/.bashrc``
even for ``ssh host cmd``, and root's real dotfiles could reorder ``PATH``), so
``install_recorder("systemctl")`` puts a stand-in there that logs its exact argv
to ``<workdir>/calls/systemctl.jsonl`` for ``calls()`` to read back.

``SshServer.start(workdir, listen_address=..., port=22, netns=NS)`` instead runs
``ip netns exec NS /usr/sbin/sshd`` on that address inside a network namespace
(see tests/support/netns.py); remote commands then act on that namespace.

Must run as root (sshd needs privilege separation and logs in as root).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from support.procs import descendants, process_table

__all__ = ["SSHD_BINARY", "SshServer", "free_port"]

SSHD_BINARY = Path("/usr/sbin/sshd")
_SSH_KEYGEN = "ssh-keygen"
_PRIVSEP_DIR = Path("/run/sshd")
_HOST = "127.0.0.1"
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 5.0
_ZOMBIE_GRACE_S = 3.0
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_RECORDER_TEMPLATE = """\
#!{python} -I
# Stand-in written by tests/support/sshd.py: records argv, then when it ran, then exits {exit_code}.
import json, os, sys, time
def append(path, value):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(value) + "\\n").encode())
    finally:
        os.close(fd)
started = time.time()
append({log!r}, sys.argv[1:])
time.sleep({sleep_s!r})
append({times!r}, [started, time.time(), sys.argv[1:]])
sys.exit({exit_code!r})
"""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _keygen(path: Path, comment: str) -> None:
    """Create an unencrypted ed25519 key pair at ``path`` / ``path.pub``."""
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    subprocess.run(
        [_SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


def _public_key(path: Path) -> str:
    """Return ``"<type> <base64>"`` from an OpenSSH ``.pub`` file, without the comment."""
    fields = path.read_text().split()
    return f"{fields[0]} {fields[1]}"


def _python_for_recorders() -> str:
    """Pick an absolute interpreter path for recorder shebangs."""
    return shutil.which("python3", path="/usr/bin:/bin") or sys.executable


def _kill_tree_leaves_first(pid: int, timeout_s: float) -> None:
    """Terminate all descendants of ``pid`` bottom-up so each is reaped by its live parent.

    sshd's per-connection children call setsid(), so a process-group kill misses
    them; killing the listener first would orphan them to init, and this VM's
    init reaps zombies only lazily, leaving ``[sshd] <defunct>`` visible to pgrep.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        table = process_table()
        tree = descendants(pid, table)
        if not tree:
            return
        parents = {table[child].ppid for child in tree}
        # Live leaves only: zombies are already dead and just await their parent's wait().
        leaves = [child for child in tree if child not in parents and table[child].state != "Z"]
        sig = signal.SIGTERM if time.monotonic() < deadline else signal.SIGKILL
        for leaf in leaves:
            with contextlib.suppress(ProcessLookupError):
                os.kill(leaf, sig)
        time.sleep(0.02)


def _wait_for_orphaned_sshd_zombies(timeout_s: float) -> None:
    """Give init a moment to reap ``[sshd] <defunct>`` processes re-parented to it.

    When a connection dies during pre-auth (e.g. a client rejects the host key),
    sshd's monitor exits before reaping its unprivileged child, which becomes
    init's zombie; this VM's init reaps such zombies only about 1.5 s later.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(
            p.ppid == 1 and p.state == "Z" and p.comm == "sshd" for p in process_table().values()
        ):
            return
        time.sleep(0.05)


@dataclass
class SshServer:
    """A running ``sshd`` bound to 127.0.0.1:``port``, configured from ``workdir``."""

    workdir: Path
    port: int
    host_key: Path
    client_key: Path
    known_hosts: Path
    bin_dir: Path
    calls_dir: Path
    home_dir: Path
    log_path: Path
    address: str = _HOST
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        listen_address: str = _HOST,
        port: int | None = None,
        netns: str | None = None,
        also_listen: tuple[str, ...] = (),
    ) -> SshServer:
        """Generate keys and config in ``workdir``, start sshd and wait for its banner.

        ``port`` defaults to a free loopback port; with ``netns`` sshd runs inside
        that network namespace (``listen_address`` must then be one of its addresses).
        ``also_listen``: more addresses on the same port (say 127.0.0.2): inventory hosts
        with distinct addresses reach this one sshd over distinct connections.
        """
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        bin_dir = workdir / "bin"
        calls_dir = workdir / "calls"
        home_dir = workdir / "home"
        for directory in (bin_dir, calls_dir, home_dir):
            directory.mkdir(exist_ok=True)

        host_key = workdir / "ssh_host_ed25519_key"
        client_key = workdir / "client_ed25519_key"
        _keygen(host_key, "remediator-test-host")
        _keygen(client_key, "remediator-test-client")

        port = free_port() if port is None else port
        authorized_keys = workdir / "authorized_keys"
        client_pub = _public_key(client_key.with_name(client_key.name + ".pub"))
        authorized_keys.write_text(client_pub + "\n")
        known_hosts = workdir / "known_hosts"
        host_pub = _public_key(host_key.with_name(host_key.name + ".pub"))
        known_hosts.write_text(
            "".join(
                f"{_known_hosts_pattern(address, port)} {host_pub}\n"
                for address in (listen_address, *also_listen)
            )
        )

        config = workdir / "sshd_config"
        config.write_text(
            _sshd_config(
                workdir,
                (listen_address, *also_listen),
                port,
                host_key,
                authorized_keys,
                bin_dir,
                home_dir,
            )
        )

        _PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        log_path = workdir / "sshd.log"
        server = cls(
            workdir=workdir,
            port=port,
            host_key=host_key,
            client_key=client_key,
            known_hosts=known_hosts,
            bin_dir=bin_dir,
            calls_dir=calls_dir,
            home_dir=home_dir,
            log_path=log_path,
            address=listen_address,
        )
        # `ip netns exec` execs sshd in place, so the pid stays sshd's for stop().
        in_netns = ["ip", "netns", "exec", netns] if netns else []
        with log_path.open("wb") as log:
            server._proc = subprocess.Popen(
                [*in_netns, str(SSHD_BINARY), "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            server._wait_for_banner()
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_for_banner(self) -> None:
        """Block until sshd answers with an ``SSH-2.0`` banner or raise RuntimeError."""
        assert self._proc is not None
        deadline = time.monotonic() + _START_TIMEOUT_S
        last_error = "no connection attempt made"
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"sshd exited with status {code} before accepting connections:\n"
                    f"{self.stderr_text()}"
                )
            try:
                with socket.create_connection((self.address, self.port), timeout=1.0) as sock:
                    banner = b""
                    while b"\n" not in banner and len(banner) < 256:
                        chunk = sock.recv(256)
                        if not chunk:
                            break
                        banner += chunk
                if banner.startswith(b"SSH-2.0"):
                    return
                last_error = f"unexpected banner {banner!r}"
            except OSError as exc:
                last_error = repr(exc)
            time.sleep(0.05)
        raise RuntimeError(
            f"sshd did not send an SSH-2.0 banner on {self.address}:{self.port} within "
            f"{_START_TIMEOUT_S:.0f} s ({last_error}); sshd stderr:\n{self.stderr_text()}"
        )

    def pause(self) -> None:
        """SIGSTOP the listener: connections queue in the backlog and get no banner."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the listener."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def stderr_text(self) -> str:
        """Return everything sshd has logged to stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def install_recorder(self, name: str, exit_code: int = 0, sleep_s: float = 0) -> Path:
        """Put an executable stand-in ``name`` on the remote PATH that logs its argv."""
        if not name or "/" in name:
            raise ValueError(f"recorder name must be a bare command name, got {name!r}")
        script = self.bin_dir / name
        script.write_text(
            _RECORDER_TEMPLATE.format(
                python=_python_for_recorders(),
                log=str(self.calls_dir / f"{name}.jsonl"),
                times=str(self.calls_dir / f"{name}.times.jsonl"),
                sleep_s=float(sleep_s),
                exit_code=int(exit_code),
            )
        )
        script.chmod(0o755)
        return script

    def calls(self, name: str) -> list[list[str]]:
        """Return the argv lists (without argv[0]) recorded for ``name``, oldest first."""
        path = self.calls_dir / f"{name}.jsonl"
        if not path.exists():
            return []
        result: list[list[str]] = []
        for line in path.read_text().splitlines():
            if line.strip():
                argv = json.loads(line)
                result.append([str(arg) for arg in argv])
        return result

    def restarts(self) -> int:
        """How many `systemctl restart` commands ran."""
        return sum(1 for argv in self.calls("systemctl") if argv[0] == "restart")

    def spans(self, name: str, first_arg: str | None = None) -> list[tuple[float, float]]:
        """(start, end) wall-clock times of the finished calls of ``name`` (only those whose
        first argument is ``first_arg``, if given), by start."""
        path = self.calls_dir / f"{name}.times.jsonl"
        if not path.exists():
            return []
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return sorted(
            (float(start), float(end))
            for start, end, argv in lines
            if first_arg is None or argv[:1] == [first_arg]
        )

    def clear_calls(self, name: str | None = None) -> None:
        """Forget recorded calls for ``name`` (or for every recorder)."""
        if name:
            targets = [self.calls_dir / f"{name}.jsonl", self.calls_dir / f"{name}.times.jsonl"]
        else:
            targets = list(self.calls_dir.glob("*.jsonl"))
        for path in targets:
            path.unlink(missing_ok=True)

    def stop(self) -> None:
        """Terminate sshd and every session process it spawned, then wait for them."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a paused server could not act on SIGTERM
            _kill_tree_leaves_first(proc.pid, _STOP_TIMEOUT_S)
            proc.terminate()
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _wait_for_orphaned_sshd_zombies(_ZOMBIE_GRACE_S)

    def __enter__(self) -> SshServer:
        """Return the already-running server."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()


def _known_hosts_pattern(address: str, port: int) -> str:
    """The known_hosts host pattern OpenSSH and asyncssh look up for ``address:port``."""
    return address if port == 22 else f"[{address}]:{port}"


def _sshd_config(
    workdir: Path,
    addresses: tuple[str, ...],
    port: int,
    host_key: Path,
    authorized_keys: Path,
    bin_dir: Path,
    home_dir: Path,
) -> str:
    """Render the sshd_config text for a key-only root server on ``addresses``, ``port``."""
    # SetEnv is applied after sshd's own PATH/HOME defaults, so it wins.  HOME is
    # redirected because Debian's bash sources ~/.bashrc for `ssh host cmd`, and
    # /root/.bashrc may prepend to PATH (and slows every command down).
    listen = "\n".join(f"ListenAddress {address}" for address in addresses)
    return f"""\
# Generated by tests/support/sshd.py
Port {port}
{listen}
AddressFamily inet
HostKey "{host_key}"
PidFile "{workdir / "sshd.pid"}"
AuthorizedKeysFile "{authorized_keys}"
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers root
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
MaxStartups 200
MaxSessions 100
LogLevel VERBOSE
SetEnv "PATH={bin_dir}:{_SYSTEM_PATH}" "HOME={home_dir}"
"""
