"""Shared fixtures (a real sshd with a recording `systemctl`, the fake Slack, an SMTP sink)
and the Hypothesis profile of the property tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from support.daemon import SLACK_TOKEN
from support.fakeslack import FakeSlack
from support.postgres import PostgresCluster
from support.smtpsink import SmtpSink, make_cert
from support.sshd import SshServer, free_port

from remediator.store import PostgresStore, SqliteStore, open_store_url

# Property tests are reproducible (no example database, a fixed seed) and bounded: each
# test's max_examples keeps `make test` short. Examples that are HTTP round trips to a
# real daemon are slow by Hypothesis's measure, which is expected, not a health problem.
settings.register_profile(
    "remediator",
    database=None,
    derandomize=True,
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("remediator")


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    """A real OpenSSH server on 127.0.0.1 whose `systemctl` records its argv."""
    with SshServer.start(tmp_path / "sshd") as server:
        server.install_recorder("systemctl")
        yield server


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """The local fake of the Slack Web API, taking the tests' bot token."""
    fake = FakeSlack.start(SLACK_TOKEN)
    yield fake
    fake.close()


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on loopback requiring STARTTLS and AUTH."""
    cert, key = make_cert(tmp_path / "tls")
    sink = SmtpSink(cert, key, free_port()).start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A real PostgreSQL cluster for the session (initdb in a temporary folder, loopback)."""
    with PostgresCluster.start() as cluster:
        yield cluster


@pytest.fixture
def pg_url(postgres: PostgresCluster) -> Iterator[str]:
    """The URL of a fresh empty database on the session's cluster, dropped afterwards."""
    name = postgres.database()
    yield postgres.url(name)
    postgres.drop(name)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store on each backend in turn: an SQLite file, a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 's.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """An opened SQLite store in `tmp_path` (s.db), for tests of SQLite's own parts."""
    opened = SqliteStore(tmp_path / "s.db")
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def store(store_url: str, tmp_path: Path) -> AsyncIterator[SqliteStore | PostgresStore]:
    """An opened store on each backend (the store contract's tests run on both)."""
    opened = open_store_url(store_url, tmp_path)
    await opened.open()
    yield opened
    await opened.close()
