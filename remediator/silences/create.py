"""A `silence:` rule's step starts: create (or extend) the silence of its alert.

Called right after the step's dispatching transaction commits, before its command: a
failure is audited and counted, and the step runs regardless."""

from __future__ import annotations

import asyncio
import logging

from remediator.actions.params import HttpParams, ScriptParams
from remediator.config.models import RuleSpec, StepSpec
from remediator.engine.context import EngineContext
from remediator.errors import AlertmanagerError, StoreError
from remediator.silences.client import AlertmanagerClient
from remediator.store.events import Event
from remediator.store.records import Incident

log = logging.getLogger(__name__)
# What a step may take when no `ssh:` section says (its command_timeout's default).
DEFAULT_COMMAND_S = 60.0


def silence_ends(ctx: EngineContext, rule: RuleSpec, step_index: int, now: float) -> float:
    """The silence's bound: for this and every later step, what its command may take
    (its own `timeout`, else ssh's `command_timeout`, plus SSH's connect attempts) and
    its verify window; a crash cannot leave the silence for ever."""
    later = rule.steps[step_index:]
    return now + sum(s.verify + _runs_at_most(ctx, s) for s in later)


def _runs_at_most(ctx: EngineContext, step: StepSpec) -> float:
    ssh = ctx.config.file.ssh
    command = ssh.command_timeout if ssh is not None else DEFAULT_COMMAND_S
    connect = ssh.connect_timeout * ssh.connect_attempts if ssh is not None else 0.0
    # `script` and `http` bound their own run (block_ips' `timeout` is how long a block lasts).
    own = [p.params.timeout for p in step.parts if isinstance(p.params, ScriptParams | HttpParams)]
    return max([command, *own]) + connect


def silence_comment(ctx: EngineContext, incident: Incident, rule: RuleSpec, step: int) -> str:
    """The rule's comment, else one naming the incident, rule and step (and a link)."""
    if rule.silence is not None and rule.silence.comment is not None:
        return rule.silence.comment
    text = f"remediator incident {incident.id}: rule {rule.name} runs step {step + 1}"
    url = ctx.config.file.server.external_url
    if url:
        text += f" ({url.rstrip('/')}/api/incidents/{incident.id})"
    return text


async def silence_step(
    ctx: EngineContext,
    client: AlertmanagerClient,
    incident: Incident,
    rule: RuleSpec,
    step_index: int,
) -> None:
    """Silence the incident's alert until the bound; never raises (the step runs)."""
    now = ctx.clock.now()
    ends = silence_ends(ctx, rule, step_index, now)
    comment = silence_comment(ctx, incident, rule, step_index)
    try:
        # One bound for the calls together (a later step makes two or three).
        async with asyncio.timeout(client.timeout_s):
            sid = await _put(client, incident, now, ends, comment)
    except (AlertmanagerError, TimeoutError) as exc:
        error = str(exc) if str(exc) else f"no answer from Alertmanager in {client.timeout_s:g}s"
        ctx.metrics.silences.labels(result="failed").inc()
        log.warning("silence not created", extra={"incident": incident.id, "error": error})
        await _audit(ctx, incident.id, Event("silence_failed", {"error": error}))
        return
    result = "updated" if sid == incident.silence_id else "created"
    ctx.metrics.silences.labels(result=result).inc()
    detail = {"silence_id": sid, "ends_at": ends, "step": step_index}
    await _audit(ctx, incident.id, Event("silence_created", detail), sid)


async def _put(
    client: AlertmanagerClient, incident: Incident, now: float, ends: float, comment: str
) -> str:
    """Create the silence, or extend the incident's (in place: with its own startsAt)."""
    labels, known = incident.labels, incident.silence_id
    starts = now
    if known is not None:  # a later step
        starts = await client.silence_start(known) or now
    try:
        return await client.put_silence(labels, starts, ends, comment, known)
    except AlertmanagerError as exc:
        if known is None or exc.status != 404:
            raise
        # Deleted by hand in Alertmanager: a new one, as the rule asks.
        return await client.put_silence(labels, now, ends, comment)


async def silence_unavailable(ctx: EngineContext, incident: Incident) -> None:
    """`alertmanager:` came with a reload: its secrets are read at start only."""
    error = (
        "the daemon started without an `alertmanager:` section (a reload added it): "
        "restart the daemon to read its secrets and create silences"
    )
    ctx.metrics.silences.labels(result="failed").inc()
    await _audit(ctx, incident.id, Event("silence_failed", {"error": error}))


async def silence_dry_run(
    ctx: EngineContext, incident: Incident, rule: RuleSpec, step_index: int
) -> None:
    """A dry run silences nothing: it records how long the silence would last."""
    now = ctx.clock.now()
    would_s = silence_ends(ctx, rule, step_index, now) - now
    detail = {"step": step_index, "would_last_s": would_s}
    await _audit(ctx, incident.id, Event("silence_dry_run", detail))


async def _audit(
    ctx: EngineContext, incident_id: int, event: Event, sid: str | None = None
) -> None:
    try:
        async with ctx.store.write() as tx:
            if sid is not None:
                await tx.set_silence(incident_id, sid)
            await tx.audit(incident_id, event, ctx.clock.now())
    except StoreError as exc:
        # The silence still ends at its bound; the step runs regardless.
        log.warning("silence not recorded", extra={"incident": incident_id, "error": str(exc)})
