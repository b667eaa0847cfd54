"""Names the config gives to people and to environment variables, checked whole."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

# The one identity every holder of the shared admin token (server.admin_token_env) is.
SHARED_TOKEN_NAME = "admin-token"  # noqa: S105 - an identity, not a secret


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # matched whole (fullmatch)


def _check_env_name(value: str) -> str:
    if ENV_NAME.fullmatch(value) is None:
        raise ValueError(f"{value!r} is not an environment variable name")
    return value


def _check_person(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}", value) is None:
        raise ValueError(
            f"{value!r} is not a person's name as approvers list them (a Slack user id or a"
            " login: letters, digits, `.`, `_`, `@`, `-`, up to 100, not starting with a sign)"
        )
    return value


EnvName = Annotated[str, AfterValidator(_check_env_name)]
Person = Annotated[str, AfterValidator(_check_person)]
