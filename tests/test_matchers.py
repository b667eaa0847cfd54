"""Alertmanager matcher semantics: tables of cases, and generated ones checked against amtool."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.amroutes import LABEL, go_matches, quoted

from remediator.config.models import RuleSpec
from remediator.matchers import Matcher, Op
from remediator.rules import check_require

CASES = [
    # (matcher, labels, expected)
    ("alertname = NodeDown", {"alertname": "NodeDown"}, True),
    ("alertname=NodeDown", {"alertname": "NodeDownX"}, False),
    ('alertname = "NodeDown"', {"alertname": "NodeDown"}, True),
    ("alertname != NodeDown", {"alertname": "NodeDown"}, False),
    ("alertname != NodeDown", {"alertname": "Other"}, True),
    ("alertname != NodeDown", {}, True),  # missing label is the empty string
    ("team = ''", {}, False),  # unquoted '' is two quote characters, not empty
    ('team = ""', {}, True),
    ('team = ""', {"team": "x"}, False),
    ('severity =~ "critical|high"', {"severity": "high"}, True),
    ('severity =~ "critical|high"', {"severity": "highest"}, False),  # anchored at the end
    ('severity =~ "critical|high"', {"severity": "very-high"}, False),  # anchored at the start
    ("severity =~ crit.*", {"severity": "critical"}, True),
    ("severity =~ crit", {"severity": "critical"}, False),
    ('severity !~ "critical|high"', {"severity": "low"}, True),
    ('severity !~ "critical|high"', {"severity": "high"}, False),
    ('severity !~ "critical|high"', {}, True),
    ('instance =~ ".*"', {}, True),  # empty string matches .*
    ('instance =~ ".+"', {}, False),
    ('msg = "a \\"quoted\\" word"', {"msg": 'a "quoted" word'}, True),
    ('msg = "back\\\\slash"', {"msg": "back\\slash"}, True),
    ('msg = "line\\nbreak"', {"msg": "line\nbreak"}, True),
    ('path =~ "/var/log/.*\\\\.log"', {"path": "/var/log/app.log"}, True),
    ('path =~ "/var/log/.*\\\\.log"', {"path": "/var/log/app.logx"}, False),
    ("instance = web1:9100", {"instance": "web1:9100"}, True),
    ("env = prod  ", {"env": "prod"}, True),  # surrounding space is not part of the value
]


@pytest.mark.parametrize(("text", "labels", "expected"), CASES)
def test_matcher_table(text: str, labels: dict[str, str], expected: bool) -> None:
    """Each matcher gives Alertmanager's answer for the labels."""
    assert Matcher.parse(text).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("alertname", "expected `label op value`"),
        ("9abc = x", "expected `label op value`"),
        ("= b", "expected"),
        ('a = "open', "does not end"),
        ('a = "x"y"', "unescaped quote"),
        ('a = "bad \\q escape"', "bad escape"),
        ('a =~ "("', "invalid regex"),
        ('a = x"y', "unbalanced quote"),
    ],
)
def test_bad_matchers_say_why(text: str, needle: str) -> None:
    """A malformed matcher is a ValueError that names the problem."""
    with pytest.raises(ValueError, match=needle) as info:
        Matcher.parse(text)
    assert repr(text) in str(info.value) or text in str(info.value)


def test_operators_parse() -> None:
    """Each operator is recognised, longest first."""
    assert [Matcher.parse(f"a {op} b").op for op in ("=", "!=", "=~", "!~")] == [
        Op.EQ,
        Op.NE,
        Op.RE,
        Op.NRE,
    ]


# (regex, value, what Alertmanager answers, what Python's `^(?:regex)$` with .match and
# DOTALL answered, as remediator once did; None: Python refuses the regex). Go's `$` is
# the end of the text, its `.` skips newlines and its \d \w \s are ASCII.
ANCHORING = [
    ("FailedLoginsHigh", "FailedLoginsHigh\n", False, True),  # the finding
    ("FailedLoginsHigh", "FailedLoginsHigh", True, True),
    ("FailedLoginsHigh$", "FailedLoginsHigh\n", False, True),
    ("critical|high", "high\n", False, True),
    ("Failed.*", "FailedLoginsHigh\n", False, True),
    ("Failed.*", "Failed\nLoginsHigh", False, True),
    ("Failed(.|\n)*", "Failed\nLoginsHigh", True, True),
    ("(?s)Failed.*", "Failed\nLoginsHigh", True, None),  # flags only at the very start
    ("a\n", "a\n", True, True),
    ("a$\n", "a\n", False, True),
    ("(?m)a$\n", "a\n", True, None),
    ("[$]a", "$a", True, True),
    ("a\\z", "a", True, None),
    ("[^a]", "\n", True, True),
    ("a.", "a\r", True, True),
    ("web\\d+", "web3", True, True),
    ("web\\d+", "web\u0663", False, True),  # ARABIC-INDIC DIGIT THREE
    ("\\w+", "\u00e9", False, True),
    ("a\\sb", "a\tb", True, True),
    ("a\\sb", "a\x0bb", False, True),  # vertical tab: not in Go's \s
    ("a[\\s]b", "a\x0bb", False, True),
    ("a\\Sb", "a\x0bb", True, False),
]


def python_dollar(regex: str, value: str) -> bool | None:
    try:
        return re.compile(f"^(?:{regex})$", re.DOTALL).match(value) is not None
    except re.error:
        return None


@pytest.mark.parametrize(("regex", "value", "go", "python"), ANCHORING)
def test_regexes_match_as_alertmanager_does(
    regex: str, value: str, go: bool, python: bool | None, tmp_path: Path
) -> None:
    """`=~` and `!~` give Alertmanager's answer (asked of amtool), which Python's own
    anchoring, in the last column, does not always give."""
    assert go_matches(tmp_path, [regex], value) == [go]
    assert python_dollar(regex, value) is python
    labels = {LABEL: value}
    assert Matcher.parse(f"{LABEL} =~ {quoted(regex)}").matches(labels) is go
    assert Matcher.parse(f"{LABEL} !~ {quoted(regex)}").matches(labels) is not go


@pytest.mark.parametrize(("regex", "value", "go", "python"), ANCHORING)
def test_require_reads_regexes_as_matchers_do(
    regex: str, value: str, go: bool, python: bool | None
) -> None:
    """A rule's `require:` pattern matches a label exactly when `=~` would."""
    rule = RuleSpec.model_validate({"name": "r", "match": ["a = b"], "require": {LABEL: regex}})
    problem = check_require(rule, {LABEL: value})
    assert (problem is None) is go


# Patterns both dialects accept and read alike once anchored, built from the pieces where
# Go and Python differ: anchors, newlines, dots, classes.
ATOMS = ["a", "b", "\\n", ".", "$", "^", "\\z", "\\d", "\\w", "\\s", "\\S", "[^a]", "[a\\n]"]
QUANTIFIABLE = st.sampled_from([a for a in ATOMS if a not in ("$", "^", "\\z")])
PIECES = st.one_of(
    st.sampled_from(ATOMS),
    st.tuples(QUANTIFIABLE, st.sampled_from(["*", "+", "?"])).map("".join),
)
PATTERNS = st.recursive(
    st.lists(PIECES, min_size=1, max_size=4).map("".join),
    lambda inner: st.tuples(inner, inner).map(lambda p: f"({p[0]}|{p[1]})"),
    max_leaves=4,
)
VALUES = st.text(alphabet="ab\n \t\r\x0b1\u0663\u00e9$", max_size=5)


@settings(max_examples=150)
@given(patterns=st.lists(PATTERNS, min_size=1, max_size=4), value=VALUES)
def test_any_regex_and_value_match_as_alertmanager(
    patterns: list[str], value: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """For generated regexes and values with newlines, `=~` agrees with amtool."""
    expected = go_matches(tmp_path_factory.mktemp("am"), patterns, value)
    got = [Matcher.parse(f"{LABEL} =~ {quoted(p)}").matches({LABEL: value}) for p in patterns]
    assert got == expected, list(zip(patterns, got, expected, strict=True))
