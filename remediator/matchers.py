"""Alertmanager matcher syntax: `name = value`, `!=`, `=~`, `!~`; regexes fully anchored."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
_MATCHER = re.compile(rf"^\s*({_NAME})\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.DOTALL)
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}


class Op(StrEnum):
    """A matcher operator."""

    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True)
class Matcher:
    """One label matcher; a missing label matches as the empty string, as in Alertmanager."""

    name: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Parse `name op value`; raises ValueError saying what is wrong."""
        m = _MATCHER.match(text)
        if not m:
            raise ValueError(
                f"invalid matcher {text!r}: expected `label op value` with op one of = != =~ !~"
            )
        name, op, raw = m.group(1), Op(m.group(2)), m.group(3)
        value = _unquote(raw, text)
        regex = None
        if op in (Op.RE, Op.NRE):
            try:
                regex = re.compile(f"^(?:{value})$", re.DOTALL)
            except re.error as exc:
                raise ValueError(f"invalid regex in matcher {text!r}: {exc}") from None
        return cls(name, op, value, regex)

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether the labels satisfy this matcher."""
        got = labels.get(self.name, "")
        if self.op is Op.EQ:
            return got == self.value
        if self.op is Op.NE:
            return got != self.value
        assert self._regex is not None
        found = self._regex.match(got) is not None
        return found if self.op is Op.RE else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op.value}"{escaped}"'


def _unquote(raw: str, text: str) -> str:
    if not raw.startswith('"'):
        if '"' in raw:
            raise ValueError(f"invalid matcher {text!r}: unbalanced quote in value")
        return raw
    if len(raw) < 2 or not raw.endswith('"'):
        raise ValueError(f"invalid matcher {text!r}: value starts with a quote but does not end")
    out: list[str] = []
    body = raw[1:-1]
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if i + 1 >= len(body) or body[i + 1] not in _ESCAPES:
                raise ValueError(f"invalid matcher {text!r}: bad escape in quoted value")
            out.append(_ESCAPES[body[i + 1]])
            i += 2
            continue
        if ch == '"':
            raise ValueError(f"invalid matcher {text!r}: unescaped quote inside quoted value")
        out.append(ch)
        i += 1
    return "".join(out)


def parse_matcher(value: Any) -> Matcher:
    """Pydantic hook: accept a matcher string (or an already parsed Matcher)."""
    if isinstance(value, Matcher):
        return value
    if not isinstance(value, str):
        raise ValueError("a matcher is a string like `alertname = NodeDown`")
    return Matcher.parse(value)
