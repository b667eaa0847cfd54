"""The CLI's admin commands: they talk to the running daemon's admin API (apiclient.py).

`incidents`, `show`, `audit`, `replicas`, `pause`/`resume`, `approve`/`deny`/`ack`; the
daemon is found from the config's server.listen or --url, the token from the env var
server.admin_token_env names.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from remediator import apiclient, cliviews, openapi
from remediator.apimodels import (
    AuditPage,
    AuditRecord,
    DecisionReply,
    IncidentDetail,
    IncidentList,
    PauseState,
    ReplicaList,
)
from remediator.config import load_config
from remediator.config.models import Config
from remediator.errors import RemediatorError

M = TypeVar("M", bound=BaseModel)
FOLLOW_EVERY_S = 2.0  # `audit --follow`: how often to ask for new rows


def config_path(value: str | None) -> Path:
    """-c, else $REMEDIATOR_CONFIG, else ./remediator.yml (every command reads it so)."""
    return Path(value or os.environ.get("REMEDIATOR_CONFIG") or "remediator.yml")


def load_args_config(args: argparse.Namespace) -> Config:
    """The config the command's -c names (ConfigError when it has problems)."""
    return load_config(config_path(args.config))


def _client(args: argparse.Namespace) -> apiclient.AdminClient:
    """The running daemon: --url, else the config's server.listen; token from the env."""
    config = load_args_config(args) if args.config or not args.url else None
    return apiclient.AdminClient.connect(config, args.url)


def _model(
    args: argparse.Namespace, model: type[M], reply: dict[str, Any], client: apiclient.AdminClient
) -> M | None:
    """The daemon's reply as `model`; None once printed as is (`--json`)."""
    if args.json:
        cliviews.print_json(reply)
        return None
    return _parse(model, reply, client)


def _parse(model: type[M], reply: dict[str, Any], client: apiclient.AdminClient) -> M:
    try:
        return model.model_validate(reply)
    except ValidationError as exc:
        raise RemediatorError(
            f"the daemon at {client.url} answered in an unexpected shape "
            f"(another remediator version?): {exc.errors()[0]['msg']}"
        ) from None


def _incident_call(incident_id: int, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return call()
    except apiclient.ApiError as exc:
        if exc.status == 404:
            raise RemediatorError(f"no incident {incident_id}") from None
        raise


def cmd_incidents(args: argparse.Namespace) -> int:
    """List incidents, newest first (admin API)."""
    client = _client(args)
    query = {"limit": str(args.limit)}
    state = "open" if args.open else args.state
    if state:
        query["state"] = state
    reply = client.get("/api/incidents", query)
    listing = _model(args, IncidentList, reply, client)
    if listing is None:
        return 0
    if not listing.incidents:
        print("no incidents" + (f" ({state})" if state else ""))
        return 0
    cliviews.console().print(cliviews.incidents_table(listing.incidents))
    return 0


def cmd_replicas(args: argparse.Namespace) -> int:
    """List the replicas seen in the last minute and the hash of their rules (admin API)."""
    client = _client(args)
    listing = _model(args, ReplicaList, client.get("/api/replicas"), client)
    if listing is None:
        return 0
    cliviews.console().print(cliviews.replicas_table(listing))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Show one incident with its steps, approvals and audit trail (admin API)."""
    client = _client(args)
    reply = _incident_call(args.id, lambda: client.get(f"/api/incidents/{args.id}"))
    if incident := _model(args, IncidentDetail, reply, client):
        cliviews.console().print(cliviews.incident_view(incident))
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    """Pause (or resume) all automation through the daemon; the switch is stored."""
    client = _client(args)
    body = {"reason": args.reason} if args.command == "pause" else {}
    reply = client.post(f"/api/{args.command}", body)
    if state := _model(args, PauseState, reply, client):
        cliviews.console().print(cliviews.pause_line(state))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Print the audit trail: a table, or JSON lines (--json) for a SIEM; --follow waits
    for new rows (the cursor carries on: none missed, none repeated)."""
    client = _client(args)
    query = {"limit": str(openapi.MAX_LIMIT)}
    if args.since:
        query["since"] = args.since
    if args.incident:
        query["incident"] = str(args.incident)
    rows: list[AuditRecord] = []
    while True:
        page = _parse(AuditPage, client.get("/api/audit", query), client)
        query["cursor"] = page.cursor
        for entry in page.entries:
            if args.json:
                print(json.dumps(entry.model_dump(mode="json"), sort_keys=True), flush=True)
            else:
                rows.append(entry)
        if page.entries:
            continue
        if not args.json and (rows or not args.follow):
            cliviews.console().print(cliviews.audit_table(rows))
            rows = []
        if not args.follow:
            return 0
        time.sleep(FOLLOW_EVERY_S)


def _decision_body(by: str | None, reason: str | None) -> dict[str, str]:
    """Only what was given: without --by, a personal token decides as its owner."""
    body = {"by": by, "reason": reason}
    return {k: v for k, v in body.items() if v is not None}


def cmd_decide(args: argparse.Namespace) -> int:
    """approve / deny / ack an incident through the running daemon's admin API."""
    client = _client(args)
    path = f"/api/incidents/{args.id}/{args.command}"
    try:
        reply = _incident_call(
            args.id, lambda: client.post(path, _decision_body(args.by, args.reason))
        )
    except apiclient.ApiError as exc:
        raise RemediatorError(f"{args.command} {args.id}: {exc}") from None
    if decided := _model(args, DecisionReply, reply, client):
        print(f"incident {args.id}: {decided.message} (state: {decided.state or '?'})")
    return 0
