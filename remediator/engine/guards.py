"""Guards: what may hold a step back, checked in the transaction that starts the step.

Final guards (quarantine, cooldown, max_runs, max_targets) refuse a new incident's first
step and the incident escalates. Deferring guards (pause, maintenance, per-target lock, group
`max_unavailable`, `max_concurrent_actions`, `max_actions_per_minute`) keep the step
pending and say when to look again; a group member stays unavailable until its incident
closes, not only while a step runs or verifies. Checking and starting happen in one write
transaction that first locks the step's guard scopes (`Guards.scopes`: its target, its
limited groups, the global limits when set), so replicas sharing a PostgreSQL store take
turns per scope and two steps can never both pass a guard that only one may pass.

A held step records the scope that holds it (`Verdict.scope`) and waits for that scope's
slot to free, not a timer of its own: the transaction freeing a slot (an incident closing
or handed over, a step ending) wakes as many of the scope's holds as could pass, one per
freed slot, oldest first (escalation.free_target, step_ended); one woken but held by
another scope passes the slot on, one that starts passes the look on (held again, the
chain stops). Every HELD_NET_S the oldest hold of each scope looks again (the net under a
missed wake: one look per scope, not per held step). A reload and a resume wake every
hold, a restart those its settled steps free. A target lock, maintenance and the rate
limit are also looked at when they end (`Verdict.until`); every hold by its
`hold_timeout` at the latest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from croniter import croniter

from remediator.config.durations import format_duration
from remediator.config.models import Config, RuleSpec
from remediator.store.base import GuardTx
from remediator.store.records import Incident

RECHECK_S = 15.0  # a deferring guard with no known end and no wake is looked at this often
# Guards whose holds are woken when their scope frees (escalation.free_target, step_ended,
# a resume, a reload): held until then, or their hold_timeout. A target lock is woken so
# too (its oldest hold first), and also looked at when its holder's verify window ends
# (the holder may go on to its next step, or the held step may go between two).
WOKEN = frozenset({"pause", "group", "max_concurrent_actions"})
# Guards a step that stops running may free (settle_orphans wakes them all).
FREED_BY_STEP = ("target_lock", "group", "max_concurrent_actions")
# max_concurrent_actions is woken by each step ending; a step ending on a path that does
# not say so (a claim lost before the command was sent) is caught by this net.
CONCURRENCY_RECHECK_S = 300.0
# Guards during which humans are told at once: automation is off, not merely busy.
NOTIFY_AT_ONCE = frozenset({"pause", "maintenance"})
GLOBAL = "global"  # the scope of the pause, maintenance and the global limits


def target_scope(target: str) -> str:
    """The guard scope of one target (its lock)."""
    return f"target:{target}"


def group_scope(group: str) -> str:
    """The guard scope of one limited group (its `max_unavailable` slots)."""
    return f"group:{group}"


@dataclass(frozen=True)
class Verdict:
    """A guard holding a step back: which, why, final or not, and until when if known."""

    guard: str
    reason: str
    final: bool = False
    until: float | None = None
    targets: tuple[str, ...] = ()  # max_targets: the targets acted on in its window
    scope: str | None = None  # deferring: the guard scope whose freed slot wakes the step

    def detail(self) -> dict[str, Any]:
        """For the audit row."""
        out: dict[str, Any] = {"guard": self.guard, "reason": self.reason}
        if self.until is not None:
            out["until"] = self.until
        return out


def _since(seconds: float) -> str:
    return format_duration(max(seconds, 0.0))


def maintenance_until(config: Config, now: float) -> float | None:
    """The end of the maintenance window `now` falls in, if any (cron in UTC)."""
    moment = datetime.fromtimestamp(now, UTC)
    ends = []
    for window in config.policies.safety.maintenance:
        start = croniter(window.cron, moment).get_prev(float)
        if start <= now < start + window.duration:
            ends.append(start + window.duration)
    return max(ends) if ends else None


async def _first_end(tx: GuardTx, targets: list[str]) -> float | None:
    """When the first of these targets' verify windows ends (None while a step runs)."""
    ends = await tx.verify_ends(targets)
    return min(ends) if ends else None


class Guards:
    """Evaluates every guard for one step about to start."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.safety = config.policies.safety
        # Members of each limited group, from the inventory, once per config.
        self.members = {
            group: [h.name for h in config.hosts.values() if group in h.groups]
            for group in self.safety.groups
        }
        # Rules with a blast radius: their first steps take turns across targets.
        self.limited_rules = frozenset(r.name for r in config.rules if r.max_targets)

    def scopes(self, incident: Incident) -> list[str]:
        """What a step of this incident reads and takes: steps sharing none of these may
        start at once on two replicas. Quarantine, cooldown and max_runs are per rule and
        target, so the target's scope covers them; max_targets spans a rule's targets, so
        a rule that sets it is a scope too."""
        scopes = []
        if self.safety.max_concurrent_actions or self.safety.max_actions_per_minute:
            scopes.append(GLOBAL)
        if incident.rule in self.limited_rules:
            scopes.append(f"rule:{incident.rule}")
        if incident.target is not None:
            scopes.append(target_scope(incident.target))
            scopes.extend(group_scope(group) for group in self.limited_groups(incident.target))
        return scopes

    def limited_groups(self, target: str) -> list[str]:
        """The groups with a `max_unavailable` that `target` is a member of."""
        host = self.config.hosts.get(target)
        return [g for g in host.groups if g in self.safety.groups] if host is not None else []

    async def check(
        self,
        tx: GuardTx,
        incident: Incident,
        rule: RuleSpec,
        *,
        first_run: bool,
        now: float,
        approved: bool = False,
    ) -> Verdict | None:
        """The first guard that holds this step back, or None when it may start.

        `first_run`: the incident's first step, never dispatched before (a retry after a
        crash is not a new run, and its own cooldown must not refuse it). `approved`: humans
        approved this step; it goes before steps still waiting for (or not yet asking) theirs.
        """
        if first_run and incident.target is not None:
            for final in (self._quarantine, self._cooldown, self._max_runs, self._max_targets):
                verdict = await final(tx, rule, incident.target, now)
                if verdict is not None:
                    return verdict
        for deferring in (self._pause, self._maintenance):
            verdict = await deferring(tx, incident, now)
            if verdict is not None:
                return verdict
        verdict = await self._target_lock(tx, incident, approved)
        if verdict is not None:
            return verdict
        for deferring in (self._group, self._concurrency, self._rate):
            verdict = await deferring(tx, incident, now)
            if verdict is not None:
                return verdict
        return None

    # --- final ------------------------------------------------------------------------

    async def _quarantine(
        self, tx: GuardTx, rule: RuleSpec, target: str, now: float
    ) -> Verdict | None:
        health = await tx.target_health(rule.name, target)
        if health is None or health.quarantined_at is None:
            return None
        reason = (
            f"quarantined: {health.failures} failed remediations in a row of {rule.name} on "
            f"{target}; a human must release it (`remediator release {rule.name} {target}`)"
        )
        return Verdict("quarantine", reason, final=True)

    async def _cooldown(
        self, tx: GuardTx, rule: RuleSpec, target: str, now: float
    ) -> Verdict | None:
        until = await tx.cooldown_until(rule.name, target)
        if until is None or until <= now:
            return None
        return Verdict("cooldown", f"cooldown for {_since(until - now)}", final=True, until=until)

    async def _max_runs(
        self, tx: GuardTx, rule: RuleSpec, target: str, now: float
    ) -> Verdict | None:
        limit = rule.max_runs
        if limit is None:
            return None
        starts = await tx.run_starts_since(rule.name, target, now - limit.window_s)
        if len(starts) < limit.count:
            return None
        until = starts[-limit.count] + limit.window_s
        reason = (
            f"max_runs: {len(starts)} runs on {target} in the last "
            f"{format_duration(limit.window_s)} (limit {limit.count}); next allowed in "
            f"{_since(until - now)}"
        )
        return Verdict("max_runs", reason, final=True, until=until)

    async def _max_targets(
        self, tx: GuardTx, rule: RuleSpec, target: str, now: float
    ) -> Verdict | None:
        """A rule's blast radius: distinct targets it started a first step on in its
        window. Acting again on one of them does not widen it (max_runs limits that)."""
        limit = rule.max_targets
        if limit is None:
            return None
        acted = await tx.rule_targets_since(rule.name, now - limit.window_s)
        if target in acted or len(acted) < limit.count:
            return None
        until = sorted(acted.values())[len(acted) - limit.count] + limit.window_s
        names = sorted(acted)
        reason = (
            f"max_targets: {rule.name} acted on {len(acted)} targets in the last "
            f"{format_duration(limit.window_s)} (limit {limit.count}: {', '.join(names)}); "
            f"not widened to {target}, humans decide; next target allowed in {_since(until - now)}"
        )
        return Verdict("max_targets", reason, final=True, until=until, targets=tuple(names))

    # --- deferring --------------------------------------------------------------------

    async def _pause(self, tx: GuardTx, incident: Incident, now: float) -> Verdict | None:
        pause = await tx.pause()
        if not pause.paused:
            return None
        why = pause.reason or "no reason given"
        return Verdict("pause", f"automation is paused: {why}", scope=GLOBAL)

    async def _maintenance(self, tx: GuardTx, incident: Incident, now: float) -> Verdict | None:
        until = maintenance_until(self.config, now)
        if until is None:
            return None
        reason = f"maintenance window (notify only) for {_since(until - now)}"
        return Verdict("maintenance", reason, until=until, scope=GLOBAL)

    async def _target_lock(self, tx: GuardTx, incident: Incident, approved: bool) -> Verdict | None:
        """One remediation per host: running, verifying, or waiting for its approvers.

        An approved step only waits for one running or verifying: two approved steps, or an
        approved one and one asking, can never wait for each other.
        """
        if incident.target is None:
            return None
        holder = await tx.lock_holder(incident.target, incident.id, approvals_too=not approved)
        if holder is None:
            return None
        other, doing = holder
        reason = f"another remediation of {incident.target} (incident {other}) is {doing}"
        until = await _first_end(tx, [incident.target])
        return Verdict("target_lock", reason, until=until, scope=target_scope(incident.target))

    async def _group(self, tx: GuardTx, incident: Incident, now: float) -> Verdict | None:
        """`max_unavailable`: members with an open incident acted on them count until it
        closes (a PodDisruptionBudget's disrupted pods), this incident's host never."""
        host = self.config.hosts.get(incident.target) if incident.target else None
        if host is None:
            return None
        for group in host.groups:
            limit = self.safety.groups.get(group)
            if limit is None:
                continue
            members = self.members[group]
            others = [name for name in members if name != host.name]
            down = await tx.unavailable_targets(others, incident.id)
            if len(down) >= limit.allowed(len(members)):
                shown = ", ".join(f"{name} {down[name]}" for name in sorted(down))
                reason = (
                    f"group {group}: {len(down)} member(s) unavailable ({shown}), "
                    f"max_unavailable {limit.shown(len(members))}"
                )
                # Members free up as their incidents close (or a command still running
                # on a closed one ends), which wakes the oldest step this group holds.
                return Verdict("group", reason, scope=group_scope(group))
        return None

    async def _concurrency(self, tx: GuardTx, incident: Incident, now: float) -> Verdict | None:
        limit = self.safety.max_concurrent_actions
        if limit is None:
            return None
        running = await tx.steps_in_flight(incident.id)
        if running < limit:
            return None
        reason = f"{running} actions running (limit {limit})"
        return Verdict("max_concurrent_actions", reason, scope=GLOBAL)

    async def _rate(self, tx: GuardTx, incident: Incident, now: float) -> Verdict | None:
        limit = self.safety.max_actions_per_minute
        if limit is None:
            return None
        starts = await tx.step_starts_since(now - 60.0)
        if len(starts) < limit:
            return None
        until = starts[-limit] + 60.0
        reason = f"{len(starts)} actions in the last minute (limit {limit})"
        return Verdict("max_actions_per_minute", reason, until=until, scope=GLOBAL)
