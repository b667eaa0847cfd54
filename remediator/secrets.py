"""Read secrets named in the config from the environment or files; never log them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from remediator.errors import SecretError


def read_secret(
    *, env: str | None, file: Path | None, where: str, environ: Mapping[str, str] | None = None
) -> str:
    """The secret from env var `env` or file `file`; `where` names the config key."""
    environ = os.environ if environ is None else environ
    if env is not None:
        value = environ.get(env, "")
        if not value:
            raise SecretError(f"{where}: environment variable {env} is not set or empty")
        return value
    if file is not None:
        try:
            value = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretError(f"{where}: cannot read {file}: {exc.strerror}") from None
        if not value:
            raise SecretError(f"{where}: {file} is empty")
        return value
    raise SecretError(f"{where}: no secret source configured")
