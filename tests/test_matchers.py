"""Alertmanager matcher semantics, as a table of cases."""

from __future__ import annotations

import pytest

from remediator.matchers import Matcher, Op

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
