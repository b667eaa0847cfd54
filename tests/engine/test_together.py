"""The parts of an `all:` step share one mark-executing: it runs once, and when it says
the step is no longer ours (ClaimLost, StepCancelled) no part sends anything."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from remediator.actions.base import BeforeSend, Outcome, Plan
from remediator.config.models import Host
from remediator.engine.together import combined, run_together
from remediator.errors import ActionError, ClaimLost, StepCancelled
from remediator.store.records import StepState


@dataclass
class FakeAction:
    """Waits `connect_s` (as an SSH connect would), marks, then 'sends' (records it)."""

    name: str
    connect_s: float = 0.0
    fail: str | None = None
    sent: list[str] = field(default_factory=list)

    async def execute(self, plan: Plan, before_send: BeforeSend) -> Outcome:
        await asyncio.sleep(self.connect_s)
        await before_send()
        self.sent.append(plan.action)
        if self.fail is not None:
            raise ActionError(self.fail)
        return Outcome(ok=True, output=f"{plan.action} done")


def plans(*names: str) -> list[Plan]:
    return [Plan(name, Host(name="h", address="127.0.0.1", port=22, user="ops")) for name in names]


async def test_the_mark_runs_once_for_every_part() -> None:
    """Three parts reaching before_send at different times: the step is marked once,
    every part waits for that one mark, then all three send."""
    marks: list[int] = []

    async def mark() -> None:
        marks.append(1)
        await asyncio.sleep(0.05)  # a store write; the later parts arrive meanwhile

    actions = [FakeAction("a"), FakeAction("b", connect_s=0.01), FakeAction("c", connect_s=0.02)]
    results = await run_together(list(zip(actions, plans("a", "b", "c"), strict=True)), mark)
    assert marks == [1]
    assert [a.sent for a in actions] == [["a"], ["b"], ["c"]]
    assert [r.state for r in results] == [StepState.SUCCEEDED] * 3


@pytest.mark.parametrize("lost", [ClaimLost("taken"), StepCancelled("cancelled")])
async def test_a_lost_or_cancelled_mark_reaches_every_part_and_none_sends(
    lost: ClaimLost,
) -> None:
    """The mark finds the work taken by another replica or cancelled: every part gets
    that exception, none sends, and the step raises it (as a step of one action does)."""
    calls: list[int] = []

    async def mark() -> None:
        calls.append(1)
        await asyncio.sleep(0.01)
        raise lost

    actions = [FakeAction("a"), FakeAction("b", connect_s=0.005)]
    with pytest.raises(type(lost)):
        await run_together(list(zip(actions, plans("a", "b"), strict=True)), mark)
    assert calls == [1]
    assert [a.sent for a in actions] == [[], []]


async def test_a_failed_part_fails_the_step_and_the_others_finish() -> None:
    """One part fails, the slower one still runs to its end; the step is failed and its
    error names the failed part; output is labelled by part."""
    actions = [FakeAction("a", fail="boom"), FakeAction("b", connect_s=0.05)]

    async def mark() -> None:
        return None

    results = await run_together(list(zip(actions, plans("a", "b"), strict=True)), mark)
    assert actions[1].sent == ["b"]
    state, outcome = combined(results)
    assert state is StepState.FAILED
    assert not outcome.ok
    assert outcome.error == "part 1 (a) failed: boom"
    assert outcome.output == "[part 1 (a): failed]\n[part 2 (b): succeeded]\nb done"


@dataclass
class BuggyAction:
    """Raises something no action should (a bug), before or after sending."""

    after_send: bool

    async def execute(self, plan: Plan, before_send: BeforeSend) -> Outcome:
        if self.after_send:
            await before_send()
        raise KeyError("a bug")


@pytest.mark.parametrize(
    ("after_send", "state"), [(False, StepState.FAILED), (True, StepState.UNKNOWN)]
)
async def test_a_bug_in_one_part_fails_it_alone_and_keeps_the_others_outcomes(
    after_send: bool, state: StepState
) -> None:
    """A part that raises an unexpected error is that part's outcome (failed if it broke
    before the step was marked, unknown after: it may have sent); the other part still
    sends and its outcome is kept, so the audit says which parts ran."""
    marks: list[int] = []

    async def mark() -> None:
        marks.append(1)

    good = FakeAction("good", connect_s=0.05)
    actions = [good, BuggyAction(after_send)]
    results = await run_together(list(zip(actions, plans("good", "buggy"), strict=True)), mark)  # type: ignore[arg-type]
    assert [r.state for r in results] == [StepState.SUCCEEDED, state]
    assert "internal error: KeyError" in (results[1].outcome.error or "")
    assert good.sent == ["good"]
    assert marks == [1]
