"""The event store's tables, as SQLAlchemy Core metadata shared by PostgreSQL and SQLite.

This is the one definition of the ledger's tables that the code reads and writes through. The
Alembic migrations in ``migrations/`` are the history that created them (frozen text, they do not
import this module); tests/test_schema_matches_migrations.py checks that a database migrated to
head has exactly these columns, types, indexes and constraints. Dialect-specific objects
(append-only triggers, NOTIFY) live in ``migrations/sql/*.sql``. The projections' and the period
close's tables are on their own stages' metadata (``projections/registry.py``,
``reports/closing_schema.py``): this package knows none of them.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

# SQLite only makes an INTEGER PRIMARY KEY an alias of the rowid (and so auto-incrementing).
Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Payload = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

events = sa.Table(
    "events",
    metadata,
    # The global order of the store. Appends are serialized (see store_postgres.py), so a reader
    # that has seen position p has seen every position below p that will ever be committed.
    sa.Column("position", Position, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(255), nullable=False),
    sa.Column("type", sa.String(255), nullable=False),
    sa.Column("api_version", sa.String(64)),
    sa.Column("created", sa.BigInteger, nullable=False),  # Stripe's timestamp, unix seconds
    sa.Column("livemode", sa.Boolean, nullable=False),
    sa.Column("account", sa.String(255)),  # Connect account; NULL = the platform account
    sa.Column("object_type", sa.String(255)),
    sa.Column("object_id", sa.String(255)),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("payload", Payload, nullable=False),
    sa.Column("kafka_topic", sa.String(255)),
    sa.Column("kafka_partition", sa.Integer),
    sa.Column("kafka_offset", sa.BigInteger),
    sa.UniqueConstraint("event_id", name="events_event_id_key"),
    sa.CheckConstraint("source IN ('webhook', 'import', 'backfill')", name="events_source_known"),
    sa.Index("events_object", "object_type", "object_id"),
    sqlite_autoincrement=True,  # never reuse a position, even after a rolled-back append
)

# The consumer's position in each Kafka partition, written in the same transaction as the events
# it read: the database, not Kafka's group offsets, is the truth after a crash.
kafka_offsets = sa.Table(
    "kafka_offsets",
    metadata,
    sa.Column("topic", sa.String(255), primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("next_offset", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Records that are not Stripe events, kept byte for byte with the reason, so that nothing a
# producer sent is ever silently dropped and the partition keeps flowing.
dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", Position, primary_key=True, autoincrement=True),
    sa.Column("topic", sa.String(255)),
    sa.Column("partition", sa.Integer),
    sa.Column("offset", sa.BigInteger),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("topic", "partition", "offset", name="dead_letters_coordinates"),
)

# balance-sync's cursor per scope (Stripe mode + account): which `created` ranges of balance
# transactions are stored, written in the same transaction as the facts of each page, so a
# killed run resumes at its last stored page (a file in the working directory would be lost).
balance_sync_cursors = sa.Table(
    "balance_sync_cursors",
    metadata,
    sa.Column("scope_key", sa.String(255), primary_key=True),
    sa.Column("account", sa.String(255)),  # NULL = the platform account
    sa.Column("livemode", sa.Boolean, nullable=False),
    # JSON [[lo, hi], ...]: inclusive unix-second ranges whose transactions are all stored.
    sa.Column("intervals", sa.Text, nullable=False),
    # The oldest `created` of a transaction last seen unsettled (pending, or a payout not yet
    # paid/failed): every pass reads again from there, so a change becomes a new fact.
    sa.Column("unsettled_from", sa.BigInteger),
    sa.Column("opening_stored", sa.Boolean, nullable=False),
    sa.Column("complete_passes", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
