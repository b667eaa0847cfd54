"""Every `alertmanager.poll`: expire the silences of incidents no longer automating, and
look up the alerts still silenced, since Alertmanager mutes remediator's own receiver
too and never sends their resolve.

An alert counts as resolved once a poll found it in Alertmanager and the next two did
not (and Alertmanager has been up for `min_uptime`): one Alertmanager never had (sent by
Grafana, or found only after a restart of the daemon) is left to the verify window.

Safe on every replica at once: a DELETE of a silence already gone is fine, clearing the
id is conditional (one replica audits it), and a repeated resolve is deduplicated by the
intake (fingerprint, startsAt, status)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

from remediator.clock import rfc3339
from remediator.config.alertmanager import AlertmanagerConfig
from remediator.engine.context import EngineContext
from remediator.errors import AlertmanagerError, StoreGone
from remediator.silences.client import AlertmanagerClient, AmAlert, parse_time
from remediator.store.events import Event
from remediator.store.records import AUTOMATING, Incident

log = logging.getLogger(__name__)
BATCH = 500  # silenced incidents handled per poll
ABSENT_POLLS = 2  # consecutive polls an alert is missing before it counts as resolved

Submit = Callable[[float, str], Awaitable[None]]


def resolved_body(incident: Incident, now: float) -> str:
    """The webhook body Alertmanager would have sent: the alert resolved now."""
    alert = {
        "status": "resolved",
        "labels": incident.labels,
        "annotations": incident.annotations,
        "startsAt": incident.starts_at,
        "endsAt": rfc3339(now),
        "fingerprint": incident.fingerprint,
    }
    message = {
        "version": "4",
        "status": "resolved",
        "receiver": "remediator-silence-poll",
        "alerts": [alert],
    }
    return json.dumps(message)


# Alertmanager's API gives startsAt in milliseconds; the webhook carried nanoseconds.
SAME_START_S = 0.001


class SilenceWatch:
    """Expires silences and detects resolves of silenced alerts."""

    def __init__(
        self,
        ctx: EngineContext,
        client: AlertmanagerClient,
        settings: AlertmanagerConfig,
        submit: Submit,
    ) -> None:
        self.ctx = ctx
        self.client = client
        self.settings = settings
        self.submit = submit  # the intake's door, as a webhook body goes (Ingestor.submit)
        self._absent: dict[int, int] = {}  # incident id -> consecutive polls missing
        # Incidents whose alert a poll found in Alertmanager: only those can go missing
        # (one from Grafana or another sender was never there, so is never resolved here).
        self._seen: set[int] = set()

    async def loop(self, stopping: asyncio.Event) -> None:
        """Poll until `stopping`; one bad incident fails alone."""
        while not stopping.is_set():
            await self.poll_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.settings.poll)

    async def poll_once(self) -> None:
        """One pass over the incidents with a silence."""
        try:
            async with self.ctx.store.read() as tx:
                incidents = await tx.silenced_incidents(BATCH)
        except StoreGone:
            raise
        except Exception as exc:  # the next poll tries again
            log.warning("silences: store read failed", extra={"error": str(exc)})
            return
        uptime: list[float] = []  # read once per poll, when an alert is missing
        for incident in incidents:
            try:
                if incident.state in AUTOMATING:
                    await self._check_resolved(incident, uptime)
                else:
                    await self._expire(incident)
            except StoreGone:
                raise
            except Exception as exc:  # one bad row fails alone
                result = "poll_failed" if incident.state in AUTOMATING else "expire_failed"
                self.ctx.metrics.silences.labels(result=result).inc()
                log.warning(
                    f"silences: {result.replace('_', ' ')}",
                    extra={"incident": incident.id, "error": str(exc)},
                )
        ids = {i.id for i in incidents}
        self._absent = {k: v for k, v in self._absent.items() if k in ids}
        self._seen &= ids

    async def _expire(self, incident: Incident) -> None:
        sid = incident.silence_id
        assert sid is not None  # silenced_incidents returns only these
        was_there = await self.client.delete_silence(sid)
        async with self.ctx.store.write() as tx:
            if not await tx.clear_silence(incident.id, sid):
                return  # another replica cleared it (and audited)
            detail = {"silence_id": sid, "state": incident.state.value}
            if not was_there:
                detail["note"] = "already gone from Alertmanager"
            await tx.audit(incident.id, Event("silence_expired", detail), self.ctx.clock.now())
        self.ctx.metrics.silences.labels(result="expired").inc()

    async def _check_resolved(self, incident: Incident, uptime: list[float]) -> None:
        listed = await self.client.alerts(incident.labels)
        if any(_same_instance(alert, incident) for alert in listed):
            self._seen.add(incident.id)
            self._absent.pop(incident.id, None)
            return
        if incident.id not in self._seen:
            return
        misses = self._absent[incident.id] = self._absent.get(incident.id, 0) + 1
        if misses < ABSENT_POLLS:
            return
        now = self.ctx.clock.now()
        if not uptime:
            uptime.append(await self.client.uptime_s(now))
        if uptime[0] < self.settings.min_uptime:
            return  # restarted: it lost its alerts until Prometheus re-sends them
        await self.submit(now, resolved_body(incident, now))
        self._absent.pop(incident.id, None)
        self._seen.discard(incident.id)
        self.ctx.metrics.silences.labels(result="resolved").inc()
        detail = {"silence_id": incident.silence_id, "absent_polls": misses}
        async with self.ctx.store.write() as tx:
            await tx.audit(incident.id, Event("resolved_by_alertmanager_poll", detail), now)
        log.info("silenced alert resolved", extra={"incident": incident.id})


async def close_quietly(client: AlertmanagerClient) -> None:
    """Close the client's session at shutdown."""
    with contextlib.suppress(AlertmanagerError):
        await client.close()


def _same_instance(alert: AmAlert, incident: Incident) -> bool:
    """Whether Alertmanager's alert is the incident's instance: the same labels (the
    query's matchers) and the same startsAt (one that fired again is a new instance, and
    the incident's own has resolved). The API gives milliseconds where the webhook gave
    nanoseconds: times within 1 ms are the same. A time it cannot read counts as the same."""
    try:
        return abs(parse_time(alert.starts_at) - parse_time(incident.starts_at)) < SAME_START_S
    except (ValueError, OverflowError):
        return True
