"""The projection registry: one row per projection with its live generation and checkpoint.

The projections' own tables are generation-suffixed (``invoices_g1``) and created by code
(``Projection.create_tables``), so a rebuild can fill a new generation beside the live one.

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
    op.create_table(
        "projection_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("live_generation", sa.Integer, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.CheckConstraint("live_generation >= 1", name="projection_state_generation_positive"),
        sa.CheckConstraint("position >= 0", name="projection_state_position_not_negative"),
    )


def downgrade() -> None:
    op.drop_table("projection_state")
