"""Rule matching: the index gives exactly the full scan's answer, first match and continue."""

from __future__ import annotations

import random

from remediator.config.models import RuleSpec
from remediator.rules import RuleSet

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
