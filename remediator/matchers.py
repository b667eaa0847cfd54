r"""Alertmanager matcher syntax: `name = value`, `!=`, `=~`, `!~`; regexes match whole values.

Regexes (`=~`, `!~` and rules' `require:`) mean what they mean to Alertmanager, whose Go
regexp compiles `^(?:x)$`: the whole value must match, and Go's `$` is the end of the
text, where Python's also matches before a final newline. So values are matched with
`re.fullmatch` and `compile_regex` reads a pattern as Go does where Python differs:
`$` (outside `(?m)`) and `\z` are the end of the text, `.` does not match a newline,
`\d`, `\w`, `\b` are ASCII, `\s` is `[\t\n\f\r ]`. Still different: POSIX classes
(`[[:alpha:]]`), flags after the start (`a(?i)b`), and `(?i)` on non-ASCII letters.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
_MATCHER = re.compile(rf"\s*({_NAME})\s*(=~|!~|!=|=)\s*(.*?)\s*", re.DOTALL)
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}
_MULTILINE = re.compile(r"\(\?[a-zA-Z]*m")  # (?m) or (?im:...): `$` is then Go's too
_END_OF_TEXT = r"\Z"  # Go's `$` and `\z`; Python's `\z` is an error before 3.14
_GO_ESCAPES = {r"\z": _END_OF_TEXT, r"\s": r"[\t\n\f\r ]", r"\S": r"[^\t\n\f\r ]"}
_GO_IN_CLASS = {r"\s": r"\t\n\f\r "}


@functools.lru_cache(maxsize=4096)
def compile_regex(pattern: str) -> re.Pattern[str]:
    """`pattern` as Go's regexp reads it, to use with `fullmatch`; re.error when invalid."""
    return re.compile(_as_go(pattern), re.ASCII)


def _as_go(pattern: str) -> str:
    r"""Rewrite `$`, `\z`, `\s`, `\S` to Python's spelling of Go's meaning (see above)."""
    out: list[str] = []
    i, in_class = 0, False
    multiline = _MULTILINE.search(pattern) is not None
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            token = pattern[i : i + 2]
            table = _GO_IN_CLASS if in_class else _GO_ESCAPES
            out.append(table.get(token, token))
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            # `]` first in a class (after an optional `^`) is a member, in both dialects
            end = i + 1 + pattern.startswith("^", i + 1)
            end += pattern.startswith("]", end)
            out.append(pattern[i:end])
            i, in_class = end, True
            continue
        elif ch == "$" and not multiline:
            ch = _END_OF_TEXT
        out.append(ch)
        i += 1
    return "".join(out)


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
        m = _MATCHER.fullmatch(text)
        if not m:
            raise ValueError(
                f"invalid matcher {text!r}: expected `label op value` with op one of = != =~ !~"
            )
        name, op, raw = m.group(1), Op(m.group(2)), m.group(3)
        value = _unquote(raw, text)
        regex = None
        if op in (Op.RE, Op.NRE):
            try:
                regex = compile_regex(value)
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
        found = self._regex.fullmatch(got) is not None
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
