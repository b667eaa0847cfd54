"""A step's planned command (`Plan.describe()`, as stored) as text people read.

`command_lines` is the whole of it, for approval requests (Slack, email, `remediator
show`): where it runs, every argv, every line of an input such as an nftables script, an
HTTP call's method, URL, headers (secret ones by name only) and body, a local command's
environment; for an `all:` step, each part's, under a line naming the part.
`describe_command` is one line, for step lists. Every line is printable
(see `notify.text`), so no label can add, hide or reorder a line.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from remediator.actions.base import REDACTED
from remediator.notify.text import visible

INDENT = "    "


def describe_command(command: Any) -> str:
    """One line for a step's planned command (argv lists, an HTTP request or a message)."""
    if not isinstance(command, dict):
        return visible(command)
    if _parts(command):
        return "together: " + " & ".join(describe_command(p) for p in _parts(command))
    host = f" on {command['host']}" if "host" in command else ""
    if command.get("commands"):
        return visible("; ".join(shlex.join(c) for c in command["commands"]) + host)
    if command.get("request"):
        req = command["request"]
        return visible(f"{req.get('method', 'POST')} {req.get('url', '')}")
    return visible(command.get("message") or command.get("action", ""))


def _parts(command: dict[str, Any]) -> list[Any]:
    """The parts of an `all:` step's command (none for a step of one action)."""
    parts = command.get("parts")
    return parts if isinstance(parts, list) else []


def _part_lines(parts: list[Any]) -> list[str]:
    lines = []
    for n, part in enumerate(parts, 1):
        action = part.get("action", "?") if isinstance(part, dict) else "?"
        lines.append(f"part {n} of {len(parts)}, run together: {action}")
        lines += [INDENT + line for line in command_lines(part)]
    return lines


def _lines(text: str) -> list[str]:
    """Split at line feeds only: other line separators (U+2028...) are shown escaped."""
    return str(text).removesuffix("\n").split("\n")


def _where(command: dict[str, Any]) -> list[str]:
    if command.get("request"):
        return []  # the URL says where
    if "host" in command:
        return [f"on {command['host']} ({command.get('address', '?')}):"]
    if command.get("commands"):
        return ["on the remediator host itself:"]
    return []


def _commands(command: dict[str, Any]) -> list[str]:
    lines = []
    stdin = command.get("stdin") or []
    for index, argv in enumerate(command.get("commands") or []):
        lines.append("$ " + shlex.join(str(a) for a in argv))
        text = stdin[index] if index < len(stdin) else None
        if text is not None:
            script = _lines(text)
            lines.append(f"{INDENT}with this input ({len(script)} lines):")
            lines += [INDENT * 2 + line.expandtabs(4) for line in script]
    return lines


def _request(req: dict[str, Any]) -> list[str]:
    lines = [f"{req.get('method', 'POST')} {req.get('url', '')}"]
    for name, value in (req.get("headers") or {}).items():
        shown = "(secret, not shown)" if value == REDACTED else value
        lines.append(f"header {name}: {shown}")
    for name, var in (req.get("headers_from_env") or {}).items():
        lines.append(f"header {name}: (secret from ${var}, not shown)")
    if req.get("json") is not None:
        body = json.dumps(req["json"], indent=2, ensure_ascii=False)
        lines += ["body (JSON):", *(INDENT + line for line in _lines(body))]
    else:
        lines.append("no body")
    return lines


def command_lines(command: Any) -> list[str]:
    """Everything the step will do, one printable line each."""
    if not isinstance(command, dict):
        return [visible(command)]
    if _parts(command):
        return [visible(line) for line in _part_lines(_parts(command))]
    lines = _where(command) + _commands(command)
    if command.get("env"):
        env = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in command["env"].items())
        lines.append(f"environment: {env}")
    if command.get("request"):
        lines += _request(command["request"])
    if command.get("message") is not None:
        lines += ["message:", *(INDENT + line for line in _lines(command["message"]))]
    timeout = command.get("timeout_s")
    if isinstance(timeout, int | float):
        lines.append(f"timeout: {timeout:g}s")
    return [visible(line) for line in lines] or [visible(command.get("action", ""))]
