"""`script`: run argv on the daemon's own machine, without a shell."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Mapping
from typing import Any, Self

from remediator.actions.base import BeforeSend, Outcome, Plan, clip_output
from remediator.actions.params import ScriptParams
from remediator.actions.sshpool import SshPool
from remediator.config.models import Host, Model
from remediator.errors import ActionError, OutcomeUnknown
from remediator.templates import render

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ScriptAction:
    """Run a local program: stdin from /dev/null, PATH plus the step's `env`, a timeout."""

    name = "script"
    params_model: type[Model] = ScriptParams
    needs_ssh = False
    always_needs_approval = False

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        source = os.environ if environ is None else environ
        self.path = source.get("PATH") or DEFAULT_PATH

    @classmethod
    def build(cls, pool: SshPool | None, environ: Mapping[str, str] | None) -> Self:
        """PATH from the daemon's environment."""
        return cls(environ)

    def plan(self, params: ScriptParams, context: dict[str, Any], host: Host | None) -> Plan:
        """Render each argv element; the environment is PATH and the step's `env`."""
        argv = tuple(render(a, context) for a in params.argv)
        env = {"PATH": self.path, **params.env}
        return Plan(self.name, host, commands=(argv,), env=env, timeout_s=params.timeout)

    async def execute(self, plan: Plan, before_send: BeforeSend) -> Outcome:
        """Start it, wait up to the timeout; a non-zero exit is a result, a timeout unknown."""
        (argv,) = plan.commands
        env = plan.env or {"PATH": self.path}
        program = _executable(argv[0], env["PATH"])
        await before_send()
        try:
            proc = await asyncio.create_subprocess_exec(
                program,
                *argv[1:],
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group, killed whole on timeout
            )
        except OSError as exc:
            raise ActionError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
        try:
            stdout, _ = await asyncio.wait_for(proc.communicate(), plan.timeout_s)
        except TimeoutError:
            await _kill_group(proc)
            raise OutcomeUnknown(
                f"`{' '.join(argv)}` did not finish within {plan.timeout_s:g}s; killed"
            ) from None
        return _outcome(argv, proc.returncode, stdout.decode(errors="replace"))


def _executable(program: str, path: str) -> str:
    """Resolve argv[0] before anything starts, so a typo is a clear failure, not `unknown`."""
    found = shutil.which(program, path=path)
    if found is None:
        where = "" if "/" in program else f" on PATH {path}"
        raise ActionError(f"{program!r}: no such executable{where}")
    return found


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


def _outcome(argv: tuple[str, ...], status: int | None, output: str) -> Outcome:
    status = -1 if status is None else status
    output = clip_output(output.strip())
    if status == 0:
        return Outcome(ok=True, exit_status=0, output=output)
    how = f"was killed by signal {-status}" if status < 0 else f"exited {status}"
    return Outcome(ok=False, exit_status=status, output=output, error=f"`{' '.join(argv)}` {how}")
