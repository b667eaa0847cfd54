"""The `remediator` command line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from remediator import __version__, cliadmin, cliviews, control, openapi, replay, ruletest
from remediator.cliadmin import load_args_config
from remediator.config import schema
from remediator.config.durations import parse_duration
from remediator.config.models import Config
from remediator.config.promcheck import check_prometheus_rules
from remediator.errors import ConfigError, RemediatorError
from remediator.private import UMASK
from remediator.simulate import pace
from remediator.store import open_store_url
from remediator.store.base import Store

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


def cmd_check(args: argparse.Namespace) -> int:
    """Validate everything; print each problem as file:line: path: message."""
    try:
        config = load_args_config(args)
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
    config = load_args_config(args)
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


def cmd_quarantine(args: argparse.Namespace) -> int:
    """List quarantined (rule, target) pairs."""
    rows = asyncio.run(_with_store(load_args_config(args), control.quarantines))
    if not rows:
        print("no (rule, target) pair is quarantined")
        return 0
    cliviews.console().print(cliviews.quarantine_table(rows))
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """List dead letters: items a loop failed on (kept, never retried)."""
    rows = asyncio.run(
        _with_store(load_args_config(args), lambda s: control.dead_letters(s, args.limit))
    )
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
            load_args_config(args),
            lambda s: control.release_quarantine(s, args.rule, args.target, who, time.time()),
        )
    )
    if not done:
        print(f"{args.rule} on {args.target} is not quarantined", file=sys.stderr)
        return 1
    print(f"released: {args.rule} on {args.target} is automated again")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """Run rule test files against the config's rules and policies; exit 1 on any failure."""
    config = load_args_config(args)
    logging.basicConfig(level=logging.ERROR, format="remediator: %(message)s")
    passed = failed = cases = 0
    began = time.perf_counter()
    for file in args.files:
        results, problems = asyncio.run(ruletest.run_file(Path(file), config))
        for problem in problems:
            print(problem.format())
        failed += len(problems)
        cases += len(results)
        for result in results:
            print("\n".join(ruletest.report(result, args.show)))
            passed, failed = passed + result.ok, failed + (not result.ok)
    took = pace(cases, time.perf_counter() - began, "case")
    print(f"{passed} passed, {failed} failed {took}", file=sys.stderr)
    return 1 if failed or not passed else 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay recorded webhook bodies in dry-run; print the timeline of decisions."""
    config = load_args_config(args)
    logging.basicConfig(level=logging.ERROR, format="remediator: %(message)s")
    until = float(args.until)
    began = time.perf_counter()
    replayed, skipped = asyncio.run(
        replay.replay(config, Path(args.file), until, sys.stdout, sys.stderr)
    )
    took = pace(replayed, time.perf_counter() - began, "notification")
    print(f"{replayed} notifications replayed, {skipped} lines skipped {took}", file=sys.stderr)
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

    p = admin("incidents", "list incidents, newest first", cliadmin.cmd_incidents)
    only = p.add_mutually_exclusive_group()
    only.add_argument("--open", action="store_true", help="only open incidents")
    only.add_argument(
        "--state",
        choices=openapi.STATE_FILTERS,
        metavar="S",
        help=f"only these: {', '.join(openapi.STATE_FILTERS)}",
    )
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (1 to 1000; 50)")
    p = admin("show", "show an incident with its steps and audit trail", cliadmin.cmd_show)
    p.add_argument("id", type=int)
    p = admin("pause", "pause all automation (notifications go on)", cliadmin.cmd_pause)
    p.add_argument("--reason", help="why, for the audit and the metrics")
    admin("resume", "resume automation; held steps run if still wanted", cliadmin.cmd_pause)
    p = admin(
        "audit", "print the audit trail (every incident's and global events)", cliadmin.cmd_audit
    )
    p.add_argument("--since", help="from this long ago (24h) or this RFC 3339 time on")
    p.add_argument("--incident", type=int, metavar="ID", help="only this incident's rows")
    p.add_argument("--follow", action="store_true", help="keep printing new rows as they come")
    admin(
        "replicas",
        "list replicas seen in the last minute, with their rules' hash",
        cliadmin.cmd_replicas,
    )
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
        p = admin(name, what, cliadmin.cmd_decide)
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
