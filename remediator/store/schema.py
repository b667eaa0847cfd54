"""The store's tables, one schema for SQLite and PostgreSQL (SQLAlchemy Core).

Times are epoch seconds (float) from the engine's clock, so a fake clock drives them in
tests. JSON columns hold labels, annotations, commands and audit details.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

metadata = MetaData()


class _PortableText:
    """What SQLite stores, PostgreSQL stores too: SQLite never enforced VARCHAR lengths and
    keeps NUL in text; PostgreSQL's text is unbounded here and takes NUL as U+FFFD (its
    text type cannot hold NUL, and labels, commands' output and errors come from outside)."""

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(self.impl_instance)  # type: ignore[attr-defined]

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is not None and dialect.name == "postgresql":
            return value.replace("\x00", "\ufffd")
        return value


class Str(_PortableText, TypeDecorator[str]):
    """VARCHAR(n) on SQLite, as before; see _PortableText for PostgreSQL."""

    impl = String
    cache_ok = True


class LongText(_PortableText, TypeDecorator[str]):
    """TEXT on SQLite, as before; see _PortableText for PostgreSQL."""

    impl = Text
    cache_ok = True


Id = BigInteger().with_variant(Integer(), "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("name", Str(100), nullable=False),
    Column("applied_at", Float, nullable=False),
)

# Last known status of each alert instance (fingerprint x startsAt): re-sends are no-ops.
alerts = Table(
    "alerts",
    metadata,
    Column("fingerprint", Str(64), primary_key=True),
    Column("starts_at", Str(40), primary_key=True),
    Column("status", Str(16), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("annotations", JSON, nullable=False),
    Column("ends_at", Str(40)),
    Column("first_seen_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("rule", Str(200), nullable=False),
    Column("fingerprint", Str(64), nullable=False),
    Column("starts_at", Str(40), nullable=False),
    Column("target", Str(200)),
    Column("state", Str(32), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("annotations", JSON, nullable=False),
    Column("step_index", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("closed_at", Float),
    # The Alertmanager silence kept while the incident's steps work (migration 11).
    Column("silence_id", Str(64)),
    UniqueConstraint("rule", "fingerprint", "starts_at", name="uq_incident_alert"),
    Index("ix_incidents_alert", "fingerprint", "starts_at"),
    Index("ix_incidents_state", "state"),
    Index("ix_incidents_silence", "silence_id"),
)

steps = Table(
    "steps",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", ForeignKey("incidents.id"), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("action", Str(64), nullable=False),
    Column("state", Str(16), nullable=False),
    Column("command", JSON),
    Column("attempts", Integer, nullable=False, default=0),
    Column("started_at", Float, nullable=False),
    Column("executing_at", Float),
    Column("finished_at", Float),
    Column("exit_status", Integer),
    Column("output", LongText),
    Column("error", LongText),
    UniqueConstraint("incident_id", "step_index", name="uq_step"),
)
# Version 2: the rate guard counts recent step starts.
ix_steps_started = Index("ix_steps_started", steps.c.started_at)
ix_incidents_target = Index("ix_incidents_target", incidents.c.target, incidents.c.state)

# Durable timers and jobs: a row with a due time, claimed with a lease by a worker.
work = Table(
    "work",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", Str(32), nullable=False),
    Column("incident_id", ForeignKey("incidents.id"), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("due_at", Float, nullable=False),
    Column("claimed_by", Str(64)),
    Column("claimed_until", Float),
    Column("attempts", Integer, nullable=False, default=0),
    Column("done_at", Float),
    Column("outcome", Str(32)),
    Index("ix_work_due", "done_at", "due_at"),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", ForeignKey("incidents.id")),
    Column("at", Float, nullable=False),
    Column("event", Str(64), nullable=False),
    Column("detail", JSON, nullable=False),
    # Commit order for readers that follow the trail (GET /api/audit): on PostgreSQL the
    # writing transaction's id (migration 10 sets the default), 0 on SQLite (one writer:
    # ids are already in commit order) and for rows written before version 10.
    Column("xact", BigInteger, nullable=False, server_default="0"),
    Index("ix_audit_incident", "incident_id", "id"),
    Index("ix_audit_xact", "xact", "id"),
    # Ids never come again after retention deleted the newest rows (migration 12).
    sqlite_autoincrement=True,
)

cooldowns = Table(
    "cooldowns",
    metadata,
    Column("rule", Str(200), primary_key=True),
    Column("target", Str(200), primary_key=True),
    Column("until", Float, nullable=False),
)

# --- version 2: guards ----------------------------------------------------------------

# Switches that must survive a restart (the global pause).
settings = Table(
    "settings",
    metadata,
    Column("key", Str(64), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# A work item a deferring guard holds back: since when, by which guard, why; and the guard
# scope that holds it (version 13: `group:<name>`, `target:<name>`, `global`), whose
# freed slot wakes its oldest holds first.
holds = Table(
    "holds",
    metadata,
    Column("work_id", ForeignKey("work.id"), primary_key=True),
    Column("guard", Str(32), nullable=False),
    Column("reason", LongText, nullable=False),
    Column("since", Float, nullable=False),
    Column("guard_since", Float, nullable=False),
    Column("scope", Str(300)),
    Index("ix_holds_scope", "scope", "since", "work_id"),
)

# Consecutive failed remediations per (rule, target), and quarantine once too many.
target_health = Table(
    "target_health",
    metadata,
    Column("rule", Str(200), primary_key=True),
    Column("target", Str(200), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("quarantined_at", Float),
    Column("reason", LongText),
    Column("updated_at", Float, nullable=False),
)

# --- version 3: humans in the loop ------------------------------------------------------

# A step waiting for human approval; decided once (approved, denied, expired, cancelled).
approvals = Table(
    "approvals",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", ForeignKey("incidents.id"), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("action", Str(64), nullable=False),
    Column("command", JSON, nullable=False),
    Column("state", Str(16), nullable=False),
    Column("required", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("decided_at", Float),
    Column("decided_by", Str(200)),
    Column("reason", LongText),
    UniqueConstraint("incident_id", "step_index", name="uq_approval_step"),
)

# One vote per person per approval: the two-person rule counts distinct voters.
approval_votes = Table(
    "approval_votes",
    metadata,
    Column("approval_id", ForeignKey("approvals.id"), primary_key=True),
    Column("voter", Str(200), primary_key=True),
    Column("decision", Str(16), nullable=False),
    Column("via", Str(16), nullable=False),
    Column("at", Float, nullable=False),
)

# An incident's escalation chain: started once, stopped by acknowledge or resolve.
escalations = Table(
    "escalations",
    metadata,
    Column("incident_id", ForeignKey("incidents.id"), primary_key=True),
    Column("chain", Str(200), nullable=False),
    Column("state", Str(16), nullable=False),
    Column("reason", LongText, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("stopped_at", Float),
    Column("stopped_by", Str(200)),
)

# Every notification, delivered by a worker with retries; nothing is sent from a handler.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", ForeignKey("incidents.id")),
    Column("kind", Str(32), nullable=False),
    Column("target", Str(320), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("dedup_key", Str(200), unique=True),
    Column("state", Str(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("due_at", Float, nullable=False),
    Column("claimed_until", Float),
    Column("last_error", LongText),
    Column("created_at", Float, nullable=False),
    Column("done_at", Float),
    # Version 9: the replica that claimed the row last (as work rows record theirs).
    Column("claimed_by", Str(64)),
    Index("ix_outbox_due", "state", "due_at"),
)

# Slack messages kept up to date in place: which channel and ts a message key has.
slack_messages = Table(
    "slack_messages",
    metadata,
    Column("key", Str(64), primary_key=True),
    Column("channel", Str(80), nullable=False),
    Column("ts", Str(32), nullable=False),
    Column("updated_at", Float, nullable=False),
)

# --- version 4: dead letters -------------------------------------------------------------

# One item a loop could not handle (a bug, or input nothing foresaw): kept, never retried.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("loop", Str(32), nullable=False),
    Column("item", Str(64), nullable=False),
    Column("incident_id", ForeignKey("incidents.id")),
    Column("error", LongText, nullable=False),
    Column("payload", JSON),
    Column("at", Float, nullable=False),
)

# --- version 5: retention -------------------------------------------------------------

# The retention pass (store/retention.py) finds aged rows and an incident's rows by these;
# deleting an incident also has SQLite check work and outbox for rows that point at it.
ix_incidents_closed = Index("ix_incidents_closed", incidents.c.closed_at)
ix_alerts_status_updated = Index("ix_alerts_status_updated", alerts.c.status, alerts.c.updated_at)
ix_work_incident = Index("ix_work_incident", work.c.incident_id)
ix_outbox_incident = Index("ix_outbox_incident", outbox.c.incident_id)
V5_INDEXES = (ix_incidents_closed, ix_alerts_status_updated, ix_work_incident, ix_outbox_incident)

# --- version 6: the inbox on PostgreSQL ---------------------------------------------------

# Webhook bodies acknowledged and not yet applied by the engine (store/postgres.py). The
# SQLite store keeps them in its own spool file instead (store/spool.py), so there this
# table is made, like every table, and stays empty: one schema for both backends.
inbox = Table(
    "inbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("received_at", Float, nullable=False),
    Column("body", LongText, nullable=False),
    # Version 7: the replica applying the row holds it until then (PostgreSQL).
    Column("claimed_by", Str(64)),
    Column("claimed_until", Float, nullable=True),
)

# --- version 8: replicas --------------------------------------------------------------

# Each running daemon's heartbeat (remediator/replicas.py): who runs, since when, on
# which rules. One row per process (id: the engine's owner id), refreshed every few seconds.
replicas = Table(
    "replicas",
    metadata,
    Column("id", Str(64), primary_key=True),
    Column("name", Str(255), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
    Column("version", Str(64), nullable=False),
    Column("config_hash", Str(64), nullable=False),
    Column("listen", Str(255), nullable=False),
    Index("ix_replicas_last_seen", "last_seen_at"),
)

V1_TABLES = ("alerts", "incidents", "steps", "work", "audit", "cooldowns")
V2_TABLES = ("settings", "holds", "target_health")
V3_TABLES = ("approvals", "approval_votes", "escalations", "outbox", "slack_messages")
V4_TABLES = ("dead_letters",)
V6_TABLES = ("inbox",)
V8_TABLES = ("replicas",)
