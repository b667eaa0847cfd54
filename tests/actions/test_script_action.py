"""script: a local program, no shell, minimal environment, timeout -> unknown."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from remediator.actions.params import ScriptParams
from remediator.actions.script import ScriptAction
from remediator.errors import ActionError, OutcomeUnknown

# Writes its argv and environment to the file named by $OUT, prints a line, exits $CODE.
PROBE = f"""#!{sys.executable}
import json, os, sys, time
with open(os.environ["OUT"], "w") as f:
    json.dump({{"argv": sys.argv[1:], "env": dict(os.environ), "stdin": sys.stdin.read()}}, f)
print("probe ran")
time.sleep(float(os.environ.get("SLEEP", "0")))
sys.exit(int(os.environ.get("CODE", "0")))
"""


class Sends:
    """Counts before_send calls."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    """An executable that records how it was started."""
    path = tmp_path / "probe"
    path.write_text(PROBE)
    path.chmod(0o755)
    return path


def params(argv: list[str], out: Path, **env: str) -> ScriptParams:
    return ScriptParams.model_validate(
        {"argv": argv, "env": {"OUT": str(out), **env}, "timeout": "5s"}
    )


def recorded(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(out.read_text())
    return data


@pytest.mark.parametrize("hostile", ["x; touch /tmp/pwned", "$(id)", "`id`", "a b", "-rf /", ""])
async def test_hostile_label_arrives_as_one_literal_argument(
    tmp_path: Path, probe: Path, hostile: str
) -> None:
    """A rendered label is one argv element, never split or interpreted by a shell."""
    Path("/tmp/pwned").unlink(missing_ok=True)
    out = tmp_path / "out.json"
    action = ScriptAction({"PATH": "/usr/bin:/bin"})
    plan = action.plan(
        params([str(probe), "{{ labels.x }}"], out), {"labels": {"x": hostile}}, None
    )
    sends = Sends()
    outcome = await action.execute(plan, sends)
    assert outcome.ok
    assert outcome.exit_status == 0
    assert outcome.output == "probe ran"
    assert recorded(out)["argv"] == [hostile]
    assert sends.count == 1
    assert not Path("/tmp/pwned").exists()


async def test_environment_is_path_plus_env_and_stdin_is_empty(tmp_path: Path, probe: Path) -> None:
    """Only PATH and the step's env reach the program; its stdin is /dev/null."""
    out = tmp_path / "out.json"
    action = ScriptAction({"PATH": "/usr/bin:/bin", "SECRET_OF_DAEMON": "x"})
    plan = action.plan(params([str(probe)], out, MODE="drain"), {}, None)
    await action.execute(plan, Sends())
    env = recorded(out)["env"]
    env.pop("LC_CTYPE", None)  # Python may set it for itself on a C locale
    assert env == {"PATH": "/usr/bin:/bin", "OUT": str(out), "MODE": "drain"}
    assert recorded(out)["stdin"] == ""


async def test_program_is_found_on_path(tmp_path: Path, probe: Path) -> None:
    """A bare name is looked up on the PATH given to the action."""
    out = tmp_path / "out.json"
    action = ScriptAction({"PATH": str(tmp_path)})
    outcome = await action.execute(action.plan(params(["probe", "a"], out), {}, None), Sends())
    assert outcome.ok
    assert recorded(out)["argv"] == ["a"]


async def test_non_zero_exit_is_a_failed_result(tmp_path: Path, probe: Path) -> None:
    """Exit 3 is an outcome with ok False and the status, not an exception."""
    out = tmp_path / "out.json"
    action = ScriptAction()
    outcome = await action.execute(
        action.plan(params([str(probe)], out, CODE="3"), {}, None), Sends()
    )
    assert not outcome.ok
    assert outcome.exit_status == 3
    assert outcome.error == f"`{probe}` exited 3"
    assert outcome.output == "probe ran"


async def test_timeout_kills_the_process_group_and_is_unknown(tmp_path: Path, probe: Path) -> None:
    """Past its timeout the program and its children are killed; the outcome is unknown."""
    out = tmp_path / "out.json"
    action = ScriptAction()
    raw = params([str(probe)], out, SLEEP="30").model_dump(by_alias=True)
    plan = action.plan(ScriptParams.model_validate({**raw, "timeout": "300ms"}), {}, None)
    started = time.monotonic()
    with pytest.raises(OutcomeUnknown, match=r"did not finish within 0.3s; killed"):
        await action.execute(plan, Sends())
    assert time.monotonic() - started < 5


async def test_missing_program_fails_before_anything_is_sent(tmp_path: Path) -> None:
    """An unknown executable is an ActionError naming it; before_send is never called."""
    action = ScriptAction({"PATH": str(tmp_path)})
    sends = Sends()
    plan = action.plan(params(["no-such-tool"], tmp_path / "out"), {}, None)
    with pytest.raises(ActionError, match=r"'no-such-tool': no such executable on PATH"):
        await action.execute(plan, sends)
    assert sends.count == 0


def test_params_need_a_non_empty_argv_and_valid_env_names() -> None:
    """argv needs one element; env keys must be whole variable names; timeout must be positive."""
    for bad in (
        {"argv": []},
        {"argv": ["x"], "env": {"A B": "1"}},
        {"argv": ["x"], "env": {"PATH\n": "1"}},
        {"argv": ["x"], "timeout": "0s"},
    ):
        with pytest.raises(ValueError, match=r"argv|environment variable name|greater than 0"):
            ScriptParams.model_validate(bad)
