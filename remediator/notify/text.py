"""Text from the fleet made safe to show: no label can break a message or hide in one.

Labels, annotations, rendered commands and remote output are hostile. Every character
that is not printable (Unicode's "Other" and "Separator" categories but the space: line
breaks, NUL, terminal escapes, bidirectional overrides such as U+202E, zero-width and tag
characters, lone surrogates) is shown as a Python-style escape (`\\n`, `\\x1b`,
`\\u202e`), so what an approver reads is what will run, in the order it runs, and a
header or a Slack code span cannot be cut short by a line break.
"""

from __future__ import annotations

ELLIPSIS = "…"


def _escape(char: str) -> str:
    return char.encode("unicode_escape", errors="backslashreplace").decode("ascii")


def visible(text: object, *, keep_newlines: bool = False) -> str:
    """`text` with every non-printable character escaped (newlines kept if asked)."""
    raw = str(text)
    if raw.isprintable():
        return raw
    return "".join(
        c if c.isprintable() or (keep_newlines and c == "\n") else _escape(c) for c in raw
    )


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + ELLIPSIS


def one_line(text: object, limit: int) -> str:
    """Printable, on one line, at most `limit` characters: for titles and mail headers."""
    return clip(visible(text), limit)
