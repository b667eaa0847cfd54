"""`make demo`: the chain from metric to remedy on loopback, for a person to watch.

An exporter this program controls, the Debian Prometheus with the KALDRIX handoff's
alerts (deploy/prometheus/runbook-alerts/, `for:` at 1 s), the Debian Alertmanager with
the runbooks' routing (deploy/alertmanager/runbooks.yml, second-long timers, human
receivers silent) and `remediator serve` with the shipped rules and policies in dry run
(it decides and records what it would run; nothing is sent to any host). Type a command:

    down          the node stops answering its scrape (NodeDown)
    up            it answers again (the alert resolves, the incident closes)
    memory PCT    its memory use, in percent (HighMemoryUsage above 90)
    incidents     what remediator made of it (as `remediator incidents` shows)
    quit          stop everything
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import yaml
from support.alertmanager import Alertmanager
from support.daemon import ADMIN_TOKEN, NO_SLACK, TOKEN, Daemon
from support.prometheus import REPO, Exporter, Prometheus, fast_alerts, fast_routing_config
from support.sshd import free_port

ALERTS = REPO / "deploy" / "prometheus" / "runbook-alerts" / "kaldrix-handoff.yml"
INSTANCE = "validator1:9100"


def remediator_config(workdir: Path) -> Path:
    """The shipped rules and policies in dry run, validator1 on the loopback."""
    config = {
        "server": {
            "listen": f"127.0.0.1:{free_port()}",
            "webhook_auth": {"bearer_token_env": "REMEDIATOR_WEBHOOK_TOKEN"},
            "admin_token_env": "REMEDIATOR_ADMIN_TOKEN",
        },
        "store": "sqlite:///state/remediator.db",
        "rules": str(REPO / "rules"),
        "policies": str(REPO / "policies"),
        "dry_run": True,
        "ssh": {"username": "remediator", "known_hosts": str(REPO / "ssh" / "known_hosts")},
        "slack": {"api_url": NO_SLACK, "channel": "#ops-alerts", "timeout": "2s"},
        # Pages go nowhere in a demo (port 9 discards): deliveries fail and are retried.
        "email": {"host": "127.0.0.1", "port": 9, "starttls": False, "from": "demo@example.com"},
        "inventory": {"hosts": {"validator1": {"address": "127.0.0.1", "groups": ["validators"]}}},
    }
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "remediator.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def routing(webhook_url: str) -> str:
    """The runbooks' routing, fast; the human receivers deliver nowhere in a demo."""
    config = fast_routing_config(webhook_url, TOKEN)
    config["receivers"] = [
        r if r["name"] == "remediator" else {"name": r["name"]} for r in config["receivers"]
    ]
    return json.dumps(config)


def healthy(exporter: Exporter) -> None:
    exporter.down = False
    exporter.values = {
        "node_memory_MemTotal_bytes": 1000.0,
        "node_memory_MemAvailable_bytes": 500.0,
    }


def incidents(daemon: Daemon) -> str:
    """One line per incident, newest first."""
    rows = daemon.api("/api/incidents")["incidents"]
    if not rows:
        return "no incidents yet"
    return "\n".join(
        f"#{i['id']} {i['state']:<18} {i['rule']:<28} {i['labels'].get('alertname', '')}"
        for i in rows
    )


def command(line: str, exporter: Exporter, daemon: Daemon) -> bool:
    """Carry out one typed command; False to stop."""
    words = line.split()
    if not words:
        return True
    if words[0] == "quit":
        return False
    if words[0] == "down":
        exporter.down = True
    elif words[0] == "up":
        healthy(exporter)
    elif words[0] == "memory" and len(words) == 2 and words[1].isdigit():
        used = min(int(words[1]), 100)
        exporter.values["node_memory_MemAvailable_bytes"] = 1000.0 * (100 - used) / 100
    elif words[0] != "incidents":
        print("commands: down, up, memory PCT, incidents, quit", flush=True)
        return True
    print(incidents(daemon), flush=True)
    return True


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="remediator-demo-") as tmp:
        work = Path(tmp)
        daemon = Daemon.for_config(remediator_config(work / "remediator")).start()
        exporter = Exporter.start()
        healthy(exporter)
        am = Alertmanager.start(
            work / "am", "", "", config_text=routing(f"{daemon.url}/webhook/alertmanager")
        )
        prom = Prometheus.start(
            work / "prom", [fast_alerts(ALERTS, work)], {INSTANCE: exporter.address}, am.url
        )
        try:
            print(__doc__.split("\n\n", 2)[2].rstrip(), flush=True)
            print(
                f"\nPrometheus {prom.url}, Alertmanager {am.url}, remediator {daemon.url}\n"
                f"(or: REMEDIATOR_ADMIN_TOKEN={ADMIN_TOKEN} .venv/bin/remediator incidents "
                f"--url {daemon.url})",
                flush=True,
            )
            for line in sys.stdin:
                if not command(line, exporter, daemon):
                    break
        finally:
            prom.stop()
            am.stop()
            exporter.stop()
            daemon.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
