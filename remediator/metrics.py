"""Prometheus metrics, on a registry owned by the daemon (no module-level state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from remediator.store.records import State


class Metrics:
    """Every metric remediator exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.alerts_received = Counter(
            "remediator_alerts_received",
            "Alerts received in webhook notifications, by alert status.",
            ["status"],
            registry=r,
        )
        self.webhook_requests = Counter(
            "remediator_webhook_requests",
            "Webhook requests by HTTP response code.",
            ["code"],
            registry=r,
        )
        self.webhook_latency = Histogram(
            "remediator_webhook_duration_seconds",
            "Time to answer a webhook request, durable write included.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.incidents = Gauge(
            "remediator_incidents", "Incidents in the store, by state.", ["state"], registry=r
        )
        self.actions = Counter(
            "remediator_actions",
            "Remediation steps by action and result.",
            ["action", "result"],
            registry=r,
        )
        self.action_duration = Histogram(
            "remediator_action_duration_seconds",
            "Time a step's action took, connection included.",
            ["action"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.inbox_pending = Gauge(
            "remediator_inbox_pending",
            "Acknowledged notifications the engine has not applied yet (backlog).",
            registry=r,
        )
        self.guard_holds = Counter(
            "remediator_guard_holds",
            "Times a guard held a step back or refused it, by guard.",
            ["guard"],
            registry=r,
        )
        self.quarantined = Gauge(
            "remediator_quarantined",
            "1 for each (rule, target) whose automation is quarantined after repeated failures.",
            ["rule", "target"],
            registry=r,
        )
        self.paused = Gauge(
            "remediator_paused", "1 while automation is paused (remediator pause).", registry=r
        )
        self.notifications = Counter(
            "remediator_notifications",
            "Notification deliveries by channel (slack, email) and result (sent, error, failed).",
            ["channel", "result"],
            registry=r,
        )
        self.outbox_pending = Gauge(
            "remediator_outbox_pending",
            "Notifications queued and not yet delivered (or given up).",
            registry=r,
        )
        self.approvals = Counter(
            "remediator_approvals",
            "Approval decisions by result (approved, denied, expired, refused click).",
            ["result"],
            registry=r,
        )
        self.engine_errors = Counter(
            "remediator_engine_errors",
            "Errors in the engine's loops (each also logged).",
            registry=r,
        )
        self.poison_items = Counter(
            "remediator_poison_items",
            "Items a loop failed on unexpectedly, by loop: each kept as a dead letter.",
            ["loop"],
            registry=r,
        )
        self.loop_restarts = Counter(
            "remediator_loop_restarts",
            "Background loops that died and were restarted by the supervisor, by loop.",
            ["loop"],
            registry=r,
        )
        self.loop_up = Gauge(
            "remediator_loop_up",
            "1 while a background loop runs, 0 while it is down awaiting restart.",
            ["loop"],
            registry=r,
        )
        self.dead_letters = Gauge(
            "remediator_dead_letters",
            "Dead letters kept in the store (items a loop failed on).",
            registry=r,
        )
        self.record_errors = Counter(
            "remediator_record_errors",
            "Batches of webhook bodies the `record:` file did not take (each also logged).",
            registry=r,
        )
        self.reload_ok = Gauge(
            "remediator_config_last_reload_successful",
            "1 if the last config reload succeeded (0: the last good rules and policies run).",
            registry=r,
        )
        self.reload_ok.set(1)
        self.reload_time = Gauge(
            "remediator_config_last_reload_success_timestamp_seconds",
            "When rules/ and policies/ were last loaded successfully (Unix time).",
            registry=r,
        )
        self.reloads = Counter(
            "remediator_config_reloads",
            "Reloads of rules/ and policies/ by result (success, failure).",
            ["result"],
            registry=r,
        )
        self.config_hash = Gauge(
            "remediator_config_hash",
            "1 for the hash of the rules, policies and inventory this replica runs; replicas "
            "on one store with different hashes run different rules.",
            ["hash"],
            registry=r,
        )
        self.store_rows = Gauge(
            "remediator_store_rows",
            "Rows per store table, counted after each retention pass.",
            ["table"],
            registry=r,
        )
        self.store_pruned = Counter(
            "remediator_store_pruned_rows",
            "Rows the retention pass deleted, by table.",
            ["table"],
            registry=r,
        )
        self.slack_socket_connected = Gauge(
            "remediator_slack_socket_connected",
            "1 while the Slack Socket Mode connection is up (slack.mode: socket), else 0.",
            registry=r,
        )
        self.slack_socket_connects = Counter(
            "remediator_slack_socket_connects",
            "Socket Mode connections opened (the first one and every reconnection).",
            registry=r,
        )
        self.slack_socket_envelopes = Counter(
            "remediator_slack_socket_envelopes",
            "Socket Mode envelopes received, by type (interactive, events_api...).",
            ["type"],
            registry=r,
        )
        self.silences = Counter(
            "remediator_silences",
            "Alertmanager silences by result: created, updated, failed (not created; the "
            "step ran), expired, expire_failed, poll_failed, resolved (seen by the poll).",
            ["result"],
            registry=r,
        )

        # Children bound once: the webhook path is hot.
        self._firing = self.alerts_received.labels(status="firing")
        self._resolved = self.alerts_received.labels(status="resolved")
        self._codes: dict[int, Counter] = {}

    def count_alerts(self, *, firing: int, resolved: int) -> None:
        """Alerts received in one notification."""
        if firing:
            self._firing.inc(firing)
        if resolved:
            self._resolved.inc(resolved)

    def count_webhook_response(self, status: int) -> None:
        """One webhook answer by HTTP status."""
        child = self._codes.get(status)
        if child is None:
            child = self._codes[status] = self.webhook_requests.labels(code=str(status))
        child.inc()

    def set_incident_counts(self, counts: dict[str, int]) -> None:
        """Refresh the per-state gauge from the store's counts."""
        for state in State:
            self.incidents.labels(state=state.value).set(counts.get(state.value, 0))

    def set_quarantined(self, pairs: list[tuple[str, str]]) -> None:
        """Refresh the quarantine gauge: exactly these (rule, target) pairs."""
        self.quarantined.clear()
        for rule, target in pairs:
            self.quarantined.labels(rule=rule, target=target).set(1)

    def set_config_hash(self, digest: str) -> None:
        """The running config's hash, and only it (reloads replace it)."""
        self.config_hash.clear()
        self.config_hash.labels(hash=digest).set(1)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
