"""Rule matching: the index gives exactly the full scan's answer, first match and continue."""

from __future__ import annotations

import random

from remediator.config.models import RuleSpec
from remediator.rules import MatchCache, RuleSet

MATCHERS = [
    "alertname = A",
    "alertname = B",
    "alertname != A",
    'alertname =~ "A|C"',
    "severity = critical",
    "severity !~ low|info",
    'job = ""',
    "job = node",
    'instance =~ "web.*"',
]
VALUES = {
    "alertname": ["A", "B", "C"],
    "severity": ["critical", "low", "high"],
    "job": ["node", "api"],
    "instance": ["web1", "db1"],
}


def rule(i: int, rng: random.Random) -> RuleSpec:
    matchers = rng.sample(MATCHERS, rng.randint(1, 3))
    return RuleSpec.model_validate(
        {"name": f"r{i}", "match": matchers, "continue": rng.random() < 0.3}
    )


def full_scan(rules: list[RuleSpec], labels: dict[str, str]) -> list[str]:
    out = []
    for r in rules:
        if all(m.matches(labels) for m in r.match):
            out.append(r.name)
            if not r.continue_:
                break
    return out


def test_indexed_matching_equals_a_full_scan() -> None:
    """On 200 random rule sets and 50 alerts each, index and scan agree on every alert."""
    rng = random.Random(7)
    for _ in range(200):
        rules = [rule(i, rng) for i in range(rng.randint(1, 12))]
        ruleset = RuleSet(rules)
        for _ in range(50):
            labels = {k: rng.choice(v) for k, v in VALUES.items() if rng.random() < 0.8}
            assert [r.name for r in ruleset.match(labels)] == full_scan(rules, labels), labels


def test_an_alert_only_tries_rules_indexed_under_its_labels() -> None:
    """With 1,000 alertname rules an alert considers one candidate, not a thousand."""
    rules = [
        RuleSpec.model_validate({"name": f"r{i}", "match": [f"alertname = Alert{i}"]})
        for i in range(1000)
    ]
    ruleset = RuleSet(rules)
    assert ruleset.candidates({"alertname": "Alert500", "job": "x"}) == [500]
    assert [r.name for r in ruleset.match({"alertname": "Alert500"})] == ["r500"]


def count_matches(rules: RuleSet) -> list[dict[str, str]]:
    """The label sets `rules.match` is called with from now on, in order."""
    calls: list[dict[str, str]] = []
    match = rules.match

    def counted(labels: dict[str, str]) -> list[RuleSpec]:
        calls.append(labels)
        return match(labels)

    rules.match = counted  # type: ignore[method-assign]
    return calls


def test_a_match_cache_keyed_by_fingerprint_still_reads_the_labels() -> None:
    """The cache answers a label set seen before without matching again, under its
    fingerprint or without one; a fingerprint sent again with other labels (a sender's
    forgery or bug) is matched on its own labels, never given the first set's rules."""
    rules = RuleSet(
        [
            RuleSpec.model_validate({"name": "a", "match": ["alertname = A"]}),
            RuleSpec.model_validate({"name": "b", "match": ["alertname = B", "x = 1"]}),
        ]
    )
    calls = count_matches(rules)
    cache = MatchCache(rules)
    a, b = {"alertname": "A", "n": "1"}, {"alertname": "B", "n": "1"}  # b: a candidate, no match
    assert [r.name for r in cache(a, "f1")] == ["a"]
    assert [r.name for r in cache(dict(a), "f1")] == ["a"]
    assert [r.name for r in cache(dict(a))] == ["a"]
    assert [r.name for r in cache(dict(a))] == ["a"]
    assert calls == [a, a]
    assert cache(b, "f1") == ()
    assert [r.name for r in cache(a, "f1")] == ["a"]
    assert calls == [a, a, b, a]


def test_an_alert_no_rule_could_take_is_neither_matched_nor_kept() -> None:
    """Most alerts of a storm have no candidate rule: the cache answers () from the index
    alone, runs no matcher and keeps no entry (a take of 500 notifications of such alerts
    matched each one in full: two thirds of reading them)."""
    rules = RuleSet(
        [
            RuleSpec.model_validate({"name": "a", "match": ["alertname = A"]}),
            RuleSpec.model_validate({"name": "b", "match": ["severity = page", "job = x"]}),
        ]
    )
    calls = count_matches(rules)
    cache = MatchCache(rules)
    for n in range(100):
        assert cache({"alertname": "Other", "severity": "low", "n": str(n)}, f"f{n}") == ()
    assert calls == []
    assert cache._found == {}
    taken = {"alertname": "Other", "severity": "page", "job": "x"}
    assert [r.name for r in cache(taken, "g")] == ["b"]
    assert calls == [taken]
    assert rules.candidates({"alertname": "A", "severity": "page"}) == [0, 1]
    assert rules.candidates({"alertname": "B"}) == []
