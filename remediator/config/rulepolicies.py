"""What a rule needs from the policies: its escalation chain (literal or templated, with
its fallback; `page_at_start` needs one) and the approval policies it and its steps name."""

from __future__ import annotations

from remediator.actions.approval import always_required, static_policy
from remediator.actions.params import is_template
from remediator.config.models import Policies, RuleSpec, StepSpec
from remediator.config.policies import APPROVAL_WORDS, DEFAULT_POLICY
from remediator.config.problems import Problem
from remediator.config.suggest import did_you_mean


def _escalate_problems(rule: RuleSpec, policies: Policies) -> list[tuple[str, str]]:
    """(key, message) for a rule's `escalate` and `escalate_fallback`."""
    chains = policies.escalations
    known = ", ".join(sorted(chains)) or "none"
    if rule.page_at_start and rule.escalate is None:
        why = (
            "needs a chain to page: add `escalate: CHAIN` (one of: "
            f"{known}), or remove `page_at_start`"
        )
        return [("page_at_start", why)]
    if rule.escalate is None or not is_template(rule.escalate):
        if rule.escalate is not None and rule.escalate not in chains:
            near = did_you_mean(rule.escalate, chains)
            msg = f"escalation chain {rule.escalate!r} is not defined in policies{near}"
            return [("escalate", msg)]
        if rule.escalate_fallback is not None:
            why = "only a templated `escalate` falls back: remove it, or template `escalate`"
            return [("escalate_fallback", why)]
        return []
    if rule.escalate_fallback is None:
        why = (
            f"required: `escalate` is a template ({rule.escalate!r}); name the chain to page"
            f" when what it renders is not a chain (one of: {known})"
        )
        return [("escalate_fallback", why)]
    if rule.escalate_fallback not in chains:
        why = f"escalation chain {rule.escalate_fallback!r} is not defined in policies ({known})"
        return [("escalate_fallback", why)]
    return []


def check_rule_policies(
    rules: list[RuleSpec], origin: dict[str, str], policies: Policies
) -> list[Problem]:
    """What rules need from policies: their escalation chain, an approval policy."""
    problems = []
    for rule in rules:
        file_name, _, line = origin[rule.name].rpartition(":")
        for key, msg in _escalate_problems(rule, policies):
            problems.append(Problem(file_name, int(line), f"rule {rule.name}.{key}", msg))
        for key, msg in _approval_problems(rule, policies):
            problems.append(Problem(file_name, int(line), f"rule {rule.name}.{key}", msg))
    return problems


def _unknown_policy(name: str, policies: Policies) -> str | None:
    """Why `approval: name` names no policy, or None when it is fine."""
    if name in APPROVAL_WORDS:
        return None
    known = policies.approvals.policies if policies.approvals else {}
    if name in known:
        return None
    return (
        f"approval policy {name!r} is not defined in policies: add `approvals.{name}:` "
        f"(approvers, required, timeout, on_timeout, channel), or write `required` (the "
        f"`default` policy), `auto`{''.join(f', `{k}`' for k in known if k != DEFAULT_POLICY)}"
    )


def _approval_problems(rule: RuleSpec, policies: Policies) -> list[tuple[str, str]]:
    """(key, message) for the approval policies a rule and its steps name."""
    problems = []
    if rule.approval is not None and (msg := _unknown_policy(rule.approval, policies)):
        problems.append(("approval", msg))
    for j, step in enumerate(rule.steps):
        if step.approval is not None and (msg := _unknown_policy(step.approval, policies)):
            problems.append((f"steps[{j}].approval", msg))
            continue
        for k, part in enumerate(step.parts):
            key = f"steps[{j}].all[{k}]" if step.is_all else f"steps[{j}]"
            own = part.approval if part is not step else None
            if own is not None and (msg := _unknown_policy(own, policies)):
                problems.append((f"{key}.approval", msg))
                continue
            # Without `approvals:` there is no `always_for`: only these can need one (a
            # named policy is reported above, on the rule, the step or the part).
            approval = rule.approval_of(step, part)
            if (
                policies.approvals is None
                and always_required(part.action, approval)
                and _unknown_policy(approval, policies) is None
            ):
                msg = (
                    f"step {j} ({part.action}) needs approval, but no policy file defines "
                    "`approvals:` (who may approve, timeout, on_timeout)"
                )
                problems.append((key, msg))
        if msg := _parts_disagree(rule, step):
            problems.append((f"steps[{j}].all", msg))
    return problems


def _parts_disagree(rule: RuleSpec, step: StepSpec) -> str | None:
    """Why an `all:` step's parts cannot share one approval request, or None."""
    policies = {
        k: static_policy(part.action, rule.approval_of(step, part))
        for k, part in enumerate(step.parts)
    }
    if not step.is_all or len({p for p in policies.values() if p is not None}) < 2:
        return None
    which = ", ".join(
        f"part {k} ({step.parts[k].action}): {p}" for k, p in policies.items() if p is not None
    )
    return (
        f"its parts ask different approval policies ({which}), but an all: step asks one "
        "approval for every part: give the parts the same `approval:` (or set it once on "
        "the all: step)"
    )
