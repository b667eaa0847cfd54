"""A throwaway Prometheus Alertmanager on 127.0.0.1 for integration tests.

``Alertmanager.start(workdir, webhook_url, bearer_token)`` writes a config with a
single ``remediator`` webhook receiver (bearer auth, ``send_resolved: true``) and
short grouping timers, starts ``/usr/bin/prometheus-alertmanager`` on a free
loopback port with clustering disabled, and waits for ``/-/ready``.  Alerts are
fired and resolved through the real ``amtool alert add`` CLI.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

__all__ = ["ALERTMANAGER_BINARY", "AMTOOL_BINARY", "Alertmanager", "free_port"]

ALERTMANAGER_BINARY = Path("/usr/bin/prometheus-alertmanager")
AMTOOL_BINARY = Path("/usr/bin/amtool")
_HOST = "127.0.0.1"
_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 5.0
_AMTOOL_TIMEOUT_S = 15.0
# Never route loopback requests through an HTTP(S)_PROXY from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _rfc3339(moment: datetime) -> str:
    """Format ``moment`` as RFC 3339 in UTC (naive datetimes are taken as local time)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _quote_label_value(value: str) -> str:
    """Quote a label/annotation value for amtool, which parses both as ``name="value"``."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def render_config(
    webhook_url: str,
    bearer_token: str,
    *,
    group_wait: str = "0s",
    group_interval: str = "1s",
    repeat_interval: str = "2s",
) -> str:
    """Return alertmanager.yml text (JSON, which is valid YAML) for one webhook receiver."""
    config = {
        "route": {
            "receiver": "remediator",
            "group_by": ["alertname", "instance"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [
            {
                "name": "remediator",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "max_alerts": 0,
                        "http_config": {
                            "authorization": {"type": "Bearer", "credentials": bearer_token},
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(config, indent=2) + "\n"


@dataclass
class Alertmanager:
    """A running Alertmanager reachable at ``url`` (``http://127.0.0.1:<port>``)."""

    workdir: Path
    port: int
    url: str
    config_path: Path
    log_path: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        workdir: Path,
        webhook_url: str,
        bearer_token: str,
        *,
        group_wait: str = "0s",
        group_interval: str = "1s",
        repeat_interval: str = "2s",
        config_text: str | None = None,
    ) -> Alertmanager:
        """Write the config into ``workdir``, start Alertmanager and wait until it is ready.

        ``config_text`` replaces the generated config (the other arguments are then unused).
        """
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        config_path = workdir / "alertmanager.yml"
        config_path.write_text(
            config_text
            or render_config(
                webhook_url,
                bearer_token,
                group_wait=group_wait,
                group_interval=group_interval,
                repeat_interval=repeat_interval,
            )
        )
        data_dir = workdir / "data"
        data_dir.mkdir(exist_ok=True)
        port = free_port()
        server = cls(
            workdir=workdir,
            port=port,
            url=f"http://{_HOST}:{port}",
            config_path=config_path,
            log_path=workdir / "alertmanager.log",
        )
        with server.log_path.open("wb") as log:
            server._proc = subprocess.Popen(
                [
                    str(ALERTMANAGER_BINARY),
                    f"--config.file={config_path}",
                    f"--storage.path={data_dir}",
                    f"--web.listen-address={_HOST}:{port}",
                    f"--web.external-url={server.url}",
                    "--cluster.listen-address=",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            server._wait_ready()
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_ready(self) -> None:
        """Poll ``/-/ready`` until it answers 200 or raise RuntimeError."""
        assert self._proc is not None
        deadline = time.monotonic() + _START_TIMEOUT_S
        last_error = "no request made"
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"alertmanager exited with status {code} before becoming ready:\n"
                    f"{self.stderr_text()}"
                )
            try:
                with _OPENER.open(f"{self.url}/-/ready", timeout=1.0) as resp:
                    if resp.status == 200:
                        return
                    last_error = f"HTTP {resp.status}"
            except (urllib.error.URLError, OSError) as exc:
                last_error = repr(exc)
            time.sleep(0.05)
        raise RuntimeError(
            f"alertmanager at {self.url} not ready within {_START_TIMEOUT_S:.0f} s "
            f"({last_error}); stderr:\n{self.stderr_text()}"
        )

    def stderr_text(self) -> str:
        """Return everything Alertmanager has logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def amtool(self, *args: str) -> str:
        """Run ``amtool --alertmanager.url=<url> <args>`` and return stdout; raise on failure."""
        argv = [str(AMTOOL_BINARY), f"--alertmanager.url={self.url}", *args]
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_AMTOOL_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed with status {result.returncode}:\n"
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result.stdout

    def add_alert(
        self,
        labels: dict[str, str],
        annotations: dict[str, str] | None = None,
        end: datetime | None = None,
        start: datetime | None = None,
    ) -> None:
        """Post an alert via ``amtool alert add``; pass ``end=now`` to resolve it."""
        if "alertname" not in labels:
            raise ValueError("labels must include 'alertname'")
        args = ["alert", "add"]
        args += [f"{name}={_quote_label_value(value)}" for name, value in labels.items()]
        args += [
            f"--annotation={key}={_quote_label_value(value)}"
            for key, value in (annotations or {}).items()
        ]
        if start is not None:
            args.append(f"--start={_rfc3339(start)}")
        if end is not None:
            args.append(f"--end={_rfc3339(end)}")
        self.amtool(*args)

    def resolve_alert(self, labels: dict[str, str]) -> None:
        """Resolve the alert with exactly these labels by re-posting it with ``end=now``."""
        self.add_alert(labels, end=datetime.now(UTC))

    def alerts(self) -> list[dict[str, object]]:
        """Return Alertmanager's current alerts from ``GET /api/v2/alerts``."""
        with _OPENER.open(f"{self.url}/api/v2/alerts", timeout=5.0) as resp:
            payload: list[dict[str, object]] = json.load(resp)
        return payload

    def stop(self) -> None:
        """Terminate Alertmanager and wait for it to exit."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Alertmanager:
        """Return the already-running Alertmanager."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop Alertmanager."""
        self.stop()
