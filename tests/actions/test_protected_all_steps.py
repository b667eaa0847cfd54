"""The no-self-lockout check applies to each part of an `all:` step, as to a step."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.daemon import write_config
from support.engine_harness import EngineHarness
from support.sshd import SshServer
from test_protected import HOSTS, POLICIES

from remediator.actions.params import parse_network
from remediator.actions.protected import Protected
from remediator.config import load_config
from remediator.errors import ActionError, ConfigError

RULES = """\
rules:
  - name: contain
    match: [alertname = SecurityBreach]
    target: web1
    steps:
      - all:
          - action: block_ips
            params: {ips: "{{ labels.source_ip }}", timeout: 1h}
          - action: firewall_lockdown
            params: {allow_from: [10.0.9.0/24]}
    escalate: critical
"""


def test_a_parts_lockdown_network_is_protected(tmp_path: Path) -> None:
    """The ops network a firewall_lockdown part keeps open may not be blocked."""
    cfg = write_config(
        tmp_path, RULES, hosts=HOSTS, policies=POLICIES, extra="ssh:\n  username: ops\n"
    )
    protected = Protected.from_config(load_config(cfg))
    with pytest.raises(ActionError, match=r"10\.0\.9\.7 is inside 10\.0\.9\.0/24"):
        protected.check([parse_network("10.0.9.7")])


def test_check_refuses_a_parts_literal_fleet_address(tmp_path: Path) -> None:
    """`ips: [10.0.3.11]` in a part is caught by `remediator check`, located at the part."""
    rules = RULES.replace('"{{ labels.source_ip }}"', "[10.0.3.11]")
    cfg = write_config(
        tmp_path, rules, hosts=HOSTS, policies=POLICIES, extra="ssh:\n  username: ops\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    assert "rule contain.steps[0].all[0].params.ips: refusing to block" in str(exc.value)
    assert "10.0.3.11 is the address of inventory host api1" in str(exc.value)


async def test_engine_refuses_the_whole_step_when_one_part_would_lock_out(
    tmp_path: Path, sshd: SshServer
) -> None:
    """A source_ip inside the ops network: the step is refused before anything is asked
    or dispatched (no part runs), and the incident goes to humans."""
    h = await EngineHarness.start(tmp_path, RULES, sshd, hosts=HOSTS, policies=POLICIES)
    try:
        await h.fire({"alertname": "SecurityBreach", "source_ip": "10.0.9.7"})
        refused = dict(h.audit(1))["step_refused"]
        assert "10.0.9.7 is inside 10.0.9.0/24" in refused["reason"]
        assert "step_dispatching" not in h.events(1)
        assert "approval_requested" not in h.events(1)
        assert h.incidents()[0]["state"] == "escalating"
    finally:
        await h.close()
