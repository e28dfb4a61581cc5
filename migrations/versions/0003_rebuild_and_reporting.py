"""Rebuild leases, and the read-only reporting role (PostgreSQL only; SQLite has no roles).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations import run_sql_file

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per running rebuild: two rebuilds of one projection would fill the same new
    # generation. A lease expires when its holder stops renewing it (a killed rebuild).
    op.create_table(
        "projection_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
    )
    run_sql_file(op.get_bind(), "0003_reporting_role")


def downgrade() -> None:
    pass  # the role may own grants elsewhere; dropping it is an operator's decision
