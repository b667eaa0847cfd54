"""ssh and restart_service over a real sshd: quoting, host keys, retries, reuse."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support.daemon import write_config
from support.engine_harness import EngineHarness
from support.proxy import CountingProxy
from support.sshd import SshServer, free_port

from remediator.actions.params import RestartServiceParams, SshParams
from remediator.actions.ssh import RESTART_IF_INACTIVE, RestartServiceAction, SshAction
from remediator.actions.sshpool import SshPool, SshSettings
from remediator.config import load_config
from remediator.config.models import Host
from remediator.errors import ActionError, ConfigError

ECHO_RULE = """\
rules:
  - name: echo-label
    match: [alertname = Probe]
    target: web1
    steps:
      - action: ssh
        params: {argv: [probe-stub, "{{ labels.instance }}", "{{ annotations.get('x', 'none') }}"]}
"""


@pytest.mark.parametrize(
    "hostile",
    [
        "x;touch /tmp/pwned",
        "$(id)",
        "`touch /tmp/pwned`",
        "a'b\"c",
        "web1 && touch /tmp/pwned",
        "-rf /",
    ],
)
async def test_labels_reach_argv_quoted_never_as_shell(
    tmp_path: Path, sshd: SshServer, hostile: str
) -> None:
    """A hostile label arrives as one literal argv element; no shell interprets it."""
    Path("/tmp/pwned").unlink(missing_ok=True)
    sshd.install_recorder("probe-stub")
    h = await EngineHarness.start(tmp_path, ECHO_RULE, sshd)
    try:
        await h.fire({"alertname": "Probe", "instance": hostile})
    finally:
        await h.close()
    assert sshd.calls("probe-stub") == [[hostile, "none"]]
    assert not Path("/tmp/pwned").exists()
    assert h.incidents()[0]["state"] == "verifying"


async def test_service_name_from_a_label_is_validated(tmp_path: Path, sshd: SshServer) -> None:
    """restart_service refuses a rendered name that is not a systemd unit name."""
    rule = ECHO_RULE.replace(
        "      - action: ssh\n        params: {argv: [probe-stub, \"{{ labels.instance }}\", \"{{ annotations.get('x', 'none') }}\"]}",
        '      - action: restart_service\n        params: {service: "{{ labels.service }}"}',
    )
    h = await EngineHarness.start(tmp_path, rule, sshd)
    try:
        await h.fire({"alertname": "Probe", "service": "x;touch /tmp/pwned"})
    finally:
        await h.close()
    audit = dict(h.audit())
    assert (
        audit["step_refused"]["reason"]
        == "refusing service name 'x;touch /tmp/pwned': not a systemd unit name"
    )
    assert sshd.calls("systemctl") == []
    assert not Path("/tmp/pwned").exists()


@pytest.mark.parametrize("service", ["nginx\n", "-x", "--help", "-Hevil.example", "a b", ""])
def test_service_names_that_are_not_whole_unit_names_are_refused(service: str) -> None:
    """The whole name must be a unit name (no trailing newline) and cannot be an option."""
    unused_pool = SshPool(SshSettings(Path("/dev/null"), (), 1.0, 1.0, 1))
    host = Host(name="web1", address="192.0.2.1", port=22, user="root")
    p = RestartServiceParams(service="{{ labels.service }}")
    with pytest.raises(ActionError, match="not a systemd unit name"):
        RestartServiceAction(unused_pool).plan(p, {"labels": {"service": service}}, host)


@pytest.mark.parametrize("service", ["nginx", "nginx.service", "getty@tty1", "a\\x2db.mount"])
def test_unit_names_systemd_writes_are_planned_as_given(service: str) -> None:
    """Instances (`@`) and systemd's `\\x2d` escapes are unit names: restart, then is-active."""
    unused_pool = SshPool(SshSettings(Path("/dev/null"), (), 1.0, 1.0, 1))
    host = Host(name="web1", address="192.0.2.1", port=22, user="root")
    p = RestartServiceParams(service="{{ labels.service }}")
    plan = RestartServiceAction(unused_pool).plan(p, {"labels": {"service": service}}, host)
    assert plan.commands == (
        ("systemctl", "restart", service),
        ("systemctl", "is-active", service),
    )


@pytest.fixture
def other_key(tmp_path: Path) -> Path:
    """A freshly generated host key that no sshd here uses."""
    other = tmp_path / "otherkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    return other


async def test_unknown_host_key_fails_clearly_and_runs_nothing(
    tmp_path: Path, sshd: SshServer, other_key: Path
) -> None:
    """A host whose key is not in known_hosts is never sent a command, and is not retried."""
    other = other_key
    known = tmp_path / "known_hosts"
    proxy = await CountingProxy(sshd.port).start()
    known.write_text(f"[127.0.0.1]:{proxy.port} {(other.with_suffix('.pub')).read_text()}")
    hosts = {"web1": {"address": "127.0.0.1", "port": proxy.port}}
    h = await EngineHarness.start(tmp_path, ECHO_RULE, sshd, known_hosts=known, hosts=hosts)
    try:
        await h.fire({"alertname": "Probe", "instance": "i"})
    finally:
        await h.close()
        await proxy.close()
    audit = dict(h.audit())
    assert "host key not verified" in audit["step_failed"]["error"]
    assert str(known) in audit["step_failed"]["error"]
    assert "step_executing" not in audit
    assert h.incidents()[0]["state"] == "exhausted"
    assert sshd.calls("probe-stub") == []
    assert proxy.accepted == 1


async def test_connection_failures_are_retried_then_succeed(
    tmp_path: Path, sshd: SshServer
) -> None:
    """Dropped connections are retried (nothing was sent); the command then runs once."""
    sshd.install_recorder("probe-stub")
    proxy = await CountingProxy(sshd.port, drop_first=2).start()
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts.read_text().replace(f"]:{sshd.port} ", f"]:{proxy.port} "))
    hosts = {"web1": {"address": "127.0.0.1", "port": proxy.port}}
    h = await EngineHarness.start(tmp_path, ECHO_RULE, sshd, known_hosts=known, hosts=hosts)
    assert h.pool is not None
    h.pool.settings = h.pool.settings.__class__(
        **{**h.pool.settings.__dict__, "retry_wait_s": 0.01}
    )
    try:
        await h.fire({"alertname": "Probe", "instance": "i"})
    finally:
        await h.close()
        await proxy.close()
    assert proxy.accepted == 3
    assert sshd.calls("probe-stub") == [["i", "none"]]


async def test_unreachable_host_fails_after_retries(tmp_path: Path, sshd: SshServer) -> None:
    """Nothing listening: the step fails with `cannot connect` and escalates."""
    hosts = {"web1": {"address": "127.0.0.1", "port": free_port()}}
    h = await EngineHarness.start(
        tmp_path, ECHO_RULE, sshd, hosts=hosts, ssh_extra="  connect_attempts: 2\n"
    )
    try:
        await h.fire({"alertname": "Probe", "instance": "i"})
    finally:
        await h.close()
    audit = dict(h.audit())
    assert "cannot connect" in audit["step_failed"]["error"]
    assert h.incidents()[0]["state"] == "exhausted"


async def test_one_connection_per_host_is_reused(tmp_path: Path, sshd: SshServer) -> None:
    """Steps for several incidents on one host share one SSH connection (one at a time)."""
    sshd.install_recorder("probe-stub")
    proxy = await CountingProxy(sshd.port).start()
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts.read_text().replace(f"]:{sshd.port} ", f"]:{proxy.port} "))
    hosts = {"web1": {"address": "127.0.0.1", "port": proxy.port}}
    rule = ECHO_RULE + "    cooldown: 0s\n"
    h = await EngineHarness.start(tmp_path, rule, sshd, known_hosts=known, hosts=hosts)
    try:
        for i in range(3):
            await h.fire({"alertname": "Probe", "instance": f"i{i}"})
            await h.advance(300)  # the target lock lets the next one go after the window
    finally:
        await h.close()
        await proxy.close()
    assert len(sshd.calls("probe-stub")) == 3
    assert proxy.accepted == 1


async def test_dry_run_records_what_would_run(tmp_path: Path, sshd: SshServer) -> None:
    """A dry-run rule connects to nothing; the audit shows the exact argv."""
    sshd.install_recorder("probe-stub")
    h = await EngineHarness.start(tmp_path, ECHO_RULE + "    dry_run: true\n", sshd)
    try:
        await h.fire({"alertname": "Probe", "instance": "a b"})
    finally:
        await h.close()
    audit = dict(h.audit())
    assert audit["step_dry_run"]["would_run"]["commands"] == [["probe-stub", "a b", "none"]]
    assert sshd.calls("probe-stub") == []


def test_step_needing_approval_without_an_approval_policy_is_a_config_error(
    tmp_path: Path, sshd: SshServer
) -> None:
    """`approval: required` with nobody to ask is caught by `check`, not at 3 a.m."""
    rule = ECHO_RULE + "        approval: required\n"
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path / "cfg", rule, sshd=sshd))
    assert "steps[0]: step 0 (ssh) needs approval, but no policy file defines `approvals:`" in str(
        err.value
    )


# A systemctl stand-in with a unit state: `is-active` prints it (exit 0 only for
# `active`, as systemd does), `restart` makes it `active`; every call is recorded.
_SYSTEMCTL_STUB = """\
#!/bin/sh
printf '%s\\n' "$*" >> {calls}
case "$1" in
  is-active) state=$(cat {state}); printf '%s\\n' "$state"; [ "$state" = active ];;
  restart) echo active > {state};;
esac
"""

ONLY_IF_INACTIVE_RULE = """\
rules:
  - name: restart-unresponsive-node
    match: [alertname = NodeDown]
    target: web1
    steps:
      - action: restart_service
        params: {service: kaldrix-node, only_if_inactive: true}
"""


def _install_systemctl(sshd: SshServer, state: str) -> Path:
    """The stand-in above on the remote PATH, the unit starting in `state`."""
    state_file, calls = sshd.calls_dir / "unit.state", sshd.calls_dir / "systemctl.log"
    state_file.write_text(state + "\n")
    stub = sshd.bin_dir / "systemctl"
    stub.write_text(_SYSTEMCTL_STUB.format(calls=calls, state=state_file))
    stub.chmod(0o755)
    return calls


@pytest.mark.parametrize("state", ["failed", "inactive", "activating"])
async def test_only_if_inactive_restarts_a_unit_that_is_not_active(
    tmp_path: Path, sshd: SshServer, state: str
) -> None:
    """`only_if_inactive: true` restarts a unit whose state is anything but `active` (the
    KALDRIX handoff's Network Outage step 3), and the step's output says from which state."""
    calls = _install_systemctl(sshd, state)
    h = await EngineHarness.start(tmp_path, ONLY_IF_INACTIVE_RULE, sshd)
    try:
        await h.fire({"alertname": "NodeDown", "instance": "web1:9100"})
    finally:
        await h.close()
    assert calls.read_text().splitlines() == [
        "is-active kaldrix-node",
        "restart kaldrix-node",
        "is-active kaldrix-node",
    ]
    done = dict(h.audit())["step_succeeded"]
    assert done["output"] == f"kaldrix-node was {state}: restarted\n\nactive"


async def test_only_if_inactive_leaves_an_active_unit_running(
    tmp_path: Path, sshd: SshServer
) -> None:
    """An active unit is not restarted; the step succeeds and its output says so."""
    calls = _install_systemctl(sshd, "active")
    h = await EngineHarness.start(tmp_path, ONLY_IF_INACTIVE_RULE, sshd)
    try:
        await h.fire({"alertname": "NodeDown", "instance": "web1:9100"})
    finally:
        await h.close()
    assert calls.read_text().splitlines() == ["is-active kaldrix-node", "is-active kaldrix-node"]
    done = dict(h.audit())["step_succeeded"]
    assert done["output"] == "kaldrix-node is active: not restarted\n\nactive"
    assert h.incidents()[0]["state"] == "verifying"


async def test_only_if_inactive_takes_a_label_as_the_unit_argument_never_as_script(
    tmp_path: Path, sshd: SshServer
) -> None:
    """A unit name from a label reaches the fixed script as `$1`: the shell never parses it
    (a `\\x2d` escape survives as written: `printf '%s'` expands no escape in it)."""
    calls = _install_systemctl(sshd, "failed")
    rule = ONLY_IF_INACTIVE_RULE.replace("service: kaldrix-node", 'service: "{{ labels.unit }}"')
    h = await EngineHarness.start(tmp_path, rule, sshd)
    try:
        await h.fire({"alertname": "NodeDown", "unit": "getty@a\\x2db.service"})
    finally:
        await h.close()
    assert calls.read_text().splitlines()[1] == "restart getty@a\\x2db.service"
    assert dict(h.audit())["step_succeeded"]["output"].startswith(
        "getty@a\\x2db.service was failed: restarted"
    )


def test_only_if_inactive_is_planned_as_one_fixed_script_then_is_active() -> None:
    """The plan (what approvers and the audit see) is the script with the unit as its
    argument, then `systemctl is-active`; without the option, a plain restart."""
    unused_pool = SshPool(SshSettings(Path("/dev/null"), (), 1.0, 1.0, 1))
    host = Host(name="web1", address="192.0.2.1", port=22, user="root")
    p = RestartServiceParams(service="kaldrix-node", only_if_inactive=True)
    plan = RestartServiceAction(unused_pool).plan(p, {}, host)
    assert plan.commands == (
        ("sh", "-c", RESTART_IF_INACTIVE, "sh", "kaldrix-node"),
        ("systemctl", "is-active", "kaldrix-node"),
    )


@pytest.mark.parametrize(("expect_exit", "state"), [("", "exhausted"), ("[0, 1]", "verifying")])
async def test_expect_exit_names_the_exit_statuses_that_succeed(
    tmp_path: Path, sshd: SshServer, expect_exit: str, state: str
) -> None:
    """`ssh` with `expect_exit: [0, 1]` takes exit 1 as success (GNU tar's "file changed
    as we read it"); without it, exit 1 fails the step and the incident escalates."""
    sshd.install_recorder("tar", exit_code=1)
    extra = f", expect_exit: {expect_exit}" if expect_exit else ""
    rule = (
        "rules:\n  - name: evidence\n    match: [alertname = Breach]\n    target: web1\n"
        f"    steps:\n      - action: ssh\n        params: {{argv: [tar, -czf, /var/tmp/e.tgz]{extra}}}\n"
    )
    h = await EngineHarness.start(tmp_path, rule, sshd)
    try:
        await h.fire({"alertname": "Breach"})
    finally:
        await h.close()
    assert sshd.calls("tar") == [["-czf", "/var/tmp/e.tgz"]]
    assert h.incidents()[0]["state"] == state
    audit = dict(h.audit())
    assert audit["step_succeeded" if expect_exit else "step_failed"]["exit_status"] == 1


@pytest.mark.parametrize(
    ("value", "where", "why"),
    [
        ("[]", "expect_exit", "at least 1 item"),
        ("[0, 256]", "expect_exit[1]", "less than or equal to 255"),
        ("[-1]", "expect_exit[0]", "greater than or equal to 0"),
    ],
)
def test_expect_exit_out_of_range_is_a_config_error(
    tmp_path: Path, sshd: SshServer, value: str, where: str, why: str
) -> None:
    """`check` refuses an empty list or a status outside 0..255, naming file, line and entry."""
    rule = (
        "rules:\n  - name: evidence\n    match: [alertname = Breach]\n    target: web1\n"
        f"    steps:\n      - action: ssh\n        params: {{argv: [tar], expect_exit: {value}}}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path / "cfg", rule, sshd=sshd))
    assert str(err.value).startswith(f"rules/rules.yml:7: rules[0].steps[0].params.{where}: ")
    assert why in str(err.value)


def test_a_plan_with_other_exit_statuses_shows_them_to_approvers() -> None:
    """What approvers and the audit see includes `expect_exit` when it is not just 0."""
    unused_pool = SshPool(SshSettings(Path("/dev/null"), (), 1.0, 1.0, 1))
    host = Host(name="web1", address="192.0.2.1", port=22, user="root")
    plan = SshAction(unused_pool).plan(SshParams(argv=["tar"], expect_exit=[0, 1]), {}, host)
    assert plan.describe()["expect_exit"] == [0, 1]
    plain = SshAction(unused_pool).plan(SshParams(argv=["tar"]), {}, host)
    assert "expect_exit" not in plain.describe()
