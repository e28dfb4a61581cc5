"""balance-sync's cursor: the stored `created` ranges of balance transactions per scope.

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
    # Written in the same transaction as the facts it accounts for (ledger/balance_sync.py).
    op.create_table(
        "balance_sync_cursors",
        sa.Column("scope_key", sa.String(255), primary_key=True),
        sa.Column("account", sa.String(255)),
        sa.Column("livemode", sa.Boolean, nullable=False),
        sa.Column("intervals", sa.Text, nullable=False),
        sa.Column("unsettled_from", sa.BigInteger),
        sa.Column("opening_stored", sa.Boolean, nullable=False),
        sa.Column("complete_passes", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("balance_sync_cursors")
