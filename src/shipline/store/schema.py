"""Tables of the state store. Changes go through an Alembic migration in migrations/versions."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workflow_id", sa.String(80), unique=True),
    sa.Column("pipeline", sa.String(40), nullable=False),
    sa.Column("environment", sa.String(63)),
    sa.Column("services", sa.JSON, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("requested_by", sa.String(200), nullable=False),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("phase", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("cancel_reason", sa.Text),
    sa.Column("emergency_reason", sa.Text),
    # a run waiting for people, a window or a lock is parked: no workflow runs for it
    sa.Column("parked", sa.String(100)),  # the stage it waits at
    sa.Column("wake_at", sa.DateTime(timezone=True), index=True),  # when the scheduler resumes it
    sa.Column("wake_pending", sa.Boolean, nullable=False, default=False),  # woken while parking
    sa.Column("segment", sa.Integer, nullable=False, default=0),  # its current continuation
    # the durable queue it runs from: None for any worker's, a machine's own for `local` targets
    sa.Column("queue", sa.String(100)),
)

stages = sa.Table(
    "stages",
    metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("phase", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("outputs", sa.JSON),
)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("stage", sa.String(100), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("phase", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("outputs", sa.JSON),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("stage", sa.String(100)),
    sa.Column("step", sa.String(100)),
    sa.Column("message", sa.Text, nullable=False),
)

logs = sa.Table(
    "logs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("stage", sa.String(100), nullable=False),
    sa.Column("step", sa.String(100), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("line", sa.Text, nullable=False),
)

votes = sa.Table(
    "votes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("stage", sa.String(100), nullable=False),
    sa.Column("user", sa.String(200), nullable=False),
    sa.Column("approve", sa.Boolean, nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

locks = sa.Table(
    "locks",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("queued_at", sa.DateTime(timezone=True)),
)

releases = sa.Table(
    "releases",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("commit", sa.String(64)),
    sa.Column("services", sa.JSON, nullable=False),
    sa.Column("source", sa.Text),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("time", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(80), nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # canonical JSON, as hashed
    sa.Column("prev", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # one row: id 1
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

revisions = sa.Table(
    "revisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("environment", sa.String(63), nullable=False),
    sa.Column("service", sa.String(63), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("version", sa.String(128), nullable=False),
    sa.Column("replicas", sa.Integer, nullable=False),
    sa.Column("cause", sa.String(200), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("by", sa.String(200)),
    sa.Column("run_id", sa.Integer),
    sa.UniqueConstraint("environment", "service", "revision", name="uq_revisions_number"),
)

infra_outputs = sa.Table(
    "infra_outputs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("stack", sa.String(63), nullable=False),
    sa.Column("environment", sa.String(63), nullable=False),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column(
        "outputs", sa.JSON, nullable=False
    ),  # name -> {value, sensitive}; sensitive: no value
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("stack", "environment", "run_id", name="uq_infra_outputs_run"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),  # a canonical identity
    sa.Column("password_hash", sa.String(200)),  # argon2; none for single sign-on people
    sa.Column("admin", sa.Boolean, nullable=False, default=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("source", sa.String(20), nullable=False),  # local | oidc
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_name", sa.String(128), nullable=False),
    sa.Column("label", sa.String(100), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),  # SHA-256 of the token
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Column("last_used_at", sa.DateTime(timezone=True)),
)

web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),  # SHA-256 of the cookie value
    sa.Column("user_name", sa.String(128), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

# What the CLI and the server ask of the durable engine (queue a run or its continuation,
# deliver a message to a running one), written in the state store; workers carry it out and
# delete it. Nothing but the store is needed to start, vote on or cancel a run.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(10), nullable=False),  # enqueue | send | recover
    sa.Column("workflow_id", sa.String(120), nullable=False),  # or the dead worker (`recover`)
    sa.Column("run_id", sa.Integer),  # the run an `enqueue` starts
    sa.Column("topic", sa.String(40)),
    sa.Column("message", sa.JSON),
    sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
)

# The workers of this store, each with its heartbeat: one silent for long is taken as dead and
# another adopts its runs (except those pinned to its machine's local queue).
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),  # the worker id (its executor id)
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("local_queue", sa.String(100)),  # the queue of its machine's local targets
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
)
