"""`rotate_logs`: `logrotate -f CONFIG` on the target, then optionally prune old files."""

from __future__ import annotations

import math
import re
from typing import Any

from remediator.actions.base import Plan
from remediator.actions.params import PruneParams, RotateLogsParams, check_abs_path, split_glob
from remediator.actions.ssh import SshRecipe, need_host
from remediator.config.models import Host, Model
from remediator.errors import ActionError
from remediator.templates import render

# A file name in /etc/logrotate.d: no slash, no leading dot, not an option (no leading `-`).
_SERVICE = re.compile(r"[A-Za-z0-9@_:][A-Za-z0-9@._:-]{0,255}")


def _config_path(params: RotateLogsParams, context: dict[str, Any]) -> str:
    if params.config is not None:
        config = render(params.config, context)
        try:
            return check_abs_path(config, "logrotate config")
        except ValueError as exc:
            raise ActionError(f"refusing {exc}") from None
    assert params.service is not None
    service = render(params.service, context)
    if not _SERVICE.fullmatch(service):
        raise ActionError(f"refusing service name {service!r}: not a logrotate.d file name")
    return f"/etc/logrotate.d/{service}"


def prune_command(prune: PruneParams) -> tuple[str, ...]:
    """`find DIR -maxdepth 1 -type f -name PATTERN -mmin +MINUTES -print -delete`."""
    directory, pattern = split_glob(prune.glob)
    minutes = math.ceil(prune.older_than / 60)
    return (
        "find",
        directory,
        "-maxdepth",
        "1",
        "-type",
        "f",
        "-name",
        pattern,
        "-mmin",
        f"+{minutes}",
        "-print",
        "-delete",
    )


class RotateLogsAction(SshRecipe):
    """Force a rotation with the service's logrotate config; prune runs only if it worked."""

    name = "rotate_logs"
    params_model: type[Model] = RotateLogsParams

    def plan(self, params: RotateLogsParams, context: dict[str, Any], host: Host | None) -> Plan:
        """Render and check the config path; build the prune command."""
        commands: list[tuple[str, ...]] = [("logrotate", "-f", _config_path(params, context))]
        if params.prune is not None:
            commands.append(prune_command(params.prune))
        return Plan(self.name, need_host(self.name, host), commands=tuple(commands))
