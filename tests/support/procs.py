"""The process table from /proc, for the tests and benchmarks that look at processes:
children, descendants, their state and CPU time."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Proc:
    """One process as /proc/PID/stat says it is."""

    pid: int
    ppid: int
    state: str
    comm: str
    cpu_s: float  # user + system


def process_table() -> dict[int, Proc]:
    """Every process in /proc by pid (one that exits while it is read is left out)."""
    ticks = os.sysconf("SC_CLK_TCK")
    table: dict[int, Proc] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may itself contain spaces and parentheses.
        head, tail = stat.rsplit(")", 1)
        fields = tail.split()
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        pid = int(entry.name)
        table[pid] = Proc(pid, int(fields[1]), fields[0], head.split("(", 1)[1], cpu)
    return table


def children(pid: int, table: dict[int, Proc] | None = None) -> list[int]:
    """The child processes of `pid`."""
    procs = process_table() if table is None else table
    return [p.pid for p in procs.values() if p.ppid == pid]


def descendants(pid: int, table: dict[int, Proc] | None = None) -> list[int]:
    """Every descendant of `pid` (zombies included), parents first."""
    procs = process_table() if table is None else table
    kids: dict[int, list[int]] = {}
    for proc in procs.values():
        kids.setdefault(proc.ppid, []).append(proc.pid)
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in kids.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found
