"""deploy/alertmanager: amtool accepts it, it routes right, and it really delivers."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import storeview
from support.alertmanager import Alertmanager
from support.daemon import TOKEN, Daemon, write_config
from support.deployfiles import ALERTMANAGER_YML, DEFAULT_PORT, load_yaml, run
from support.metrics import sample


def remediator_webhook(config: dict[str, Any]) -> dict[str, Any]:
    """The one webhook_config of the `remediator` receiver."""
    [receiver] = [r for r in config["receivers"] if r["name"] == "remediator"]
    [webhook] = receiver["webhook_configs"]
    assert isinstance(webhook, dict)
    return webhook


def webhook_counts(d: Daemon) -> dict[str, float]:
    """remediator_webhook_requests_total by HTTP code."""
    _, body = d.request("GET", "/metrics")
    text = body.decode()
    codes = re.findall(r'^remediator_webhook_requests_total\{code="(\d+)"\}', text, re.M)
    return {c: sample(text, "remediator_webhook_requests_total", f'code="{c}"') for c in codes}


def test_amtool_accepts_it() -> None:
    """`amtool check-config` (it does not need the credentials_file to exist)."""
    result = run("amtool", "check-config", ALERTMANAGER_YML)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_webhook_receiver_matches_remediator() -> None:
    """Path, port, Bearer token from a file, resolved notifications, no truncation."""
    webhook = remediator_webhook(load_yaml(ALERTMANAGER_YML))
    url = urllib.parse.urlsplit(webhook["url"])
    assert (url.path, url.port) == ("/webhook/alertmanager", DEFAULT_PORT)
    assert webhook["send_resolved"] is True
    assert webhook["max_alerts"] == 0
    auth = webhook["http_config"]["authorization"]
    assert auth["type"] == "Bearer"
    assert Path(auth["credentials_file"]).is_absolute()
    assert "credentials" not in auth  # never the token in the config itself


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=NodeDown", "instance=validator1:9100"], "remediator"),
        (["alertname=RemediatorDown", "instance=rem1:9095"], "oncall"),
    ],
)
def test_own_alerts_route_to_humans(labels: list[str], receiver: str) -> None:
    """amtool's router: fleet alerts go to remediator, remediator's own alerts to on-call."""
    result = run("amtool", "config", "routes", "test", f"--config.file={ALERTMANAGER_YML}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_it_delivers_to_a_real_daemon(tmp_path: Path) -> None:
    """The shipped receiver, pointed at a real daemon, delivers with the token from its file.

    Only the host, the credentials_file path and the grouping timers change; the token
    file ends with a newline, as `echo` writes it, and is still accepted.
    """
    d = Daemon.for_config(write_config(tmp_path / "d", "rules: []\n")).start()
    try:
        token_file = tmp_path / "remediator-token"
        token_file.write_text(TOKEN + "\n")
        config = load_yaml(ALERTMANAGER_YML)
        config["route"].update(group_wait="0s", group_interval="1s")
        webhook = remediator_webhook(config)
        webhook["url"] = d.url + urllib.parse.urlsplit(webhook["url"]).path
        webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
        with Alertmanager.start(tmp_path / "am", "", "", config_text=yaml.safe_dump(config)) as am:
            am.add_alert({"alertname": "NodeDown", "instance": "validator1:9100"})
            storeview.wait_for("a delivery", lambda: webhook_counts(d).get("200"))
        assert set(webhook_counts(d)) == {"200"}  # no 401 on the way
    finally:
        assert d.stop() == 0, d.logs()
