"""Alertmanager's own answer to "does `label =~ regex` match this value?", offline.

`amtool config routes test` evaluates a routing tree's matchers in Alertmanager's Go
code without a server: `go_matches` writes one route per regex (each its own receiver,
all `continue: true`) and asks which receivers a label set reaches. A first route with
`label = "<value>"` proves the value reached amtool intact (quoting, newlines).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from support.alertmanager import AMTOOL_BINARY

LABEL = "lbl"
_TIMEOUT_S = 15.0


def quoted(value: str) -> str:
    """A matcher value in double quotes, as Alertmanager's matcher parser unescapes it."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def go_matches(workdir: Path, patterns: list[str], value: str) -> list[bool]:
    """For each pattern, whether Alertmanager's `lbl =~ pattern` matches `lbl` = `value`."""
    routes = [{"receiver": "same", "matchers": [f"{LABEL} = {quoted(value)}"], "continue": True}]
    routes += [
        {"receiver": f"re{i}", "matchers": [f"{LABEL} =~ {quoted(p)}"], "continue": True}
        for i, p in enumerate(patterns)
    ]
    names = ["default", "same", *(f"re{i}" for i in range(len(patterns)))]
    config = {
        "route": {"receiver": "default", "routes": routes},
        "receivers": [{"name": n} for n in names],
    }
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "routes.yml"
    path.write_text(json.dumps(config))  # JSON is YAML; \u escapes keep it ASCII
    argv = ["config", "routes", "test", f"--config.file={path}", f"{LABEL}={quoted(value)}"]
    done = subprocess.run(
        [str(AMTOOL_BINARY), *argv],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"amtool failed on {patterns!r}, {value!r}: {done.stderr}"
    reached = set(done.stdout.strip().split(","))
    assert "same" in reached, f"amtool did not get the value {value!r} intact: {done.stdout}"
    return [f"re{i}" in reached for i in range(len(patterns))]
