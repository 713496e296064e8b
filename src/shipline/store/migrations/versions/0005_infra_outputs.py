"""The outputs of every infrastructure apply, per (stack, environment), which variables of
later deploys take their values from.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the infra_outputs table."""
    op.create_table(
        "infra_outputs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("stack", sa.String(63), nullable=False),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("stack", "environment", "run_id", name="uq_infra_outputs_run"),
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("infra_outputs")
