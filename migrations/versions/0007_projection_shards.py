"""Projection shards (issue 17): how many shards each live generation is split into, and each
shard's checkpoint (``project --shard I/N``; see projections/shard.py and registry.py).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations import run_sql_file

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every generation projected before this migration is one shard: its checkpoint stays
    # projection_state.position.
    op.add_column(
        "projection_state",
        sa.Column("shards", sa.Integer, nullable=False, server_default="1"),
    )
    op.create_table(
        "projection_shards",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("shard", sa.Integer, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", "generation", "shard"),
        sa.CheckConstraint("shard >= 0", name="projection_shards_shard_not_negative"),
        sa.CheckConstraint("position >= 0", name="projection_shards_position_not_negative"),
    )
    run_sql_file(op.get_bind(), "0007_projection_shards")


def downgrade() -> None:
    op.drop_table("projection_shards")
    with op.batch_alter_table("projection_state") as batch:
        batch.drop_column("shards")
