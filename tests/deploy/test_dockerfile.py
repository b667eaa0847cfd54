"""deploy/docker: static checks (no Docker here) of the Dockerfile and its build context."""

from __future__ import annotations

import json
import re
import tomllib

from support.deployfiles import (
    DEFAULT_PORT,
    ROOT,
    SERVE_ARGS,
    dockerfile_instructions,
    dockerfile_user,
)


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) argument list."""
    value = json.loads(args)
    assert isinstance(value, list)
    return [str(v) for v in value]


def only(word: str) -> str:
    """The arguments of the one instruction `word`."""
    [args] = [a for w, a in dockerfile_instructions() if w == word]
    return args


def test_runs_unprivileged_with_a_healthcheck() -> None:
    """Slim base, numeric non-root USER, no remote ADD, HEALTHCHECK on the EXPOSEd port."""
    instructions = dockerfile_instructions()
    froms = [a for w, a in instructions if w == "FROM"]
    assert froms[0].startswith("python:3.11-slim AS ")  # the build stage
    assert froms[-1] == "python:3.11-slim"
    assert dockerfile_user().isdigit()
    assert int(dockerfile_user()) >= 1000
    assert not [a for w, a in instructions if w == "ADD" and re.search(r"https?://", a)]
    assert int(only("EXPOSE").split("/")[0]) == DEFAULT_PORT
    assert f"127.0.0.1:{DEFAULT_PORT}/healthz" in only("HEALTHCHECK")
    assert exec_form(only("ENTRYPOINT")) == ["remediator"]
    assert exec_form(only("CMD")) == SERVE_ARGS


def test_build_context_has_what_the_build_copies() -> None:
    """COPY sources (the readme pyproject names included) survive the .dockerignore."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "remediator" in pyproject["project"]["scripts"]  # the ENTRYPOINT
    sources = set()
    for word, args in dockerfile_instructions():
        if word == "COPY" and not args.startswith("--from"):
            sources |= {s.rstrip("/") for s in args.split()[:-1]}
    assert pyproject["project"]["readme"] in sources
    assert all((ROOT / s).exists() for s in sources)
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*"  # an allow-list: .venv, .git, var/ never reach the image
    assert sources <= {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
