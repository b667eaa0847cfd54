"""A throwaway Prometheus (Debian's /usr/bin/prometheus) and an exporter the test controls.

``Exporter.start()`` serves ``/metrics`` on 127.0.0.1 from a dict the test edits (and can
answer 503, so the scrape fails and ``up`` is 0). ``Prometheus.start(workdir, rule_files,
targets, alertmanager_url)`` writes a config that scrapes each target every second under
the ``instance`` label the test names (rules target inventory host names, not
127.0.0.1:PORT), evaluates the rule files every second and sends alerts to Alertmanager.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from support.alertmanager import free_port

PROMETHEUS_BINARY = Path("/usr/bin/prometheus")
REPO = Path(__file__).resolve().parents[2]
RUNBOOK_ROUTING = REPO / "deploy" / "alertmanager" / "runbooks.yml"
_HOST = "127.0.0.1"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Exporter:
    """`/metrics` from `values` ({'name{label="v"}': 1.0}) and `counters` (series that
    grow by that much a second from when they are set); 503 while `down`."""

    values: dict[str, float] = field(default_factory=dict)
    counters: dict[str, tuple[float, float]] = field(default_factory=dict)  # (per s, since)
    down: bool = False
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    @classmethod
    def start(cls) -> Exporter:
        exporter = cls()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if exporter.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                now = time.monotonic()
                series = dict(exporter.values)
                for name, (per_s, since) in exporter.counters.items():
                    series[name] = per_s * (now - since)
                body = "".join(f"{k} {v}\n" for k, v in series.items()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        exporter._server = ThreadingHTTPServer((_HOST, 0), Handler)
        exporter.port = exporter._server.server_address[1]
        threading.Thread(target=exporter._server.serve_forever, daemon=True).start()
        return exporter

    def count(self, name: str, per_s: float) -> None:
        """Make counter `name` grow by `per_s` a second from now (from 0)."""
        self.counters[name] = (per_s, time.monotonic())

    @property
    def address(self) -> str:
        return f"{_HOST}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class Prometheus:
    """A running Prometheus at `url`."""

    url: str
    log_path: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        workdir: Path,
        rule_files: list[Path],
        targets: dict[str, str],
        alertmanager_url: str,
        job: str = "kaldrix-nodes",
    ) -> Prometheus:
        """`targets`: instance label -> the exporter's host:port it is scraped at, all
        in one scrape job named `job`."""
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "alerting": {
                "alertmanagers": [
                    {"static_configs": [{"targets": [alertmanager_url.split("://", 1)[1]]}]}
                ]
            },
            "scrape_configs": [
                {
                    "job_name": job,
                    "scrape_interval": "1s",
                    "scrape_timeout": "900ms",
                    # An `instance` label set here wins over the address Prometheus scrapes.
                    "static_configs": [
                        {"targets": [address], "labels": {"instance": instance}}
                        for instance, address in targets.items()
                    ],
                }
            ],
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(json.dumps(config, indent=2))
        port = free_port()
        server = cls(url=f"http://{_HOST}:{port}", log_path=workdir / "prometheus.log")
        with server.log_path.open("wb") as log:
            server._proc = subprocess.Popen(
                [
                    str(PROMETHEUS_BINARY),
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address={_HOST}:{port}",
                    "--rules.alert.resend-delay=1s",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if server._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{server.logs()}")
            try:
                with _OPENER.open(f"{server.url}/-/ready", timeout=1.0) as resp:
                    if resp.status == 200:
                        return server
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        server.stop()
        raise RuntimeError(f"prometheus not ready in 30 s:\n{server.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Prometheus holds (pending and firing)."""
        with _OPENER.open(f"{self.url}/api/v1/alerts", timeout=5) as resp:
            alerts: list[dict[str, Any]] = json.loads(resp.read())["data"]["alerts"]
            return alerts

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)


def fast_alerts(rules: Path, dst: Path) -> Path:
    """A copy of the alerting rules `rules` in `dst` with every `for:` at 1s."""
    text = re.sub(r"(?m)^(\s*)for:\s*\S+", r"\1for: 1s", rules.read_text())
    path = dst / rules.name
    path.write_text(text)
    return path


def fast_routing_config(
    webhook_url: str, token: str, routing: Path = RUNBOOK_ROUTING
) -> dict[str, Any]:
    """The shipped runbooks' Alertmanager routing with second-long timers, remediator's
    webhook at `webhook_url` with `token` inline (the human receivers as they are)."""
    config: dict[str, Any] = yaml.safe_load(routing.read_text())

    def fast(route: dict[str, Any]) -> None:
        route.update(group_wait="0s", group_interval="1s", repeat_interval="1h")
        for child in route.get("routes", []):
            for key in ("group_wait", "group_interval", "repeat_interval"):
                child.pop(key, None)

    fast(config["route"])
    [hook] = next(r for r in config["receivers"] if r["name"] == "remediator")["webhook_configs"]
    hook["url"] = webhook_url
    hook["http_config"] = {"authorization": {"type": "Bearer", "credentials": token}}
    return config
