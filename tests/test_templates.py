"""Templates over hostile labels: one element stays one element, errors stay TemplateError.

Property tests over any label values (newlines, quotes, `$(...)`, NUL, 5,000 digits):
each argv template renders to exactly one element; the command line the ssh actions
send is one the remote shell splits back into exactly that argv (no metacharacter
reaches it unquoted); and a template that cannot render (an undefined name, a filter
that cannot take the value) is a TemplateError, the engine's refusal, never another
exception that would fail the step's loop.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remediator.actions.params import SshParams
from remediator.actions.ssh import SshAction
from remediator.actions.sshpool import SshPool, SshSettings, command_line
from remediator.config.models import Host
from remediator.errors import ActionError, TemplateError
from remediator.rules import alert_context, host_context
from remediator.templates import host_filter, render

HOST = Host(name="web1", address="10.0.0.5", port=22, user="root")
ACTION = SshAction(SshPool(SshSettings(Path("/nonexistent"), (), 1.0, 1.0, 1)))
ARGV = [
    "probe",
    "{{ labels.a }}",
    "--flag={{ labels.b }}",
    "{{ labels.a }}{{ labels.b }}",
    "{{ labels.a | host }}",
    "{{ target.address }}",
    "{{ annotations.get('x', 'none') }}",
]
PIECES = st.sampled_from(["$(id)", "`id`", "'", '"', ";", "\n", "*", "\\", " ", "\0", "{{ x }}"])
HOSTILE = st.one_of(
    st.lists(PIECES | st.text(max_size=3), max_size=10).map("".join),
    st.text(alphabet=st.characters(), max_size=20),
    st.just("1" * 5000),
)


def context(labels: dict[str, str]) -> dict[str, Any]:
    return {**alert_context(labels, {}), "target": host_context(HOST)}


@given(a=HOSTILE, b=HOSTILE)
def test_each_argv_template_is_one_element_the_remote_shell_splits_back(a: str, b: str) -> None:
    """Whatever the labels hold, argv has one element per template, each exactly the
    label text, and shlex.split of the command line sent gives back exactly argv."""
    params = SshParams(argv=ARGV)
    if "\0" in a + b:
        with pytest.raises(ActionError, match="an argument holds a NUL byte"):
            ACTION.plan(params, context({"a": a, "b": b}), HOST)
        return
    (argv,) = ACTION.plan(params, context({"a": a, "b": b}), HOST).commands
    assert list(argv) == ["probe", a, f"--flag={b}", a + b, host_filter(a), HOST.address, "none"]
    assert shlex.split(command_line(argv)) == list(argv)


NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
FILTERS = st.sampled_from(["", "| int", "| float", "| round", "| upper", "| host", "| first"])


@given(name=NAMES, value=HOSTILE, key=NAMES, flt=FILTERS)
def test_a_template_that_cannot_render_is_a_template_error(
    name: str, value: str, key: str, flt: str
) -> None:
    """Undefined names and labels, and filters that cannot take a label's value, raise
    TemplateError; whatever renders is text."""
    labels = {"present": value}
    sources = [
        f"{{{{ {name}_undefined }}}}",
        f"{{{{ labels.{key}_absent }}}}",
        f"{{{{ labels.present {flt} }}}}",
        f"{{{{ labels.present[{len(value) + 1}] }}}}",
    ]
    for source in sources:
        try:
            out = render(source, context(labels))
        except TemplateError:
            continue
        assert isinstance(out, str)
        assert source.startswith("{{ labels.present "), f"{source} rendered: {out!r}"


@pytest.mark.parametrize(
    ("source", "labels"),
    [
        ("{{ labels.port | round }}", {"port": "x"}),  # TypeError from Python's round()
        ("{{ nothing }}", {}),
        ("{{ labels.absent }}", {}),
        ("{{ labels.__class__.__mro__ }}", {}),  # the sandbox refuses
    ],
)
def test_render_failures_are_template_errors(source: str, labels: dict[str, str]) -> None:
    """A template that cannot render for these labels is a TemplateError naming it."""
    with pytest.raises(TemplateError, match="template"):
        render(source, context(labels))
