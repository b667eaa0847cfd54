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

V1_TABLES = ("alerts", "incidents", "steps", "work", "audit", "cooldowns")
V2_TABLES = ("settings", "holds", "target_health")
