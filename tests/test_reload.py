"""Hot reload of rules/ and policies/: a broken set is rejected and the last good one runs."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from support import storeview
from support.daemon import Daemon, webhook, write_config
from support.metrics import sample
from support.sshd import SshServer
from test_crash import RULE

RELOAD_OK = "remediator_config_last_reload_successful"
RELOADS = "remediator_config_reloads_total"


def alert(instance: str, starts_at: str) -> dict[str, Any]:
    return webhook({"alertname": "NodeDown", "instance": instance}, starts_at=starts_at)


def metric(d: Daemon, name: str, labels: str = "") -> float:
    status, text = d.request("GET", "/metrics")
    assert status == 200
    return sample(text.decode(), name, labels)


def wait_metric(d: Daemon, what: str, name: str, value: float, labels: str = "") -> None:
    storeview.wait_for(what, lambda: metric(d, name, labels) == value, timeout_s=20)


def restarts(sshd: SshServer) -> list[str]:
    return [argv[1] for argv in sshd.calls("systemctl") if argv[0] == "restart"]


def test_broken_rules_keep_the_old_set_running_until_fixed(tmp_path: Path, sshd: SshServer) -> None:
    """A file change with a bad rule: rejected, the old rules still remediate, the metric
    says 0; the fixed file is swapped in without a restart and the metric says 1."""
    # web2 is the same sshd under a second name: the second alert meets no target lock.
    web2 = {"web2": {"address": "127.0.0.1", "port": sshd.port}}
    d = Daemon.for_config(write_config(tmp_path / "d", RULE, sshd=sshd, hosts=web2))
    rules = d.config.parent / "rules" / "rules.yml"
    d.start()
    assert metric(d, RELOAD_OK) == 1
    assert metric(d, "remediator_config_last_reload_success_timestamp_seconds") > 0

    rules.write_text(RULE.replace("verify: 5m", "verify: 5 minutes please"))
    wait_metric(d, "the reload to be rejected", RELOAD_OK, 0)
    assert metric(d, RELOADS, 'result="failure"') == 1
    assert "rules.yml:8: rules[0].steps[0].verify: invalid duration" in d.logs()
    assert d.post_webhook(alert("web1:9100", "2026-11-23T09:00:00Z")) == 200
    storeview.wait_for(
        "the old rules to restart the node", lambda: restarts(sshd) == ["kaldrix-node"]
    )

    rules.write_text(RULE.replace("kaldrix-node", "kaldrix-node-v2"))
    wait_metric(d, "the fixed rules to load", RELOAD_OK, 1)
    assert d.post_webhook(alert("web2:9100", "2026-11-23T10:00:00Z")) == 200
    storeview.wait_for(
        "the new rule to run",
        lambda: restarts(sshd) == ["kaldrix-node", "kaldrix-node-v2"],
    )
    assert d.stop() == 0
    assert d.runs == 1  # one process all along: reloaded, never restarted


def test_sighup_reloads_policies_and_inventory(tmp_path: Path, sshd: SshServer) -> None:
    """SIGHUP reloads remediator.yml's inventory too: a host added is targetable at once."""
    d = Daemon.for_config(write_config(tmp_path / "d", RULE, sshd=sshd))
    d.start()
    assert d.post_webhook(alert("web2:9100", "2026-11-23T09:00:00Z")) == 200
    storeview.wait_for("web2 to be refused", lambda: "target_refused" in storeview.events(d.db, 1))
    text = d.config.read_text()
    web1 = next(line for line in text.splitlines() if line.startswith("  hosts:"))
    d.config.write_text(text.replace(web1, web1.replace('"web1"', '"web2"')))
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    # The file watch sees the write too and may reload as well, within its debounce.
    storeview.wait_for(
        "the SIGHUP reload",
        lambda: metric(d, RELOADS, 'result="success"') >= 1,
        timeout_s=20,
    )
    assert d.post_webhook(alert("web2:9100", "2026-11-23T10:00:00Z")) == 200
    storeview.wait_for("web2 to be restarted", lambda: restarts(sshd) == ["kaldrix-node"])
    assert d.stop() == 0


def test_configmap_volume_update_reloads(tmp_path: Path, sshd: SshServer) -> None:
    """A Kubernetes ConfigMap volume: rules/ is a symlink into `..data`, which the kubelet
    swaps atomically to a new folder on update; the daemon reloads from the new one."""
    d = Daemon.for_config(write_config(tmp_path / "d", RULE, sshd=sshd))
    root = d.config.parent
    (root / "..v1" / "rules").mkdir(parents=True)
    (root / "rules" / "rules.yml").rename(root / "..v1" / "rules" / "rules.yml")
    (root / "rules").rmdir()
    (root / "..data").symlink_to("..v1")
    (root / "rules").symlink_to("..data/rules")
    d.start()
    (root / "..v2" / "rules").mkdir(parents=True)
    (root / "..v2" / "rules" / "rules.yml").write_text(
        RULE.replace("kaldrix-node", "kaldrix-node-v2")
    )
    (root / "..data_tmp").symlink_to("..v2")
    (root / "..data_tmp").rename(root / "..data")  # what the kubelet's AtomicWriter does
    wait_metric(d, "the ConfigMap reload", RELOADS, 1, 'result="success"')
    assert d.post_webhook(alert("web1:9100", "2026-11-23T09:00:00Z")) == 200
    storeview.wait_for("the new rule to run", lambda: restarts(sshd) == ["kaldrix-node-v2"])
    assert d.stop() == 0


def test_an_alertmanager_section_changed_by_a_reload_is_named_for_a_restart(
    tmp_path: Path,
) -> None:
    """`alertmanager:` (url, auth, poll) is read at start: a reload that changes it keeps
    the old section and names it among those that need a restart, not a silent no-op."""
    from support.daemon import write_config

    from remediator.config import load_config
    from remediator.reload import merge

    rules = "rules:\n  - name: r\n    match: [alertname = X]\n    escalate: critical\n"
    before = load_config(
        write_config(tmp_path / "a", rules, extra="alertmanager: {url: 'http://am1:9093/'}\n")
    )
    after = load_config(
        write_config(tmp_path / "b", rules, extra="alertmanager: {url: 'http://am2:9093/'}\n")
    )
    merged, restart = merge(before, after)
    assert "alertmanager" in restart
    assert merged.file.alertmanager == before.file.alertmanager
