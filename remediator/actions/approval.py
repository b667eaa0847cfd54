"""Which steps wait for a human, decided on the rendered Plan: what will actually run.

A policy's `approvals.always_for` lists action names (`block_ips`: every such step) and
`ACTION:WORD` entries (`ssh:reboot`), each may name the approval policy that asks
(`{action: firewall_lockdown, policy: security}`). WORD is looked for in the plan's commands after
rendering, so `argv: [systemctl, "{{ labels.verb }}"]` with `verb=reboot` matches. The
match is deliberately wide (a wrong match costs a click, a missed one a reboot):

- every argv element is cut into words at whitespace and shell punctuation, so
  `sh -c "sleep 1; /sbin/reboot"` holds `reboot`;
- a word counts by its basename (`/sbin/reboot`), without leading dashes (`--reboot`)
  and without a suffix (`reboot.target`, `reboot.sh`), in any case;
- the words that take a host down (POWER_WORDS) stand for each other: `ssh:reboot` also
  covers `shutdown -r now`, `systemctl poweroff`, `halt`, `kexec` and `init 6`;
- `ssh:WORD` looks at the commands of every action that runs commands over SSH (a
  `restart_service` of `reboot.target` reboots the host as surely as `ssh`);
- for `http`, the words are the method and the URL's path segments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from remediator.config.policies import APPROVAL_WORDS, DEFAULT_POLICY
from remediator.config.steps import action_types, unknown_action
from remediator.errors import ActionError

if TYPE_CHECKING:  # the config loader imports this module; Plan imports the config models
    from remediator.actions.base import Plan
    from remediator.config.policies import AlwaysFor

# Where an approval's stored command keeps the policy it was asked under (not `default`).
POLICY_KEY = "approval_policy"

# Commands, systemctl verbs and systemd units that stop, restart or isolate the whole host
# (a unit counts by its name with `systemd-` dropped: systemd-reboot.service is reboot).
POWER_WORDS = frozenset(
    {
        "reboot",
        "poweroff",
        "halt",
        "shutdown",
        "kexec",
        "soft-reboot",
        "init",
        "telinit",
        "ctrl-alt-del",
        "runlevel0",
        "runlevel6",
        "rescue",
        "emergency",
        "isolate",
        "suspend",
        "hibernate",
        "hybrid-sleep",
        "suspend-then-hibernate",
    }
)
_WORD_BREAK = re.compile(r"[\s;&|()<>`$'\"\\=,{}!*?\[\]#~]+")


def _normalise(token: str) -> set[str]:
    """`/sbin/Reboot.target` -> {reboot.target, reboot}."""
    base = token.rsplit("/", 1)[-1].lstrip("-").lower()
    stem = base.split(".", 1)[0]
    return {base, stem, stem.removeprefix("systemd-")} - {""}


def words(elements: Iterable[str]) -> set[str]:
    """Every word of these argv elements (or path segments), normalised as above."""
    found: set[str] = set()
    for element in elements:
        for token in _WORD_BREAK.split(element):
            found |= _normalise(token)
    return found


def plan_words(plan: Plan) -> set[str]:
    """The words an `ACTION:WORD` entry is looked for in: argv, or an HTTP method and path."""
    found = words(element for argv in plan.commands for element in argv)
    if plan.request is not None:
        path = urlsplit(str(plan.request.get("url", ""))).path
        found |= words(unquote(segment) for segment in path.split("/"))
        found |= words([str(plan.request.get("method", ""))])
    return found


def _entry_applies(entry_action: str, plan_action: str) -> bool:
    if entry_action == "ssh":
        kind = action_types().get(plan_action)
        return kind is not None and kind.needs_ssh
    return entry_action == plan_action


def _word_matches(word: str, found: set[str]) -> bool:
    word = word.lower()
    if word in POWER_WORDS:
        return bool(found & POWER_WORDS)
    return word in found


def always_required(action: str, approval: str) -> bool:
    """Whether a step waits for a human whatever `always_for` says."""
    kind = action_types().get(action)
    return approval != "auto" or (kind is not None and kind.always_needs_approval)


def static_policy(action: str, approval: str) -> str | None:
    """The policy a step (or part) asks before any `always_for` entry: by its `approval:`
    (a policy's name, `required` for `default`) or its action's always needing one."""
    if approval not in APPROVAL_WORDS:
        return approval
    return DEFAULT_POLICY if always_required(action, approval) else None


def _matching(plan: Plan, always_for: Sequence[AlwaysFor]) -> list[AlwaysFor]:
    found: set[str] | None = None
    matched = []
    for entry in always_for:
        action, colon, word = entry.action.partition(":")
        if not colon:
            if action == plan.action:
                matched.append(entry)
            continue
        if _entry_applies(action, plan.action):
            found = plan_words(plan) if found is None else found
            if _word_matches(word, found):
                matched.append(entry)
    return matched


def plan_approval_policy(plan: Plan, approval: str, always_for: Sequence[AlwaysFor]) -> str | None:
    """The approval policy this rendered step waits under, or None when it runs unasked.

    The policies that apply are those the matching `always_for` entries name (their
    owners decide who approves what they cover, whatever a rule says) and the step's (or
    rule's) `approval:` when it names one; with none of them, `default`. When they
    disagree the step is refused (ActionError; its incident goes to humans): neither the
    order of `always_for` nor words a label puts in the command may pick the approvers.
    """
    matched = _matching(plan, always_for)
    named = {entry.policy for entry in matched if entry.policy is not None}
    if approval not in APPROVAL_WORDS:
        named.add(approval)
    if len(named) > 1:
        raise ActionError(
            f"approval policies {', '.join(sorted(named))} all apply to this step "
            "(always_for entries and its approval:); it needs one: make them agree"
        )
    if named:
        return named.pop()
    if matched or always_required(plan.action, approval):
        return DEFAULT_POLICY
    return None


def parts_approval_policy(
    parts: Sequence[tuple[Plan, str]], always_for: Sequence[AlwaysFor]
) -> str | None:
    """The one approval policy an `all:` step (its parts' plans, each with its approval)
    waits under, or None; ActionError when its parts need different ones (one request
    asks once for every part)."""
    found = {n: plan_approval_policy(p, a, always_for) for n, (p, a) in enumerate(parts)}
    named = {policy for policy in found.values() if policy is not None}
    if len(named) > 1:
        which = ", ".join(f"part {n + 1}: {policy}" for n, policy in found.items() if policy)
        raise ActionError(
            f"the parts of this all: step need different approval policies ({which}); "
            "one approval asks once for every part: make them agree"
        )
    return named.pop() if named else None


def approval_command(described: dict[str, Any], policy: str) -> dict[str, Any]:
    """What humans are asked to approve: the plan, and the policy when not `default`."""
    return described if policy == DEFAULT_POLICY else {**described, POLICY_KEY: policy}


def policy_of(command: Any) -> str:
    """The policy an approval's stored command was asked under."""
    policy = command.get(POLICY_KEY) if isinstance(command, dict) else None
    return policy if isinstance(policy, str) else DEFAULT_POLICY


def check_always_for(entry: str) -> str | None:
    """What is wrong with an `always_for` entry, or None (used by `remediator check`)."""
    action, colon, word = entry.partition(":")
    why = unknown_action(action)
    if why is not None:
        return f"{entry!r}: {why}"
    if colon and (not word or _WORD_BREAK.search(word) or "/" in word):
        return f"{entry!r}: write one word after the colon, like ssh:reboot"
    return None
