"""The silence poll resolves the incident's own alert instance, not one that fired again."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from support.engine_harness import EngineHarness, notification
from support.sshd import SshServer

from remediator.config.alertmanager import AlertmanagerConfig
from remediator.silences.client import AmAlert
from remediator.silences.watch import SilenceWatch

RULE = """\
rules:
  - name: restart
    match: [alertname = NodeDown]
    target: web1
    steps:
      - action: restart_service
        params: {service: kaldrix-node}
        verify: 5m
    silence: true
"""
AM = "alertmanager: {url: 'http://127.0.0.1:9/'}\n"


@dataclass
class ListedAlerts:
    """Stands in for Alertmanager's API: the alerts it lists, an old uptime."""

    starts_at: str
    submitted: list[str] = field(default_factory=list)

    async def alerts(self, labels: dict[str, str]) -> list[AmAlert]:
        return [AmAlert(labels=dict(labels), starts_at=self.starts_at)]

    async def uptime_s(self, now: float) -> float:
        return 86_400.0

    async def submit(self, _: float, body: str) -> None:
        self.submitted.append(body)


async def test_an_alert_that_fired_again_resolves_the_old_instance(
    tmp_path: Path, sshd: SshServer
) -> None:
    """Alertmanager lists the alert first with the incident's startsAt (seen), then only
    with a later startsAt (it resolved and fired again while silenced): after two such
    polls the incident's own instance is resolved through the intake; while the listed
    startsAt is the incident's (in the API's millisecond form), nothing is."""
    h = await EngineHarness.start(tmp_path, RULE, sshd, extra=AM)
    try:
        await h.send(notification({"alertname": "NodeDown"}))
        await h.engine.tick()
        async with h.ctx.store.read() as tx:
            incident = await tx.incident(1)
        assert incident is not None
        # As Alertmanager's API writes it: milliseconds, `Z` (the webhook had more digits).
        started = datetime.fromisoformat(incident.starts_at)
        listed = started.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        fake = ListedAlerts(starts_at=listed)
        settings = AlertmanagerConfig(url="http://127.0.0.1:9/", min_uptime=0.0)
        watch = SilenceWatch(h.ctx, fake, settings, fake.submit)  # type: ignore[arg-type]
        for _ in range(3):
            await watch._check_resolved(incident, [])
        assert fake.submitted == []
        fake.starts_at = "2099-01-01T00:00:00Z"
        for _ in range(2):
            await watch._check_resolved(incident, [])
        assert len(fake.submitted) == 1
        assert '"status": "resolved"' in fake.submitted[0]
    finally:
        await h.close()
