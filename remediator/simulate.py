"""The real engine on a fake clock in dry-run, for `remediator test` and `remediator replay`.

A `Simulation` owns a throw-away SQLite store, feeds it webhook bodies and human
decisions at chosen times, runs every timer that falls due in between (in due order,
at its due time), and reads back the decisions the engine recorded in the audit trail.
Nothing is sent anywhere: every step is dry-run, notifications stay in the outbox.
The store starts no process and runs no migration (see simstore.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import yaml

from remediator.actions import SshPool, build_registry
from remediator.actions.sshpool import SshSettings
from remediator.alerts import parse_alerts
from remediator.clock import FakeClock
from remediator.config.durations import format_duration
from remediator.config.models import Config
from remediator.engine import Engine, EngineContext, approvals
from remediator.engine.decisions import Outcome, Result, Voter
from remediator.errors import RemediatorError
from remediator.metrics import Metrics
from remediator.simstore import SimStore
from remediator.store.records import AuditRow, Incident

MAX_TICKS = 10_000  # timers run between two inputs before the simulation gives up
# Decisions the audit does not show (a refusal is audited; these leave no row).
_UNRECORDED = frozenset(
    {
        Result.UNKNOWN_INCIDENT,
        Result.UNKNOWN_APPROVAL,
        Result.ALREADY_VOTED,
        Result.ALREADY_DECIDED,
        Result.NOTHING_WAITING,
    }
)


def dry_run_config(config: Config) -> Config:
    """The same config with every step forced to dry-run."""
    return config.model_copy(update={"file": config.file.model_copy(update={"dry_run": True})})


def _offline_ssh(config: Config) -> SshPool | None:
    """An SSH pool that plans commands but is never connected (every step is dry-run)."""
    ssh = config.file.ssh
    if ssh is None:
        return None
    settings = SshSettings(
        known_hosts=config.resolve_path(ssh.known_hosts),
        client_keys=tuple(config.resolve_path(k) for k in ssh.client_keys),
        connect_timeout_s=ssh.connect_timeout,
        command_timeout_s=ssh.command_timeout,
        connect_attempts=ssh.connect_attempts,
    )
    return SshPool(settings)


def format_at(seconds: float) -> str:
    """A time since the start as a duration (`0s` for the start itself)."""
    return format_duration(seconds) if seconds >= 1 else "0s"


def pace(count: int, seconds: float, each: str) -> str:
    """`in 9.8 s (134 ms per case)`: how long a run took, and per item when there were any."""
    if not count:
        return f"in {seconds:.1f} s"
    ms = seconds / count * 1000
    per = f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"  # 134, 26.1, 0.41
    return f"in {seconds:.1f} s ({per} ms per {each})"


def flow(item: dict[str, Any]) -> str:
    """One mapping as a line of YAML flow style, as test files write decisions."""
    text = yaml.safe_dump(item, default_flow_style=True, sort_keys=False, width=10**6)
    return text.strip()


@dataclass(frozen=True)
class Decision:
    """One decision the engine made, as `remediator test` compares it."""

    at: float  # seconds since the simulation started
    incident: int | None
    fields: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """`at` and `incident` first, then what was decided."""
        out: dict[str, Any] = {"at": format_at(self.at)}
        if self.incident is not None:
            out["incident"] = self.incident
        return {**out, **self.fields}


def _step(detail: dict[str, Any]) -> dict[str, Any]:
    return {"step": int(detail["step"]) + 1} if "step" in detail else {}


def _run(detail: dict[str, Any]) -> dict[str, Any]:
    plan = detail.get("would_run") or {}
    out: dict[str, Any] = {"run": plan.get("action", detail.get("action", "")), **_step(detail)}
    if isinstance(plan.get("parts"), list):  # an `all:` step: what each part would run
        out["parts"] = [{"run": p.get("action", ""), **_would_run(p)} for p in plan["parts"]]
    return out | _would_run(plan)


def _would_run(plan: dict[str, Any]) -> dict[str, Any]:
    """Where and what one plan would run (host, argv, input, request, message)."""
    out: dict[str, Any] = {}
    if "host" in plan:
        out["host"] = plan["host"]
    if plan.get("commands"):
        out["argv"] = plan["commands"] if len(plan["commands"]) > 1 else plan["commands"][0]
    if any(plan.get("stdin") or []):  # e.g. the nftables script piped to `nft -f -`
        out["stdin"] = [line for text in plan["stdin"] if text for line in text.splitlines()]
    if "request" in plan:
        keep = ("method", "url", "json")
        out["request"] = {k: plan["request"][k] for k in keep if plan["request"].get(k) is not None}
    if "message" in plan:
        out["message"] = plan["message"]
    return out


def _reason(d: dict[str, Any]) -> dict[str, Any]:
    return {"reason": d["reason"]} if "reason" in d else {}


def _matched(d: dict[str, Any], incident: Incident | None) -> dict[str, Any]:
    target = {"target": incident.target} if incident and incident.target else {}
    return {"matched": d["rule"], **target}


def _page(d: dict[str, Any], _: Incident | None) -> dict[str, Any]:
    out = {"page": d["notify"], "chain": d["chain"], "step": int(d["step"]) + 1}
    return out | ({"repeat": d["cycle"]} if d.get("cycle") else {})


Describer = Callable[[dict[str, Any], Incident | None], dict[str, Any]]
# Audit events that are decisions, and how `remediator test` names them; the others
# (dispatching, executing, verifying, scheduled...) are bookkeeping.
DESCRIBE: dict[str, Describer] = {
    "matched": _matched,
    "require_failed": lambda d, _: {"refused": "require", **_reason(d)},
    "target_refused": lambda d, _: {"refused": "target", **_reason(d)},
    "step_refused": lambda d, _: {"refused": "step", **_step(d), **_reason(d)},
    "guard_refused": lambda d, _: {"refused": d["guard"], **_step(d), **_reason(d)},
    "guard_held": lambda d, _: {"held": d["guard"], **_step(d), **_reason(d)},
    "hold_timeout": lambda d, _: {"hold_timeout": d["guard"], **_step(d)},
    "approval_requested": lambda d, _: {
        "approval": d["action"],
        **_step(d),
        "required": d["required"],
        **({"policy": d["policy"]} if "policy" in d else {}),
    },
    "approved": lambda d, _: {"approved": d["approvers"], **_step(d)},
    "approval_denied": lambda d, _: {"denied": d["by"], **_step(d)},
    "approval_expired": lambda d, _: {"approval_expired": True},
    "approval_refused": lambda d, _: {"approval_refused": d["by"]},
    "ack_refused": lambda d, _: {"ack_refused": d["by"]},
    "exhausted": lambda d, _: {"exhausted": d["reason"]},
    "escalate_fallback": lambda d, _: {"escalate_fallback": d["chain"], **_reason(d)},
    "escalation_started": lambda d, _: {"escalate": d["chain"]},
    "escalation_notified": _page,
    "acknowledged": lambda d, _: {"acknowledged": d["by"]},
    "paging_acknowledged": lambda d, _: {"paging_acknowledged": d["by"]},
    "handed_to_acknowledger": lambda d, _: {"handed_to": d["by"], "chain": d["chain"]},
    "resolved": lambda d, _: {"closed": d["state"]},
    "quarantined": lambda d, _: {"quarantined": d["target"]},
    "silence_dry_run": lambda d, _: {
        "silence": format_duration(float(d["would_last_s"])),
        **_step(d),
    },
    **{
        f"step_{state}": lambda d, _: _run(d)
        for state in ("dry_run", "succeeded", "failed", "unknown")
    },
}


def describe(row: AuditRow, incident: Incident | None) -> dict[str, Any] | None:
    """What an audit row decided, or None for a bookkeeping row."""
    describer = DESCRIBE.get(row.event)
    return describer(row.detail, incident) if describer else None


class Simulation:
    """Use as `async with Simulation(config) as sim:`; times are seconds from the start."""

    def __init__(self, config: Config, start: float = 1_767_607_200.0) -> None:
        # Default start: Monday 2026-01-05 10:00 UTC, outside any weekend window.
        self.config = dry_run_config(config)
        self.clock = FakeClock(start)
        self.start = start
        self._pool = _offline_ssh(self.config)
        self.store = SimStore()
        self.ctx = EngineContext(
            self.config, self.store, build_registry(self._pool), self.clock, Metrics()
        )
        self.engine = Engine(self.ctx, max_parallel=1)  # one at a time: the same order every run
        self._seen = 0
        self._settled_at: float | None = None  # the time of the last tick, if no input since
        self._unrecorded: list[Decision] = []  # human inputs that changed nothing

    async def __aenter__(self) -> Simulation:
        await self.store.open()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._pool is not None:
            await self._pool.close()
        await self.store.close()

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return self.clock.now() - self.start

    async def _tick(self) -> None:
        """Engine.tick, unless one ran to its end at this very time with no input since:
        it drains the inbox and claims until nothing is due, so another finds nothing."""
        if self._settled_at == self.clock.t:
            return
        self._settled_at = None
        await self.engine.tick()
        self._settled_at = self.clock.t

    async def run_until(self, at: float) -> None:
        """Run every timer due before `at`, each at its own due time; then stop at `at`."""
        target = self.start + at
        for _ in range(MAX_TICKS):
            await self._tick()
            async with self.store.read() as tx:
                due = await tx.next_due()
            if due is None or due > target:
                break
            self.clock.t = max(self.clock.t, due)
        else:
            raise RemediatorError(
                f"the engine did not settle by {format_duration(at)}: over {MAX_TICKS} timers ran"
            )
        self.clock.t = max(self.clock.t, target)
        # Nothing is due by `target` (next_due said so) and no input came since the last
        # tick: a tick now would find nothing to do, so the next input's tick comes next.
        self._settled_at = self.clock.t

    async def send(self, body: str) -> None:
        """Store one webhook body as the receiver would (it must parse), then let it run."""
        parse_alerts(body)
        self._settled_at = None
        await self.store.append_inbox([(self.clock.now(), body)])
        await self._tick()

    async def decide(self, incident: int, decision: str, by: str) -> Outcome:
        """approve / deny the incident's pending approval, or ack it, as a human would."""
        now = self.clock.now()
        self._settled_at = None
        async with self.store.write() as tx:
            outcome = await approvals.decide_incident(
                self.ctx, tx, incident, decision, Voter.person(by, "test"), None, now
            )
        if outcome.result in _UNRECORDED:  # nothing on record: say so, or a test hides it
            said = {"no_effect": f"{decision} by {by}: {outcome.message}"}
            self._unrecorded.append(Decision(self.elapsed, incident, said))
        await self._tick()
        return outcome

    async def decisions(self) -> list[Decision]:
        """Decisions recorded since the last call, in the order they were made."""
        async with self.store.read() as tx:
            rows = await tx.audit_since(self._seen)
            incidents = {
                i: await tx.incident(i) for i in {r.incident_id for r in rows} if i is not None
            }
        out = []
        for row in rows:
            self._seen = max(self._seen, row.id)
            incident = incidents.get(row.incident_id) if row.incident_id else None
            fields = describe(row, incident)
            if fields is not None:
                out.append(Decision(row.at - self.start, row.incident_id, fields))
        out, self._unrecorded = out + self._unrecorded, []
        return sorted(out, key=lambda d: d.at)  # stable: the audit's order at equal times
