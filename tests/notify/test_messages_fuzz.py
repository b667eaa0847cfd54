"""Property tests: any labels and any command build every message (bounded, a few seconds)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from support.messages import HOST, check_every_builder

from remediator.actions.base import Plan
from remediator.notify.commandtext import command_lines

# Every code point, lone surrogates included (the store would refuse them; builders must not care).
ANY_CHAR = st.characters(exclude_categories=())
TEXT = st.text(ANY_CHAR, max_size=400)
LABELS = st.dictionaries(TEXT, TEXT, max_size=25)
BOUNDED = settings(max_examples=200, deadline=None)


@BOUNDED
@given(labels=LABELS, alertname=TEXT, argv=st.lists(TEXT, min_size=1, max_size=5))
def test_any_labels_build_every_message(
    labels: dict[str, str], alertname: str, argv: list[str]
) -> None:
    """Slack incident, page and approval messages and the email are always built; mail
    headers hold no CR or LF; no label leaves its Slack code span."""
    # As stored: a Plan refuses NUL in an argument, an older row may still hold one.
    command = {**Plan("ssh", HOST).describe(), "commands": [argv]}
    check_every_builder({**labels, "alertname": alertname}, command, summary=alertname)


@BOUNDED
@given(argv=st.lists(TEXT, min_size=1, max_size=5), stdin=TEXT, message=TEXT)
def test_command_lines_are_always_printable(argv: list[str], stdin: str, message: str) -> None:
    """Whatever a command holds, each shown line is printable: a value cannot start a line
    of its own, hide text or reorder it (bidi controls are escaped)."""
    described = Plan("ssh", HOST, message=message).describe()
    lines = command_lines({**described, "commands": [argv], "stdin": [stdin]})
    assert all(line.isprintable() for line in lines)
    assert lines[1].startswith("$ ")
