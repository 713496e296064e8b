"""The outbox: what the CLI and the server ask of the durable engine (queue a run or its
continuation, deliver a message), for workers to carry out; the workers, with their heartbeat
(a silent one's runs are adopted by another); the queue a run is pinned to (runs on a `local`
target stay on the machine that asked for them).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the outbox and the workers; pin runs to a queue."""
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("workflow_id", sa.String(120), nullable=False),
        sa.Column("run_id", sa.Integer),
        sa.Column("topic", sa.String(40)),
        sa.Column("message", sa.JSON),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "workers",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("local_queue", sa.String(100)),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("queue", sa.String(100)))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("queue")
    op.drop_table("workers")
    op.drop_table("outbox")
