"""Every revision a deploy, rollback, scale or restart made, with who and which run
(`shipline history`), so that bad revision numbers are refused when a run is submitted.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the revisions table."""
    op.create_table(
        "revisions",
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


def downgrade() -> None:
    """Drop it."""
    op.drop_table("revisions")
