"""The append-only event store, the consumer's Kafka offsets and the dead-letter table.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations import run_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Payload = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("position", Position, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("api_version", sa.String(64)),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("livemode", sa.Boolean, nullable=False),
        sa.Column("account", sa.String(255)),
        sa.Column("object_type", sa.String(255)),
        sa.Column("object_id", sa.String(255)),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("payload", Payload, nullable=False),
        sa.Column("kafka_topic", sa.String(255)),
        sa.Column("kafka_partition", sa.Integer),
        sa.Column("kafka_offset", sa.BigInteger),
        sa.UniqueConstraint("event_id", name="events_event_id_key"),
        sa.CheckConstraint(
            "source IN ('webhook', 'import', 'backfill')", name="events_source_known"
        ),
        sqlite_autoincrement=True,  # never reuse a position, even after a rolled-back append
    )
    op.create_index("events_object", "events", ["object_type", "object_id"])
    op.create_table(
        "kafka_offsets",
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", Position, primary_key=True, autoincrement=True),
        sa.Column("topic", sa.String(255)),
        sa.Column("partition", sa.Integer),
        sa.Column("offset", sa.BigInteger),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("topic", "partition", "offset", name="dead_letters_coordinates"),
    )
    run_sql_file(op.get_bind(), "0001_event_store")


def downgrade() -> None:
    raise NotImplementedError("the event store is never dropped by a migration")
