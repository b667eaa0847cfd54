"""`remediator replay`: recorded webhook bodies through the engine in dry-run, as a timeline.

A recording (the daemon's `record:` option, see record.py) has one line per accepted notification:
`{"received_at": <epoch seconds>, "body": <the webhook body>}`. `remediator replay` also
takes bare webhook bodies, one per line (all replayed at the same moment), or lines with
`"at"` as an RFC 3339 time. Times are replayed relative to the first line's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import msgspec
from pydantic import ValidationError

from remediator.config.models import Config
from remediator.errors import RemediatorError
from remediator.parsing import epoch_seconds
from remediator.simulate import Decision, Simulation, flow, format_at


@dataclass(frozen=True)
class Recorded:
    """One notification to replay."""

    line: int
    at: float | None  # epoch seconds, when known
    body: str


# A line's keys, values left as raw JSON: a body's numbers are not read here (the
# receiver accepted 5,000-digit integers under unknown keys; json.loads refuses them).
_LINE = msgspec.json.Decoder(dict[str, msgspec.Raw])
_TIME = msgspec.json.Decoder(float | str | None)


def _time(raw: msgspec.Raw, where: str) -> float | None:
    try:
        value = _TIME.decode(raw)
    except msgspec.DecodeError:  # true, an object, a number past float's, a lone surrogate
        value = ""
    if value is None:
        return None  # null: no time, as when the key is absent
    seconds = _seconds(value)
    if seconds is None:
        shown = repr(value) if value != "" else bytes(raw).decode()
        raise RemediatorError(
            f"{where}: expected epoch seconds or an RFC 3339 time, not {shown[:60]}"
        )
    return seconds


def _seconds(value: float | str) -> float | None:
    if not isinstance(value, str):
        return epoch_seconds(value)
    try:
        return epoch_seconds(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except (ValueError, OverflowError):
        return None


def _body(raw: msgspec.Raw, where: str) -> str:
    """A recorded body: a JSON object as is, or a JSON string holding one."""
    text = bytes(raw).decode()
    if not text.startswith('"'):
        return text
    try:
        return msgspec.json.decode(raw, type=str)
    except msgspec.DecodeError as exc:  # a lone surrogate (\ud800) in the string
        raise RemediatorError(f"{where}: body is not a webhook body: {exc}") from None


def read_recording(path: Path) -> Iterator[Recorded | str]:
    """Each line as a `Recorded`, or an error message (`file:line: ...`) for a bad line."""
    try:
        # Only "\n" ends a line: JSON may carry U+2028 and friends raw inside strings.
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise RemediatorError(f"{path}: cannot read: {exc}") from exc
    for n, text in enumerate(lines, 1):
        where = f"{path}:{n}"
        if not text.strip():
            continue
        try:
            item = _LINE.decode(text)
        except msgspec.ValidationError:
            yield f"{where}: expected a JSON object (a webhook body or a recorded line)"
            continue
        except msgspec.DecodeError as exc:
            yield f"{where}: not JSON: {exc}"
            continue
        try:
            if "body" in item:
                when = item.get("received_at", item.get("at"))
                at = None if when is None else _time(when, where)
                yield Recorded(n, at, _body(item["body"], where))
            else:
                yield Recorded(n, None, text)
        except RemediatorError as exc:
            yield str(exc)


def timeline_line(decision: Decision) -> str:
    """`+5m  #1  run: restart_service, step: 1, ...`: one decision of the timeline."""
    who = f"#{decision.incident}" if decision.incident is not None else "-"
    return f"{'+' + format_at(decision.at):>9}  {who:<5} {flow(decision.fields)[1:-1]}"


async def replay(
    config: Config, path: Path, until: float, out: IO[str], err: IO[str]
) -> tuple[int, int]:
    """Replay a recording; prints the timeline to `out`; returns (replayed, skipped)."""
    items = list(read_recording(path))
    times = [i.at for i in items if isinstance(i, Recorded) and i.at is not None]
    first = min(times) if times else None
    replayed = skipped = 0
    async with Simulation(config, **({"start": first} if first is not None else {})) as sim:
        for item in items:
            if isinstance(item, str):
                print(item, file=err)
                skipped += 1
                continue
            if item.at is not None:
                await sim.run_until(max(item.at - sim.start, sim.elapsed))
            try:
                await sim.send(item.body)
            except (ValidationError, ValueError) as exc:
                first_error = str(exc).splitlines()[0:3]
                print(f"{path}:{item.line}: not a webhook body: {' '.join(first_error)}", file=err)
                skipped += 1
                continue
            replayed += 1
            for decision in await sim.decisions():
                print(timeline_line(decision), file=out)
        await sim.run_until(sim.elapsed + until)
        for decision in await sim.decisions():
            print(timeline_line(decision), file=out)
    return replayed, skipped
