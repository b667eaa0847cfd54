"""rotate_logs over a real sshd: exact logrotate and find argv, paths and globs checked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from support.sshd import SshServer

from remediator.actions.params import RotateLogsParams
from remediator.actions.rotate_logs import RotateLogsAction
from remediator.actions.sshpool import SshPool, SshSettings
from remediator.config.models import Host
from remediator.errors import ActionError


@pytest.fixture
async def action(sshd: SshServer) -> AsyncIterator[RotateLogsAction]:
    """rotate_logs over a pool that trusts the test sshd."""
    pool = SshPool(SshSettings(sshd.known_hosts, (sshd.client_key,), 5.0, 10.0, 1))
    yield RotateLogsAction(pool)
    await pool.close()


@pytest.fixture
def host(sshd: SshServer) -> Host:
    """The test sshd as an inventory host."""
    return Host(name="node1", address="127.0.0.1", port=sshd.port, user="root")


OFFLINE_HOST = Host(name="node1", address="192.0.2.1", port=22, user="root")


async def noop() -> None:
    """A before_send that records nothing."""


def params(**values: Any) -> RotateLogsParams:
    return RotateLogsParams.model_validate(values)


async def test_rotate_and_prune_run_exact_commands(
    sshd: SshServer, action: RotateLogsAction, host: Host
) -> None:
    """service -> logrotate -f /etc/logrotate.d/S; prune -> one find with -mmin and -delete."""
    sshd.install_recorder("logrotate")
    sshd.install_recorder("find")
    p = params(
        service="{{ labels.service }}",
        prune={"glob": "/var/backups/node/*.tar.gz", "older_than": "7d"},
    )
    plan = action.plan(p, {"labels": {"service": "kaldrix-node"}}, host)
    outcome = await action.execute(plan, noop)
    assert outcome.ok
    assert sshd.calls("logrotate") == [["-f", "/etc/logrotate.d/kaldrix-node"]]
    assert sshd.calls("find") == [
        [
            "/var/backups/node",
            "-maxdepth",
            "1",
            "-type",
            "f",
            "-name",
            "*.tar.gz",
            "-mmin",
            "+10080",
            "-print",
            "-delete",
        ]
    ]


async def test_config_path_wins_and_arrives_literally(
    sshd: SshServer, action: RotateLogsAction, host: Host
) -> None:
    """A config path (even one with shell syntax from a label) is one quoted argument."""
    sshd.install_recorder("logrotate")
    Path("/tmp/pwned").unlink(missing_ok=True)
    p = params(service="ignored", config="/etc/logrotate.d/{{ labels.cfg }}")
    plan = action.plan(p, {"labels": {"cfg": "app;touch /tmp/pwned $(id)"}}, host)
    assert (await action.execute(plan, noop)).ok
    assert sshd.calls("logrotate") == [["-f", "/etc/logrotate.d/app;touch /tmp/pwned $(id)"]]
    assert not Path("/tmp/pwned").exists()


async def test_failed_rotation_skips_the_prune(
    sshd: SshServer, action: RotateLogsAction, host: Host
) -> None:
    """logrotate exiting 1 fails the step and find never runs."""
    sshd.install_recorder("logrotate", exit_code=1)
    sshd.install_recorder("find")
    p = params(config="/etc/logrotate.conf", prune={"glob": "/srv/*.gz", "older_than": "1h"})
    outcome = await action.execute(action.plan(p, {}, host), noop)
    assert not outcome.ok
    assert outcome.error == "`logrotate -f /etc/logrotate.conf` exited 1"
    assert sshd.calls("find") == []


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("service", "../../etc/passwd", "not a logrotate.d file name"),
        ("service", ".hidden", "not a logrotate.d file name"),
        ("service", "a b", "not a logrotate.d file name"),
        ("service", "nginx\n", "not a logrotate.d file name"),
        ("service", "-x", "not a logrotate.d file name"),
        ("service", "--help", "not a logrotate.d file name"),
        ("config", "etc/logrotate.conf", "must be an absolute path"),
        ("config", "/etc/../root/x", "must not contain `..`"),
        ("config", "/etc/x\n-f", "contains a control character"),
    ],
)
def test_paths_from_labels_are_refused_at_plan_time(key: str, value: str, message: str) -> None:
    """A rendered service name or config path is validated before anything connects."""
    unused_pool = SshPool(SshSettings(Path("/dev/null"), (), 1.0, 1.0, 1))
    p = params(**{key: "{{ labels.v }}"})
    with pytest.raises(ActionError, match=message):
        RotateLogsAction(unused_pool).plan(p, {"labels": {"v": value}}, OFFLINE_HOST)


@pytest.mark.parametrize(
    ("prune", "message"),
    [
        ({"glob": "backups/*.gz", "older_than": "1d"}, "must be an absolute path"),
        ({"glob": "/var/*/backups/*.gz", "older_than": "1d"}, "only the file name part"),
        ({"glob": "/var/backups/../../etc/*", "older_than": "1d"}, "must not contain `..`"),
        ({"glob": "/var/backups/", "older_than": "1d"}, "must end in a file name pattern"),
        ({"glob": "/var/backups/*.gz", "older_than": "30s"}, "greater than or equal to 60"),
        ({"glob": "/var/backups/*.gz"}, "Field required"),
    ],
)
def test_bad_prune_globs_are_rejected_when_rules_load(prune: dict[str, Any], message: str) -> None:
    """Globs must be absolute, wildcards only in the file name, no `..`, an age of 1m+."""
    with pytest.raises(ValidationError, match=message):
        params(service="app", prune=prune)


def test_service_or_config_is_required() -> None:
    """Neither service nor config: a validation error saying to set one."""
    with pytest.raises(ValidationError, match="set service"):
        params(prune={"glob": "/var/backups/*.gz", "older_than": "1d"})
