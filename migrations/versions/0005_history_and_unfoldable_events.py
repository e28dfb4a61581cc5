"""History that cannot be rewritten (SQLite), and the events a projection could not fold.

SQLite: ``events_no_replace`` refuses INSERT OR REPLACE and UPSERT over a stored event (the
DELETE trigger of 0001 does not fire for REPLACE). ``projection_failures``: one row per
(projection, generation, event) that the projection's fold raised on; the worker records it,
moves on, and ``verify`` reports it (issue 19: one stored event must not stop the projector).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations import run_sql_file

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projection_failures",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("error", sa.String(500), nullable=False),
        sa.Column("failed_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", "generation", "position"),
    )
    run_sql_file(op.get_bind(), "0005_history_cannot_be_rewritten")


def downgrade() -> None:
    op.drop_table("projection_failures")
