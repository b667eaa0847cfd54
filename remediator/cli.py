"""The `remediator` command line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from remediator import __version__, apiclient, cliviews, control, openapi, replay, ruletest
from remediator.apimodels import (
    AuditPage,
    AuditRecord,
    DecisionReply,
    IncidentDetail,
    IncidentList,
    PauseState,
    ReplicaList,
)
from remediator.config import load_config, schema
from remediator.config.durations import parse_duration
from remediator.config.models import Config
from remediator.config.promcheck import check_prometheus_rules
from remediator.errors import ConfigError, RemediatorError
from remediator.private import UMASK
from remediator.store import open_store_url
from remediator.store.base import Store

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
FOLLOW_EVERY_S = 2.0  # `audit --follow`: how often to ask for new rows


def _config_path(value: str | None) -> Path:
    return Path(value or os.environ.get("REMEDIATOR_CONFIG") or "remediator.yml")


def _load(args: argparse.Namespace) -> Config:
    return load_config(_config_path(args.config))


def cmd_check(args: argparse.Namespace) -> int:
    """Validate everything; print each problem as file:line: path: message."""
    try:
        config = _load(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem.format())
        print(f"{len(exc.problems)} problem(s) found", file=sys.stderr)
        return 1
    env = config.file.store_password_env
    if env is not None and not os.environ.get(env):
        # Not a problem of the files (check may run where the secret is not), but serve fails.
        print(
            f"{config.path}: warning: store_password_env: environment variable {env} is not "
            "set or empty here; `remediator serve` needs it to reach the store"
        )
    n_files = len({origin.rpartition(":")[0] for origin in config.rule_files.values()})
    print(
        f"{config.path}: OK: {len(config.rules)} rules in {n_files} files, "
        f"{len(config.policies.escalations)} escalation chains, {len(config.hosts)} hosts"
    )
    if args.prometheus_rules:
        paths = [Path(p) for p in args.prometheus_rules]
        return _check_prometheus(config, paths, frozenset(args.external_alert or ()))
    return 0


def _check_prometheus(config: Config, paths: list[Path], external: frozenset[str]) -> int:
    """`check --prometheus-rules`: the rules against the alerts Prometheus would send."""
    report = check_prometheus_rules(config, paths, external)
    for warning in report.warnings:
        print(f"warning: {warning.format()}")
    for problem in report.problems:
        print(problem.format())
    if report.problems:
        print(f"{len(report.problems)} problem(s) found", file=sys.stderr)
        return 1
    where = ", ".join(str(p) for p in paths)
    print(
        f"{where}: OK: {report.alerts} alerting rules; {report.rules_checked} rules name "
        "alerts they produce, with the labels they read and a chain for each severity"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM."""
    from remediator import logs
    from remediator.daemon import Daemon

    logs.configure(args.log_level)
    config = _load(args)
    os.umask(UMASK)  # whatever it creates holds alerts and commands: private to its user
    asyncio.run(Daemon(config).run())
    return 0


async def _with_store(config: Config, fn: Callable[[Store], Awaitable[T]]) -> T:
    store = open_store_url(
        config.file.store, config.base_dir, lock=False, password_env=config.file.store_password_env
    )
    await store.open()
    try:
        return await fn(store)
    finally:
        await store.close()


def _client(args: argparse.Namespace) -> apiclient.AdminClient:
    """The running daemon: --url, else the config's server.listen; token from the env."""
    config = _load(args) if args.config or not args.url else None
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


def cmd_quarantine(args: argparse.Namespace) -> int:
    """List quarantined (rule, target) pairs."""
    rows = asyncio.run(_with_store(_load(args), control.quarantines))
    if not rows:
        print("no (rule, target) pair is quarantined")
        return 0
    cliviews.console().print(cliviews.quarantine_table(rows))
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """List dead letters: items a loop failed on (kept, never retried)."""
    rows = asyncio.run(_with_store(_load(args), lambda s: control.dead_letters(s, args.limit)))
    if args.json:
        cliviews.print_json([dataclasses.asdict(r) for r in rows])
        return 0
    if not rows:
        print("no dead letters")
        return 0
    cliviews.console().print(cliviews.dead_letters_table(rows))
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    """Lift the quarantine of a (rule, target) so automation resumes for it."""
    who = os.environ.get("USER", "cli")
    done = asyncio.run(
        _with_store(
            _load(args),
            lambda s: control.release_quarantine(s, args.rule, args.target, who, time.time()),
        )
    )
    if not done:
        print(f"{args.rule} on {args.target} is not quarantined", file=sys.stderr)
        return 1
    print(f"released: {args.rule} on {args.target} is automated again")
    return 0


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


def cmd_test(args: argparse.Namespace) -> int:
    """Run rule test files against the config's rules and policies; exit 1 on any failure."""
    config = _load(args)
    logging.basicConfig(level=logging.ERROR, format="remediator: %(message)s")
    passed = failed = 0
    for file in args.files:
        results, problems = asyncio.run(ruletest.run_file(Path(file), config))
        for problem in problems:
            print(problem.format())
        failed += len(problems)
        for result in results:
            print("\n".join(ruletest.report(result, args.show)))
            passed, failed = passed + result.ok, failed + (not result.ok)
    print(f"{passed} passed, {failed} failed", file=sys.stderr)
    return 1 if failed or not passed else 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay recorded webhook bodies in dry-run; print the timeline of decisions."""
    config = _load(args)
    logging.basicConfig(level=logging.ERROR, format="remediator: %(message)s")
    until = float(args.until)
    replayed, skipped = asyncio.run(
        replay.replay(config, Path(args.file), until, sys.stdout, sys.stderr)
    )
    print(f"{replayed} notifications replayed, {skipped} lines skipped", file=sys.stderr)
    return 1 if skipped else 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of remediator.yml, a rules file or a policies file."""
    sys.stdout.write(schema.render(args.kind))
    return 0


def _duration_arg(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(prog="remediator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"remediator {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    config_help = "config file (default: $REMEDIATOR_CONFIG, else ./remediator.yml)"

    def command(name: str, help_text: str, func: Callable[[argparse.Namespace], int]) -> Any:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("-c", "--config", help=config_help)
        p.set_defaults(func=func)
        return p

    p = command("serve", "run the daemon", cmd_serve)
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p = command("check", "validate config, rules, policies and inventory", cmd_check)
    p.add_argument(
        "--prometheus-rules",
        action="append",
        metavar="DIR",
        help="also check the rules against the Prometheus alerting rules in DIR (a folder "
        "of YAML files, or one file; repeatable): the alerts they name exist, carry the "
        "labels they read, and each severity reaches a chain",
    )
    p.add_argument(
        "--external-alert",
        action="append",
        metavar="NAME",
        help="with --prometheus-rules: an alert that comes from outside Prometheus (sent "
        "with amtool, or by another system), so no alerting rule need produce it",
    )
    p = command("test", "run rule test files (alerts in, expected decisions out)", cmd_test)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--show", action="store_true", help="print every case's actual decisions")
    p = sub.add_parser(
        "schema",
        help="print the JSON Schema (draft 2020-12) of remediator.yml, a rules or a policies "
        "file, for editors and CI (schemas/ in the repository holds them)",
    )
    p.add_argument("kind", choices=list(schema.KINDS))
    p.set_defaults(func=cmd_schema)
    p = command("replay", "replay recorded webhook bodies (JSON lines) in dry-run", cmd_replay)
    p.add_argument("file", metavar="FILE")
    p.add_argument(
        "--until",
        default="1h",
        type=_duration_arg,
        help="run timers this long after the last line (default 1h)",
    )

    def admin(name: str, help_text: str, func: Callable[[argparse.Namespace], int]) -> Any:
        p = command(name, f"{help_text} (through the daemon's admin API)", func)
        p.add_argument("--url", help="the daemon (default: from the config's server.listen)")
        p.add_argument("--json", action="store_true", help="print the daemon's JSON as is")
        return p

    p = admin("incidents", "list incidents, newest first", cmd_incidents)
    only = p.add_mutually_exclusive_group()
    only.add_argument("--open", action="store_true", help="only open incidents")
    only.add_argument(
        "--state",
        choices=openapi.STATE_FILTERS,
        metavar="S",
        help=f"only these: {', '.join(openapi.STATE_FILTERS)}",
    )
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (1 to 1000; 50)")
    p = admin("show", "show an incident with its steps and audit trail", cmd_show)
    p.add_argument("id", type=int)
    p = admin("pause", "pause all automation (notifications go on)", cmd_pause)
    p.add_argument("--reason", help="why, for the audit and the metrics")
    admin("resume", "resume automation; held steps run if still wanted", cmd_pause)
    p = admin("audit", "print the audit trail (every incident's and global events)", cmd_audit)
    p.add_argument("--since", help="from this long ago (24h) or this RFC 3339 time on")
    p.add_argument("--incident", type=int, metavar="ID", help="only this incident's rows")
    p.add_argument("--follow", action="store_true", help="keep printing new rows as they come")
    admin("replicas", "list replicas seen in the last minute, with their rules' hash", cmd_replicas)
    command("quarantine", "list (rule, target) pairs quarantined", cmd_quarantine)
    p = command("dead-letters", "list items a loop failed on (never retried)", cmd_dead_letters)
    p.add_argument("--limit", type=int, default=50, help="newest N (default 50)")
    p.add_argument("--json", action="store_true", help="JSON with the payloads, for scripts")
    p = command("release", "lift a quarantine", cmd_release)
    p.add_argument("rule")
    p.add_argument("target")
    for name, what in (
        ("approve", "approve the step an incident waits on"),
        ("deny", "deny the step an incident waits on (it escalates)"),
        ("ack", "acknowledge an incident: automation and paging stop"),
    ):
        p = admin(name, what, cmd_decide)
        p.add_argument("id", type=int)
        p.add_argument(
            "--by",
            help="who decides: needed with the shared admin token (all its holders are one "
            "person, admin-token); a personal token decides as its owner",
        )
        p.add_argument("--reason", help="why, for the audit")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem.format(), file=sys.stderr)
        return 1
    except RemediatorError as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
