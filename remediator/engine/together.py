"""An action's run as a step's part, and the parts of an `all:` step run together.

The parts share the step's one `before_send` (mark executing) as a barrier: it runs once
every part is ready to send (or has ended without sending, as a refused SSH connect
does), so the one check that the step is still ours to run (ClaimLost, StepCancelled:
resolved, acknowledged or taken over meanwhile) comes right before every part's send,
however long another part took to connect; when it says no, no part sends anything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from remediator.actions.base import Action, BeforeSend, Outcome, Plan, clip_output
from remediator.errors import ActionError, OutcomeUnknown
from remediator.store.records import StepState

DRY_RUN_OUTPUT = "dry run: nothing was sent"


@dataclass(frozen=True)
class PartResult:
    """How one action (a step, or one part of an `all:` step) went."""

    action: str
    state: StepState
    outcome: Outcome
    elapsed_s: float = 0.0


class MarkOnce:
    """A `before_send` shared by `parts` parts: it runs once, when every part has arrived
    (called it, or ended without calling it), and every caller gets its result."""

    def __init__(self, mark: BeforeSend, parts: int = 1) -> None:
        self._mark = mark
        self._waiting = parts
        self._all_here = asyncio.Event()
        self._done: asyncio.Future[None] | None = None
        if parts <= 0:
            self._all_here.set()

    def part(self) -> tuple[BeforeSend, Callable[[], None]]:
        """One part's `before_send`, and what to call when that part ends."""
        arrived = False

        def arrive() -> None:
            nonlocal arrived
            if not arrived:
                arrived = True
                self._waiting -= 1
                if self._waiting <= 0:
                    self._all_here.set()

        async def before_send() -> None:
            arrive()
            await self()

        return before_send, arrive

    @property
    def marked(self) -> bool:
        """Whether the mark ran and said the step is still ours (parts may have sent)."""
        done = self._done
        return done is not None and done.done() and not done.cancelled() and not done.exception()

    def failure(self) -> BaseException | None:
        """The mark's own exception (ClaimLost, StepCancelled, a store error), if any."""
        done = self._done
        if done is None or not done.done() or done.cancelled():
            return None
        return done.exception()

    async def __call__(self) -> None:
        await self._all_here.wait()
        if self._done is None:
            self._done = asyncio.ensure_future(self._mark())
            # Retrieved here too, should every caller have been cancelled meanwhile.
            self._done.add_done_callback(lambda f: f.cancelled() or f.exception())
        # Shielded: one part cancelled while waiting must not cancel the others' mark.
        await asyncio.shield(self._done)


def dry(plan: Plan) -> PartResult:
    """A dry-run part: nothing sent."""
    return PartResult(plan.action, StepState.DRY_RUN, Outcome(ok=True, output=DRY_RUN_OUTPUT))


async def run_part(action: Action, plan: Plan, before_send: BeforeSend) -> PartResult:
    """Execute one plan; an action's error is its FAILED (or UNKNOWN) outcome."""
    started = time.perf_counter()
    try:
        outcome = await action.execute(plan, before_send)
        state = StepState.SUCCEEDED if outcome.ok else StepState.FAILED
    except OutcomeUnknown as exc:
        outcome, state = Outcome(ok=True, error=str(exc)), StepState.UNKNOWN
    except ActionError as exc:
        outcome, state = Outcome(ok=False, error=str(exc)), StepState.FAILED
    return PartResult(plan.action, state, outcome, time.perf_counter() - started)


async def run_together(
    parts: Sequence[tuple[Action, Plan]], before_send: BeforeSend
) -> list[PartResult]:
    """Start every part at once and wait for all of them (a failed part stops none)."""
    mark = MarkOnce(before_send, len(parts))

    async def one(action: Action, plan: Plan) -> PartResult:
        send, ended = mark.part()
        started = time.perf_counter()
        try:
            return await run_part(action, plan, send)
        except Exception as exc:
            if exc is mark.failure():
                raise
            # A bug in one part: it fails alone, on record. Sent or not cannot be known
            # once the step was marked; before that, it sent nothing.
            why = f"internal error: {type(exc).__name__}: {exc}"
            state = StepState.UNKNOWN if mark.marked else StepState.FAILED
            outcome = Outcome(ok=state is StepState.UNKNOWN, error=why)
            return PartResult(plan.action, state, outcome, time.perf_counter() - started)
        finally:
            ended()

    done = await asyncio.gather(*(one(a, p) for a, p in parts), return_exceptions=True)
    if (failure := mark.failure()) is not None:
        raise failure  # ClaimLost, StepCancelled...: no part sent anything
    results = []
    for result in done:
        if isinstance(result, BaseException):
            raise result  # cancelled
        results.append(result)
    return results


def combined(results: Sequence[PartResult]) -> tuple[StepState, Outcome]:
    """The step's state and outcome from its parts': failed if any part failed, else
    unknown if any part's outcome is unknown; output and errors labelled by part."""
    states = {r.state for r in results}
    if states == {StepState.DRY_RUN}:
        state = StepState.DRY_RUN
    elif StepState.FAILED in states:
        state = StepState.FAILED
    elif StepState.UNKNOWN in states:
        state = StepState.UNKNOWN
    else:
        state = StepState.SUCCEEDED
    errors = [
        f"part {n} ({r.action}) {r.state.value}: {_why(r.outcome)}"
        for n, r in enumerate(results, 1)
        if r.state in (StepState.FAILED, StepState.UNKNOWN)
    ]
    output = "\n".join(
        f"[part {n} ({r.action}): {r.state.value}]\n{r.outcome.output}".rstrip()
        for n, r in enumerate(results, 1)
    )
    outcome = Outcome(
        ok=state is not StepState.FAILED,
        output=clip_output(output),
        error="; ".join(errors) or None,
    )
    return state, outcome


def _why(outcome: Outcome) -> str:
    if outcome.error:
        return outcome.error
    return f"exit {outcome.exit_status}" if outcome.exit_status is not None else "no detail"
