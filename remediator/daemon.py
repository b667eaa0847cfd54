"""The daemon's lifecycle: one object starts everything and stops it in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from remediator import heap
from remediator.actions import SshPool, build_registry, close_actions
from remediator.actions.sshpool import SshSettings
from remediator.api import AdminApi
from remediator.auth import AdminTokens, WebhookAuthenticator
from remediator.clock import Clock, SystemClock
from remediator.config.models import Config
from remediator.config.server import parse_listen
from remediator.engine import Engine, EngineContext
from remediator.errors import StartupError, StoreError, StoreGone
from remediator.http import Receiver, build_app
from remediator.ingest import Ingestor
from remediator.metrics import Metrics
from remediator.notify.outbox import Outbox
from remediator.notify.setup import Notifiers, build_notifiers
from remediator.record import Recorder
from remediator.reload import Reloader
from remediator.replicas import Heartbeat, readiness
from remediator.silences.client import AlertmanagerClient
from remediator.silences.watch import SilenceWatch, close_quietly
from remediator.slackapp import ClickDecisions, SlackInteractions
from remediator.slacksocket import SlackSocket, SocketSettings
from remediator.store import open_store_url, spoolpipe
from remediator.store.base import Store
from remediator.store.retention import Pruner
from remediator.store.sqlite import SqliteStore
from remediator.supervisor import Supervisor

log = logging.getLogger(__name__)


def ssh_settings(config: Config) -> SshSettings | None:
    """Resolve the `ssh:` section; missing key files are an error at start, not at 3 a.m."""
    ssh = config.file.ssh
    if ssh is None:
        return None
    known_hosts = config.resolve_path(ssh.known_hosts)
    keys = tuple(config.resolve_path(k) for k in ssh.client_keys)
    problems = []
    if not known_hosts.is_file():
        problems.append(
            f"ssh.known_hosts: {known_hosts} does not exist (host keys are always checked)"
        )
    problems += [f"ssh.client_keys: {k} does not exist" for k in keys if not k.is_file()]
    if problems:
        raise StartupError("; ".join(problems))
    return SshSettings(
        known_hosts=known_hosts,
        client_keys=keys,
        connect_timeout_s=ssh.connect_timeout,
        command_timeout_s=ssh.command_timeout,
        connect_attempts=ssh.connect_attempts,
    )


def open_recording(path: Path) -> Recorder:
    """The `record:` file, or a start error naming it."""
    try:
        return Recorder(path)
    except OSError as exc:
        raise StartupError(f"record: cannot open {path} for appending: {exc}") from exc


class Daemon:
    """Receiver, engine loops and HTTP server, stopped gracefully on SIGTERM/SIGINT."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.environ = environ
        self.metrics = Metrics()
        self._stop = asyncio.Event()
        self._ready = False
        self._supervisor = Supervisor(self.metrics)

    def request_stop(self) -> None:
        """Begin a graceful shutdown."""
        self._stop.set()

    async def run(self) -> None:
        """Run until asked to stop."""
        config = self.config
        auth = WebhookAuthenticator.from_config(config, self.environ)
        notifiers = build_notifiers(config, self.environ)
        admin_tokens = AdminTokens.from_config(config, self.environ)
        am = config.file.alertmanager
        silencer = AlertmanagerClient.from_config(am, self.environ) if am else None
        settings = ssh_settings(config)
        host, port = parse_listen(config.file.server.listen)
        store = open_store_url(
            config.file.store,
            config.base_dir,
            password_env=config.file.store_password_env,
            environ=self.environ,
        )
        await store.open()
        pool = SshPool(settings) if settings else None
        actions = build_registry(pool, self.environ)
        recorder: Recorder | None = None
        try:
            # Start the spool writer now: one that cannot write stops start-up, not the
            # first webhook.
            await store.append_inbox([])
            ctx = EngineContext(config, store, actions, self.clock, self.metrics)
            ctx.silencer = silencer
            engine = Engine(ctx)
            await engine.recover()
            outbox = Outbox(
                store,
                config,
                self.clock,
                self.metrics,
                notifiers.slack,
                notifiers.email,
                ctx.outbox_ready,
                engine.dead,
                owner=engine.owner,
            )
            await outbox.recover()
            if config.file.record:
                recorder = open_recording(config.resolve_path(config.file.record))
            ingestor = Ingestor(
                store,
                on_stored=engine.stored,
                recorder=recorder,
                on_record_error=self.metrics.record_errors.inc,
                metrics=self.metrics,
                # The spool's writer commits batches in the order sent: several may be out.
                depth=spoolpipe.DEPTH if isinstance(store, SqliteStore) else 1,
            )
            engine.before_intake_batch = ingestor.wait_for_headroom
            receiver = Receiver(
                auth, ingestor, self.metrics, config.file.server.max_body_bytes, self.clock.now
            )
            decisions = ClickDecisions(ctx)
            slack_app = (
                SlackInteractions(decisions, notifiers.signing_secret)
                if notifiers.signing_secret is not None
                else None
            )
            socket = _slack_socket(config, notifiers, decisions, self.metrics)

            def extra_routes(app: web.Application) -> None:
                AdminApi(ctx, admin_tokens, engine.owner).routes(app)
                if slack_app is not None:
                    app.router.add_post("/slack/interactions", slack_app.handle)

            app = build_app(
                receiver,
                store,
                self.metrics,
                self._not_ready,
                extra_routes,
                lambda: readiness(store, self.clock, ctx.config_hash),
            )
            reloader = Reloader(ctx, self.metrics, self.clock.now, engine.owner)
            watch = (
                SilenceWatch(ctx, silencer, am, ingestor.submit)
                if silencer is not None and am is not None
                else None
            )
            await self._serve(
                app, host, port, store, ingestor, engine, outbox, reloader, socket, watch
            )
            await decisions.close()
        finally:
            if recorder is not None:
                recorder.close()
            await close_actions(actions)
            await _close_notifiers(notifiers)
            if silencer is not None:
                await close_quietly(silencer)
            if pool is not None:
                await pool.close()
            await store.close()
        log.info("stopped")

    def _not_ready(self) -> str | None:
        if not self._ready:
            return "starting or shutting down"
        return self._supervisor.not_ready()

    async def _serve(
        self,
        app: web.Application,
        host: str,
        port: int,
        store: Store,
        ingestor: Ingestor,
        engine: Engine,
        outbox: Outbox,
        reloader: Reloader,
        socket: SlackSocket | None,
        watch: SilenceWatch | None,
    ) -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loops_stop = asyncio.Event()
        sup = self._supervisor
        sup.start("ingest", ingestor.run)
        sup.start("intake", engine.intake_loop)
        sup.start("work", engine.work_loop)
        sup.start("outbox", lambda: outbox.loop(loops_stop))
        sup.start("reload", lambda: reloader.watch(loops_stop))
        sup.start("store", lambda: watch_store(store, loops_stop))
        sup.start("retention", lambda: Pruner.for_context(engine.ctx).loop(loops_stop))
        heartbeat = Heartbeat(
            store,
            self.clock,
            engine.owner,
            self.config.file.server.listen,
            lambda: engine.ctx.config_hash,
        )
        sup.start("heartbeat", lambda: heartbeat.loop(loops_stop))
        if socket is not None:
            sup.start("slack-socket", lambda: socket.loop(loops_stop))
        if watch is not None:
            sup.start("silences", lambda: watch.loop(loops_stop))
        loop.add_signal_handler(
            signal.SIGHUP, lambda: sup.spawn("SIGHUP reload", reloader.reload("SIGHUP"))
        )
        try:
            await web.TCPSite(runner, host, port).start()
            heap.settle()
            self._ready = True
            log.info(
                "listening",
                extra={"address": f"{host}:{port}", "rules": len(self.config.rules)},
            )
            await _first(self._stop.wait(), sup.fatal_event.wait())
        finally:
            log.info("shutting down")
            self._ready = False
            await runner.cleanup()  # stop accepting; in-flight webhooks finish storing
            ingestor.close()
            await engine.stop(self.config.file.server.shutdown_grace)
            loop.remove_signal_handler(signal.SIGHUP)
            loops_stop.set()
            outbox.ready.set()
            await sup.stop()
        if sup.fatal is not None:
            raise sup.fatal


def _slack_socket(
    config: Config, notifiers: Notifiers, decisions: ClickDecisions, metrics: Metrics
) -> SlackSocket | None:
    """The Socket Mode link, when `slack.mode` is `socket`."""
    s = config.file.slack
    if s is None or notifiers.app_token is None:
        return None
    settings = SocketSettings(
        app_token=notifiers.app_token,
        api_url=s.api_url,
        timeout_s=s.timeout,
        ping_s=s.socket_ping,
        reconnect_min_s=s.reconnect_min,
        reconnect_max_s=s.reconnect_max,
    )
    return SlackSocket(decisions, settings, metrics)


async def watch_store(store: Store, stopping: asyncio.Event, every_s: float = 5.0) -> None:
    """Ping the store; one that is gone for good (StoreGone) ends the daemon."""
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every_s)
        try:
            await store.ping()
        except StoreGone:
            raise
        except StoreError as exc:  # unavailable for now: /readyz says so, webhooks get 503
            log.warning("store ping failed", extra={"error": str(exc)})


async def _first(*aws: Coroutine[Any, Any, object]) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def _close_notifiers(notifiers: Notifiers) -> None:
    if notifiers.slack is not None:
        await notifiers.slack.close()
