"""deploy/systemd: systemd-analyze accepts the unit; its example config passes check.

`systemd-analyze verify` parses a unit without a running systemd; it refuses a missing
ExecStart binary, so it reads a copy whose ExecStart is /bin/true.
"""

from __future__ import annotations

import re
from pathlib import Path

from support.deployfiles import DEFAULT_PORT, DEPLOY, ROOT, SERVE_ARGS, UNIT, check_config, run

from remediator.config.server import ServerConfig
from remediator.daemon import parse_listen

EXEC_START = " ".join(["/opt/remediator/bin/remediator", *SERVE_ARGS])
REQUIRED = {
    "User": "remediator",
    "Group": "remediator",
    "DynamicUser": "no",
    "ExecStart": EXEC_START,
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "EnvironmentFile": "-/etc/remediator/env",
    "StateDirectory": "remediator",
    "ConfigurationDirectory": "remediator",
    "Restart": "on-failure",
    "KillSignal": "SIGTERM",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictRealtime": "yes",
    "SystemCallFilter": "@system-service",
    "CapabilityBoundingSet": "",
}


def service_settings(text: str) -> dict[str, list[str]]:
    """`[Service]` key -> every value it is given (systemd allows repeats)."""
    section, out = "", {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service":
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def runnable_copy(tmp_path: Path, extra: str = "") -> Path:
    """The unit with ExecStart's binary replaced by /bin/true and `extra` lines added."""
    text = UNIT.read_text()
    assert text.count(f"\nExecStart={EXEC_START}\n") == 1
    text = text.replace(f"ExecStart={EXEC_START}", f"ExecStart=/bin/true {' '.join(SERVE_ARGS)}")
    copy = tmp_path / "remediator.service"
    copy.write_text(text.replace("[Service]\n", f"[Service]\n{extra}"))
    return copy


def verify(unit: Path) -> list[str]:
    """systemd-analyze verify's lines about this unit (not other units of the machine)."""
    result = run("systemd-analyze", "verify", "--man=no", unit)
    return [line for line in (result.stdout + result.stderr).splitlines() if unit.name in line]


def test_unit_has_the_required_hardening() -> None:
    """Each setting operators rely on is there with its value; stopping outwaits the grace."""
    settings = service_settings(UNIT.read_text())
    for key, value in REQUIRED.items():
        assert value in settings.get(key, []), f"{key}={value}"
    grace = ServerConfig.model_fields["shutdown_grace"].default
    assert float(settings["TimeoutStopSec"][0].removesuffix("s")) > grace


def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    """No unknown key, no invalid value; a planted mistake proves verify really looks."""
    assert verify(runnable_copy(tmp_path)) == []
    planted = verify(runnable_copy(tmp_path, "ProtectSytem=strict\nRestart=sometimes\n"))
    assert any("Unknown key" in line and "ProtectSytem" in line for line in planted), planted
    assert any("sometimes" in line for line in planted), planted


def test_sandbox_exposure_is_low(tmp_path: Path) -> None:
    """`systemd-analyze security --offline` rates the sandbox's exposure at 2.0 or less."""
    result = run("systemd-analyze", "security", "--offline=yes", runnable_copy(tmp_path))
    m = re.search(r"Overall exposure level for remediator\.service: ([\d.]+)", result.stdout)
    assert m, result.stdout + result.stderr
    assert float(m.group(1)) <= 2.0, result.stdout


def test_example_config_passes_check(tmp_path: Path) -> None:
    """deploy/systemd/remediator.yml, with the repo's rules and policies, loads cleanly."""
    files = {
        str(p.relative_to(ROOT)): p.read_text()
        for folder in ("rules", "policies")
        for p in sorted((ROOT / folder).glob("*.yml"))
    }
    config = check_config((DEPLOY / "systemd" / "remediator.yml").read_text(), files, tmp_path)
    assert config.file.store.url.startswith("sqlite:////var/lib/remediator/")  # StateDirectory
    assert parse_listen(config.file.server.listen)[1] == DEFAULT_PORT
    assert config.rules
    assert config.policies.escalations
