"""One place per action: its class carries its params model, SSH need and approval need;
step params are parsed once, when rules load, into that model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import Field
from support.daemon import STARTS, write_config
from support.engine_harness import EngineHarness

from remediator.actions import ACTIONS, SshPool, build_registry
from remediator.actions.approval import check_always_for
from remediator.actions.base import Plan
from remediator.actions.notify import NotifyAction
from remediator.actions.params import RestartServiceParams, ScriptParams
from remediator.actions.ssh import SshRecipe, need_host
from remediator.config import load_config
from remediator.config.models import Host, Model
from remediator.errors import ConfigError

RULES = """\
rules:
  - name: restart
    match: [alertname = Down]
    target: web1
    steps:
      - action: restart_service
        params: {service: "{{ labels.unit }}"}
      - action: script
        params: {argv: [/bin/true, "{{ labels.instance }}"], timeout: 300ms}
"""


def test_step_params_are_the_actions_model_with_templates_unrendered(tmp_path: Path) -> None:
    """A loaded step holds its action's params model (durations parsed, defaults filled),
    its templates as written: they are rendered per alert, when a step is planned."""
    hosts = {"web1": {"address": "10.0.0.1"}}
    config = load_config(write_config(tmp_path, RULES, hosts=hosts, extra="ssh: {}\n"))
    restart, script = config.rules[0].steps
    assert restart.params == RestartServiceParams(service="{{ labels.unit }}")
    assert isinstance(script.params, ScriptParams)
    assert (script.params.timeout, script.params.env) == (0.3, {})
    assert script.params.argv == ["/bin/true", "{{ labels.instance }}"]


class PingParams(Model):
    """`ping`'s params: how many packets."""

    count: int = Field(ge=1, le=10)


class PingAction(SshRecipe):
    """A new action, as an operator's fork would add one: this class and a registry line."""

    name = "ping"
    params_model: type[Model] = PingParams
    always_needs_approval = True

    def plan(self, params: PingParams, context: dict[str, Any], host: Host | None) -> Plan:
        """`ping -c COUNT ADDRESS`."""
        target = need_host(self.name, host)
        return Plan(
            self.name, target, commands=(("ping", "-c", str(params.count), target.address),)
        )


PING_RULE = """\
rules:
  - name: ping
    match: [alertname = Down]
    steps:
      - action: ping
        params: {count: 11, cuont: 1}
"""


@pytest.fixture
def ping() -> Any:
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(ACTIONS, "ping", PingAction)
        yield


@pytest.mark.usefixtures("ping")
def test_a_new_action_is_its_class_and_one_registry_line(tmp_path: Path) -> None:
    """Everything `check` and the daemon know of an action comes from its class in the
    registry: its params model, that it runs over SSH (target and `ssh:` needed), that it
    always needs approval, its place in `always_for`, and whether the daemon builds it."""
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, PING_RULE))
    assert str(caught.value).splitlines() == [
        "rules/rules.yml:6: rules[0].steps[0].params.count: input should be less than or equal to 10",
        "rules/rules.yml:6: rules[0].steps[0].params.cuont: unknown key; did you mean `count`?",
        "rules/rules.yml:2: rules[0].target: required: step 0 (ping) acts on a host",
        "rules/rules.yml:5: rules[0].steps[0].action: ping runs over SSH, so remediator.yml needs an `ssh:` section",
        "rules/rules.yml:2: rule ping.steps[0]: step 0 (ping) needs approval, but no policy file defines `approvals:` (who may approve, timeout, on_timeout)",
    ]
    assert check_always_for("ping") is None
    assert "ping" not in build_registry(None, {})
    pool = SshPool.__new__(SshPool)  # never connects: only handed to the action
    assert isinstance(build_registry(pool, {})["ping"], PingAction)


class Recording(NotifyAction):
    """`notify` that keeps the params object each plan was given."""

    def __init__(self) -> None:
        self.given: list[object] = []

    def plan(self, params: Any, context: dict[str, Any], host: Host | None) -> Plan:
        self.given.append(params)
        return super().plan(params, context, host)


NOTIFY_RULE = """\
rules:
  - name: tell
    match: [alertname = Down]
    steps:
      - action: notify
        params: {message: "{{ labels.alertname }} on {{ labels.instance }}"}
"""


async def test_the_runner_plans_with_the_params_parsed_at_load(tmp_path: Path) -> None:
    """A step is planned with the very params object the config loaded (parsed once, not
    validated again per run), and its templates render per alert."""
    h = await EngineHarness.start(tmp_path, NOTIFY_RULE, None)
    recording = Recording()
    h.ctx.actions["notify"] = recording
    try:
        await h.fire({"alertname": "Down", "instance": "h1:9100"}, STARTS)
    finally:
        await h.close()
    assert recording.given == [h.ctx.config.rules[0].steps[0].params]
    assert recording.given[0] is h.ctx.config.rules[0].steps[0].params
    assert "on h1:9100" in str(h.audit())
