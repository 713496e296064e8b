"""Runs that wait hold no worker: the stage a run is parked at, when the scheduler resumes it
(a window opening, an approval's deadline), whether something happened while it was parking,
and which segment (continuation workflow) of it runs now.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the parking columns to runs, and an index for the scheduler's one query."""
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("parked", sa.String(100)))
        batch.add_column(sa.Column("wake_at", sa.DateTime(timezone=True)))
        batch.add_column(
            sa.Column("wake_pending", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("segment", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_runs_wake_at", "runs", ["wake_at"])


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_runs_wake_at", "runs")
    with op.batch_alter_table("runs") as batch:
        for column in ("segment", "wake_pending", "wake_at", "parked"):
            batch.drop_column(column)
