"""Releases: immutable sets of service versions, made from build manifests.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the releases table."""
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("commit", sa.String(64)),
        sa.Column("services", sa.JSON, nullable=False),
        sa.Column("source", sa.Text),
    )


def downgrade() -> None:
    """Drop the releases table."""
    op.drop_table("releases")
