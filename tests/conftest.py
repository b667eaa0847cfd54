"""Shared fixtures: a real sshd on loopback with a recording `systemctl`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.daemon import SLACK_TOKEN
from support.fakeslack import FakeSlack
from support.sshd import SshServer


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
