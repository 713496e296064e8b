"""The outbox: what the CLI and the server ask of the durable engine (queue a run or its
continuation, deliver a message), for workers to carry out.

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
    """Create the outbox."""
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


def downgrade() -> None:
    """Drop it."""
    op.drop_table("outbox")
