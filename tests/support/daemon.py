"""Run the real `remediator serve` as a child process, as an operator would."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import faults, storeview
from support.sshd import SshServer, free_port

TOKEN = "test-webhook-token"
ADMIN_TOKEN = "test-admin-token"
SLACK_TOKEN = "xoxb-test-token"
SIGNING_SECRET = "test-signing-secret"
SECRETS = {
    "REMEDIATOR_WEBHOOK_TOKEN": TOKEN,
    "REMEDIATOR_ADMIN_TOKEN": ADMIN_TOKEN,
    "SLACK_BOT_TOKEN": SLACK_TOKEN,
    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
}
STARTS = "2026-11-23T09:00:00Z"
# Nothing listens on the discard port: Slack calls fail fast unless a test gives a fake.
NO_SLACK = "http://127.0.0.1:9/api/"
# The node-restart rule several daemon tests run against the recording sshd.
RESTART_NODE_RULE = """\
rules:
  - name: restart-node
    match: [alertname = NodeDown]
    target: "{{ labels.instance | host }}"
    steps:
      - action: restart_service
        params: {service: kaldrix-node}
        verify: 5m
"""


def webhook(
    labels: dict[str, str], status: str = "firing", starts_at: str = STARTS, **extra: Any
) -> dict[str, Any]:
    """A version-4 webhook body carrying one alert, as Alertmanager posts it."""
    alert = {"status": status, "labels": labels, "annotations": {}, "startsAt": starts_at}
    return {"version": "4", "status": status, "alerts": [alert], **extra}


def write_config(
    workdir: Path,
    rules_yaml: str,
    *,
    sshd: SshServer | None = None,
    port: int | None = None,
    extra: str = "",
    hosts: dict[str, dict[str, Any]] | None = None,
    ssh_extra: str = "",
    known_hosts: Path | None = None,
    policies: str = "",
    slack_url: str = NO_SLACK,
    email: str = "",
    server_extra: str = "",
    store: str = "sqlite:///state/remediator.db",
    slack_extra: str = "",
) -> Path:
    """A remediator.yml with rules/, policies/ and an inventory pointing at `sshd`; replicas
    share a `store: postgresql://...` (each its own workdir, so its own port)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "rules").mkdir(exist_ok=True)
    (workdir / "rules" / "rules.yml").write_text(rules_yaml)
    (workdir / "policies").mkdir(exist_ok=True)
    (workdir / "policies" / "p.yml").write_text(
        "escalations:\n  critical:\n    steps:\n      - notify: ['slack:#ops']\n" + policies
    )
    inventory = dict(hosts or {})
    ssh = ""
    if sshd is not None:
        inventory.setdefault("web1", {"address": "127.0.0.1", "port": sshd.port, "groups": ["web"]})
        ssh = (
            "ssh:\n  username: root\n"
            f"  client_keys: ['{sshd.client_key}']\n  known_hosts: '{known_hosts or sshd.known_hosts}'\n"
            "  connect_timeout: 5s\n  command_timeout: 20s\n" + ssh_extra
        )
    cfg = (
        "server:\n"
        f"  listen: 127.0.0.1:{port or free_port()}\n"
        "  max_body_bytes: 65536\n"
        "  webhook_auth: {bearer_token_env: REMEDIATOR_WEBHOOK_TOKEN}\n"
        "  shutdown_grace: 10s\n"
        "  admin_token_env: REMEDIATOR_ADMIN_TOKEN\n"
        "  external_url: http://remediator.test\n"
        f"{server_extra}"
        f"store: {store}\n"
        "rules: rules/\npolicies: policies/\n"
        f"slack:\n  api_url: '{slack_url}'\n  channel: '#ops-alerts'\n  timeout: 5s\n"
        f"{slack_extra}"
        "notifications:\n  retry_min: 1s\n  retry_max: 5s\n"
        f"{email}"
        f"{ssh}"
        f"inventory:\n  hosts: {json.dumps(inventory)}\n"
        f"{extra}"
    )
    path = workdir / "remediator.yml"
    path.write_text(cfg)
    return path


@dataclass
class Daemon:
    """A running `remediator serve` child process."""

    config: Path
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    runs: int = field(default=0)
    faults: bool = False  # start with support.faults installed
    env: dict[str, str] = field(default_factory=dict)  # on top of os.environ and SECRETS

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        """The SQLite store file."""
        return self.config.parent / "state" / "remediator.db"

    @classmethod
    def for_config(cls, config: Path, env: dict[str, str] | None = None) -> Daemon:
        """Bind to the config's listen port; `env` adds to the environment it starts with."""
        listen = next(
            line.split()[-1] for line in config.read_text().splitlines() if "listen:" in line
        )
        port = int(listen.rsplit(":", 1)[1])
        log_path = config.parent / "daemon.log"
        return cls(config=config, port=port, log_path=log_path, env=dict(env or {}))

    def start(self, timeout_s: float = 15.0, umask: int = -1) -> Daemon:
        """Start (under `umask`, if given) and wait for /readyz."""
        env = {**os.environ, **SECRETS, **self.env}
        log = self.log_path.open("ab")
        self.runs += 1
        boot = (
            faults.boot_command(sys.executable)
            if self.faults
            else [sys.executable, "-m", "remediator"]
        )
        self.proc = subprocess.Popen(
            [*boot, "serve", "-c", str(self.config)],
            stdout=log,
            stderr=log,
            env=env,
            cwd=self.config.parent,
            umask=umask,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.logs()}")
            try:
                status, _ = self.request("GET", "/readyz")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready in {timeout_s}s:\n{self.logs()}")

    def logs(self) -> str:
        """Everything the daemon logged."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """One HTTP request; returns (status, body) for any status."""
        url = self.url + path  # always http://127.0.0.1:PORT
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - as above
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def api(self, path: str) -> Any:
        """GET an admin API path with the admin token; the decoded JSON of a 200."""
        status, body = self.request("GET", path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert status == 200, body
        return json.loads(body)

    def post_webhook(self, payload: dict[str, Any], token: str = TOKEN) -> int:
        """POST a webhook body with the bearer token; returns the status."""
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        status, _ = self.request(
            "POST", "/webhook/alertmanager", json.dumps(payload).encode(), headers
        )
        return status

    def inbox_pending(self) -> float | None:
        """`remediator_inbox_pending` from /metrics: acknowledged webhooks not yet applied."""
        status, body = self.request("GET", "/metrics")
        assert status == 200, body
        m = re.search(rb"^remediator_inbox_pending (\S+)$", body, re.MULTILINE)
        return float(m.group(1)) if m else None

    def wait_applied(self, timeout_s: float = 30.0) -> None:
        """Until the engine has applied every acknowledged webhook (the inbox is empty)."""
        storeview.wait_for(
            "the inbox to be applied", lambda: self.inbox_pending() == 0, timeout_s=timeout_s
        )

    def kill9(self) -> None:
        """SIGKILL: no cleanup at all."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise
