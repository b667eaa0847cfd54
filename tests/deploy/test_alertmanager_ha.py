"""deploy/alertmanager/alertmanager-ha.yml: the HA pair's config sends every notification
to both remediator replicas; amtool accepts it and a real Alertmanager delivers to both."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path
from typing import Any

import yaml
from support import storeview
from support.alertmanager import Alertmanager
from support.daemon import TOKEN, Daemon, write_config
from support.deployfiles import ALERTMANAGER_HA_YML, ALERTMANAGER_YML, DEFAULT_PORT, load_yaml, run
from support.metrics import sample


def webhook_counts(d: Daemon) -> dict[str, float]:
    """remediator_webhook_requests_total by HTTP code."""
    _, body = d.request("GET", "/metrics")
    text = body.decode()
    codes = re.findall(r'^remediator_webhook_requests_total\{code="(\d+)"\}', text, re.M)
    return {c: sample(text, "remediator_webhook_requests_total", f'code="{c}"') for c in codes}


def replica_webhooks(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The webhook_configs of the `remediator` receiver: one per replica."""
    [receiver] = [r for r in config["receivers"] if r["name"] == "remediator"]
    hooks: list[dict[str, Any]] = receiver["webhook_configs"]
    return hooks


def test_amtool_accepts_it_and_routes_like_the_single_config() -> None:
    """`amtool check-config`; fleet alerts go to remediator, its own alerts to on-call."""
    result = run("amtool", "check-config", ALERTMANAGER_HA_YML)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    for labels, receiver in (
        (["alertname=NodeDown", "instance=validator1:9100"], "remediator"),
        (["alertname=RemediatorDown", "instance=rem1:9095"], "oncall"),
    ):
        routed = run(
            "amtool", "config", "routes", "test", f"--config.file={ALERTMANAGER_HA_YML}", *labels
        )
        assert routed.stdout.strip() == receiver, routed.stdout + routed.stderr
    ha, single = load_yaml(ALERTMANAGER_HA_YML), load_yaml(ALERTMANAGER_YML)
    assert ha["route"] == single["route"]


def test_every_notification_goes_to_two_replicas_alike() -> None:
    """Two webhook_configs on two hosts, the same path, port, token file, resolved
    notifications and no truncation; one replica down inhibits only its own symptoms."""
    hooks = replica_webhooks(load_yaml(ALERTMANAGER_HA_YML))
    urls = [urllib.parse.urlsplit(h["url"]) for h in hooks]
    assert len({u.hostname for u in urls}) == len(hooks) == 2
    assert {(u.path, u.port) for u in urls} == {("/webhook/alertmanager", DEFAULT_PORT)}
    for hook in hooks:
        assert hook["send_resolved"] is True
        assert hook["max_alerts"] == 0
        assert "credentials" not in hook["http_config"]["authorization"]
    assert len({h["http_config"]["authorization"]["credentials_file"] for h in hooks}) == 1
    [inhibit] = load_yaml(ALERTMANAGER_HA_YML)["inhibit_rules"]
    assert inhibit["equal"] == ["instance"]


def test_a_real_alertmanager_delivers_to_both_replicas(tmp_path: Path) -> None:
    """The shipped HA receiver, its two URLs pointed at two running daemons: one alert
    reaches both with the token from the file."""
    daemons = [
        Daemon.for_config(write_config(tmp_path / name, "rules: []\n")).start() for name in "ab"
    ]
    try:
        token_file = tmp_path / "remediator-token"
        token_file.write_text(TOKEN + "\n")
        config = load_yaml(ALERTMANAGER_HA_YML)
        config["route"].update(group_wait="0s", group_interval="1s")
        for hook, d in zip(replica_webhooks(config), daemons, strict=True):
            hook["url"] = d.url + urllib.parse.urlsplit(hook["url"]).path
            hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
        with Alertmanager.start(tmp_path / "am", "", "", config_text=yaml.safe_dump(config)) as am:
            am.add_alert({"alertname": "NodeDown", "instance": "validator1:9100"})
            for d in daemons:
                storeview.wait_for("a delivery", lambda d=d: webhook_counts(d).get("200"))
        assert [set(webhook_counts(d)) for d in daemons] == [{"200"}, {"200"}]
    finally:
        for d in daemons:
            assert d.stop() == 0, d.logs()
