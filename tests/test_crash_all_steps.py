"""kill -9 while an `all:` step's parts run: after restart the step is `unknown` and no
part is sent again."""

from __future__ import annotations

from pathlib import Path

from support import storeview
from support.daemon import Daemon, webhook, write_config
from support.sshd import SshServer

RULE = """\
rules:
  - name: contain
    match: [alertname = Breach]
    target: "{{ labels.instance | host }}"
    steps:
      - verify: 5m
        all:
          - {action: ssh, params: {argv: [capture, evidence]}}
          - {action: ssh, params: {argv: [lockdown, now]}}
    escalate: critical
"""


def test_kill_while_the_parts_run_never_resends_any(tmp_path: Path, sshd: SshServer) -> None:
    """Killed after the step was marked executing and both parts' commands started: after
    restart the step is `unknown`, each part audited unknown, and neither is re-sent."""
    sshd.install_recorder("capture", sleep_s=3)
    sshd.install_recorder("lockdown", sleep_s=3)
    d = Daemon.for_config(write_config(tmp_path / "d", RULE, sshd=sshd)).start()
    assert d.post_webhook(webhook({"alertname": "Breach", "instance": "web1"})) == 200
    storeview.wait_for(
        "both commands to start", lambda: sshd.calls("capture") and sshd.calls("lockdown")
    )
    d.kill9()
    assert storeview.events(d.db, 1).count("step_executing") == 1

    d.start()
    storeview.wait_for(
        "the step outcome", lambda: "step_outcome_unknown" in storeview.events(d.db, 1)
    )
    assert d.stop() == 0
    assert sshd.calls("capture") == [["evidence"]]
    assert sshd.calls("lockdown") == [["now"]]
    [step] = storeview.steps(d.db, 1)
    assert (step["action"], step["state"]) == ("all", "unknown")
    audit = storeview.audit(d.db, 1)
    assert [(p["part"], p["action"], p["state"]) for e, p in audit if e == "step_part"] == [
        (0, "ssh", "unknown"),
        (1, "ssh", "unknown"),
    ]
    assert storeview.incidents(d.db)[0]["state"] == "verifying"
