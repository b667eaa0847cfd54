"""Fault injection inside a real `remediator serve` child: chosen items raise, as a bug would.

An alert with the label `fault=<loop>` makes its item raise in that loop (intake, work,
outbox); a Slack click by user UFAULT raises while it is decided; a webhook body containing `fault-ingest` raises while it is stored; a file
named FAULT_RELOAD beside the config makes reloads raise, FAULT_WORK_LOOP makes the work
loop itself die (and die again when restarted) while the file is there. Nothing else changes: the rest is the shipped daemon.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BOOT = (
    "import sys; sys.path.insert(0, {tests!r}); import support.faults as f; f.install(); "
    "from remediator.cli import main; raise SystemExit(main(sys.argv[1:]))"
)


def boot_command(python: str) -> list[str]:
    """argv that starts the daemon with faults installed (append `serve -c FILE`)."""
    tests = str(Path(__file__).resolve().parent.parent)
    return [python, "-c", BOOT.format(tests=tests)]


def _fault(labels: dict[str, str], loop: str) -> None:
    if labels.get("fault") == loop:
        raise RuntimeError(f"injected fault in the {loop} loop")


def install() -> None:
    """Patch the daemon's item handlers (call before main)."""
    import remediator.notify.outbox as outbox
    import remediator.reload as reload
    from remediator.engine import Engine, approvals
    from remediator.engine.intake import Intake
    from remediator.engine.runner import Runner
    from remediator.store.sqlite import SqliteStore

    transition = Intake._transition

    async def faulty_transition(
        self: Intake, tx: Any, previous: Any, alert: Any, *rest: Any
    ) -> None:
        _fault(alert.labels, "intake")
        await transition(self, tx, previous, alert, *rest)

    plan = Runner._plan

    def faulty_plan(self: Runner, incident: Any, rule: Any, spec: Any) -> Any:
        _fault(incident.labels, "work")
        return plan(self, incident, rule, spec)

    page_message = outbox.page_message

    def faulty_page_message(view: Any, reason: str, position: str) -> Any:
        _fault(view.incident.labels, "outbox")
        return page_message(view, reason, position)

    append = SqliteStore.append_inbox

    async def faulty_append(self: SqliteStore, rows: list[tuple[float, str]]) -> None:
        if any("fault-ingest" in body for _, body in rows):
            raise RuntimeError("injected fault in the ingest loop")
        await append(self, rows)

    load_config = reload.load_config

    def faulty_load(path: Path) -> Any:
        if (path.parent / "FAULT_RELOAD").exists():
            raise RuntimeError("injected fault in the reload")
        return load_config(path)

    dispatch_due = Engine._dispatch_due

    async def faulty_dispatch_due(self: Engine) -> None:
        if Path("FAULT_WORK_LOOP").exists():
            raise RuntimeError("injected fault: the work loop dies")
        await dispatch_due(self)

    acknowledge = approvals.acknowledge

    async def faulty_acknowledge(ctx: Any, tx: Any, approval_id: int, voter: Any, now: Any) -> Any:
        if voter.key == "UFAULT":
            raise RuntimeError("injected fault in a Slack click")
        return await acknowledge(ctx, tx, approval_id, voter, now)

    approvals.acknowledge = faulty_acknowledge  # type: ignore[assignment]
    Intake._transition = faulty_transition  # type: ignore[method-assign]
    Runner._plan = faulty_plan  # type: ignore[method-assign]
    outbox.page_message = faulty_page_message  # type: ignore[assignment]
    SqliteStore.append_inbox = faulty_append  # type: ignore[method-assign]
    reload.load_config = faulty_load  # type: ignore[assignment]
    Engine._dispatch_due = faulty_dispatch_due  # type: ignore[method-assign]
