"""A throw-away PostgreSQL cluster for the tests: Debian's binaries, a temporary folder.

The tests run as root and PostgreSQL refuses to, so the cluster belongs to the `postgres`
system user the Debian package creates: initdb into a folder that user owns, a free port
on 127.0.0.1, the unix socket in the same folder, fsync off (a crashed test machine loses
nothing worth keeping) unless started `durable` (the benchmark measures commits as a
production server makes them). Each test gets its own database, from an empty template.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from support.sshd import free_port

HOST = "127.0.0.1"
SUPERUSER = "postgres"
PASSWORD = "test-password"
START_TIMEOUT_S = 30.0


def _bindir() -> Path:
    """The newest installed server's binaries, or a message saying how to install them."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): the store "
            "tests start their own cluster; run `make system-deps` (Debian's postgresql)"
        )
    return Path(found[-1]).parent


def _user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise RuntimeError(
            f"no {SUPERUSER!r} system user to run the test cluster as (tests run as root and "
            "PostgreSQL refuses root); Debian's postgresql package creates it: run "
            "`make system-deps`"
        ) from None


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", SUPERUSER, "--", *argv] if os.geteuid() == 0 else argv


def _give_to_postgres(path: Path) -> None:
    """As root, hand `path` to the cluster's user; otherwise the cluster runs as us."""
    if os.geteuid() == 0:
        user = _user()
        os.chown(path, user.pw_uid, user.pw_gid)


@dataclass
class PostgresCluster:
    """One running cluster; `database()` makes a fresh empty database on it."""

    bindir: Path
    root: Path
    port: int
    durable: bool = False  # fsync and synchronous commits on, as PostgreSQL ships
    _names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def url(self, database: str, *, password: bool = True) -> str:
        """A `postgresql://` URL for `database` (with the superuser's password unless not)."""
        auth = f"{SUPERUSER}:{PASSWORD}" if password else SUPERUSER
        return f"postgresql://{auth}@{HOST}:{self.port}/{database}"

    def psql(self, database: str, sql: str) -> str:
        """Run `sql` through psql over TCP; its unaligned output."""
        argv = [str(self.bindir / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        argv += ["-h", HOST, "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql]
        env = {**os.environ, "PGPASSWORD": PASSWORD, "PGCONNECT_TIMEOUT": "5"}
        res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
        if res.returncode != 0:
            raise RuntimeError(f"psql {sql!r} on {database}: {res.stderr.strip()}")
        return res.stdout.strip()

    def database(self) -> str:
        """Create a new empty database; its name."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.psql("postgres", f'CREATE DATABASE "{name}" TEMPLATE template0')
        return name

    def databases(self) -> set[str]:
        """Names of the databases on the cluster."""
        return set(self.psql("postgres", "SELECT datname FROM pg_database").split("\n"))

    def drop(self, name: str) -> None:
        """Drop a test's database, closing whatever connections a test left open."""
        self.psql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are ended), keeping its data."""
        self._ctl("-m", "fast", "-w", "stop")

    def restart(self) -> None:
        """Start the server stopped by `stop` again, on the same port."""
        self._ctl("-l", str(self.root / "server.log"), "-w", "-t", "30", "start")
        self._wait_ready()

    def _ctl(self, *args: str) -> None:
        argv = _as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args])
        res = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT_S + 10)
        if res.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl {args[-1]}: {res.stderr.strip()}\n{log}")

    @classmethod
    @contextmanager
    def start(cls, *, durable: bool = False) -> Iterator[PostgresCluster]:
        """initdb, start, yield; stop and delete on the way out."""
        bindir = _bindir()
        # In /tmp, not $TMPDIR: the postgres user must reach it (root's TMPDIR may be private).
        root = Path(tempfile.mkdtemp(prefix="remediator-pg-", dir="/tmp"))
        _give_to_postgres(root)
        os.chmod(root, 0o700)
        cluster = cls(bindir, root, free_port(), durable)
        try:
            cluster._init()
            cluster.restart()
            yield cluster
        finally:
            with suppress(Exception):
                cluster._ctl("-m", "immediate", "-w", "stop")
            shutil.rmtree(root, ignore_errors=True)

    def _init(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        _give_to_postgres(pwfile)
        argv = [str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", SUPERUSER]
        argv += ["--pwfile", str(pwfile), "-A", "scram-sha-256", "-E", "UTF8", "--no-locale"]
        res = subprocess.run(_as_postgres(argv), capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"initdb {self.datadir}: {res.stderr.strip()}")
        conf = (
            f"listen_addresses = '{HOST}'\nport = {self.port}\n"
            f"unix_socket_directories = '{self.root}'\n"
            "max_connections = 100\nshared_buffers = 32MB\n"
        )
        if not self.durable:
            conf += "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
        with (self.datadir / "postgresql.conf").open("a") as f:
            f.write(conf)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                self.psql("postgres", "SELECT 1")
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
