"""The store's tables, one schema for SQLite and PostgreSQL (SQLAlchemy Core).

Times are epoch seconds (float) from the engine's clock, so a fake clock drives them in
tests. JSON columns hold labels, annotations, commands and audit details.
"""

from __future__ import annotations

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
    UniqueConstraint,
)

metadata = MetaData()
Id = BigInteger().with_variant(Integer(), "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("name", String(100), nullable=False),
    Column("applied_at", Float, nullable=False),
)

# Last known status of each alert instance (fingerprint x startsAt): re-sends are no-ops.
alerts = Table(
    "alerts",
    metadata,
    Column("fingerprint", String(64), primary_key=True),
    Column("starts_at", String(40), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("annotations", JSON, nullable=False),
    Column("ends_at", String(40)),
    Column("first_seen_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("rule", String(200), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("starts_at", String(40), nullable=False),
    Column("target", String(200)),
    Column("state", String(32), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("annotations", JSON, nullable=False),
    Column("step_index", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("closed_at", Float),
    UniqueConstraint("rule", "fingerprint", "starts_at", name="uq_incident_alert"),
    Index("ix_incidents_alert", "fingerprint", "starts_at"),
    Index("ix_incidents_state", "state"),
)

steps = Table(
    "steps",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", ForeignKey("incidents.id"), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("action", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("command", JSON),
    Column("attempts", Integer, nullable=False, default=0),
    Column("started_at", Float, nullable=False),
    Column("executing_at", Float),
    Column("finished_at", Float),
    Column("exit_status", Integer),
    Column("output", Text),
    Column("error", Text),
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
    Column("kind", String(32), nullable=False),
    Column("incident_id", ForeignKey("incidents.id"), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("due_at", Float, nullable=False),
    Column("claimed_by", String(64)),
    Column("claimed_until", Float),
    Column("attempts", Integer, nullable=False, default=0),
    Column("done_at", Float),
    Column("outcome", String(32)),
    Index("ix_work_due", "done_at", "due_at"),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", ForeignKey("incidents.id")),
    Column("at", Float, nullable=False),
    Column("event", String(64), nullable=False),
    Column("detail", JSON, nullable=False),
    Index("ix_audit_incident", "incident_id", "id"),
)

cooldowns = Table(
    "cooldowns",
    metadata,
    Column("rule", String(200), primary_key=True),
    Column("target", String(200), primary_key=True),
    Column("until", Float, nullable=False),
)

# --- version 2: guards ----------------------------------------------------------------

# Switches that must survive a restart (the global pause).
settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# A work item a deferring guard holds back: since when, by which guard, why.
holds = Table(
    "holds",
    metadata,
    Column("work_id", ForeignKey("work.id"), primary_key=True),
    Column("guard", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("since", Float, nullable=False),
    Column("guard_since", Float, nullable=False),
)

# Consecutive failed remediations per (rule, target), and quarantine once too many.
target_health = Table(
    "target_health",
    metadata,
    Column("rule", String(200), primary_key=True),
    Column("target", String(200), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("quarantined_at", Float),
    Column("reason", Text),
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
    Column("action", String(64), nullable=False),
    Column("command", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("required", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("decided_at", Float),
    Column("decided_by", String(200)),
    Column("reason", Text),
    UniqueConstraint("incident_id", "step_index", name="uq_approval_step"),
)

# One vote per person per approval: the two-person rule counts distinct voters.
approval_votes = Table(
    "approval_votes",
    metadata,
    Column("approval_id", ForeignKey("approvals.id"), primary_key=True),
    Column("voter", String(200), primary_key=True),
    Column("decision", String(16), nullable=False),
    Column("via", String(16), nullable=False),
    Column("at", Float, nullable=False),
)

# An incident's escalation chain: started once, stopped by acknowledge or resolve.
escalations = Table(
    "escalations",
    metadata,
    Column("incident_id", ForeignKey("incidents.id"), primary_key=True),
    Column("chain", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("stopped_at", Float),
    Column("stopped_by", String(200)),
)

# Every notification, delivered by a worker with retries; nothing is sent from a handler.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", ForeignKey("incidents.id")),
    Column("kind", String(32), nullable=False),
    Column("target", String(320), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("dedup_key", String(200), unique=True),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("due_at", Float, nullable=False),
    Column("claimed_until", Float),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("done_at", Float),
    Index("ix_outbox_due", "state", "due_at"),
)

# Slack messages kept up to date in place: which channel and ts a message key has.
slack_messages = Table(
    "slack_messages",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("channel", String(80), nullable=False),
    Column("ts", String(32), nullable=False),
    Column("updated_at", Float, nullable=False),
)

# --- version 4: dead letters -------------------------------------------------------------

# One item a loop could not handle (a bug, or input nothing foresaw): kept, never retried.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("loop", String(32), nullable=False),
    Column("item", String(64), nullable=False),
    Column("incident_id", ForeignKey("incidents.id")),
    Column("error", Text, nullable=False),
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
    Column("body", Text, nullable=False),
)

V1_TABLES = ("alerts", "incidents", "steps", "work", "audit", "cooldowns")
V2_TABLES = ("settings", "holds", "target_health")
V3_TABLES = ("approvals", "approval_votes", "escalations", "outbox", "slack_messages")
V4_TABLES = ("dead_letters",)
V6_TABLES = ("inbox",)
