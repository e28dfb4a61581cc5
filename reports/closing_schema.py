"""The period close's tables (migration 0006), as SQLAlchemy Core metadata of the reports stage.

``closed_periods``: the months a person closed, per scope (account + mode); ``closed_postings``:
the journal's postings as they were at the close (copies of ``report_journal`` rows, so nothing
here names a projection's table); ``period_close_log``: every close and reopen. reports/closing.py
reads and writes them. This is their one definition in the code; the migration is the history,
and tests/test_schema_matches_migrations.py checks the two agree.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# SQLite only makes an INTEGER PRIMARY KEY an alias of the rowid (and so auto-incrementing).
RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PERIOD_CLOSE_DETAIL_CHARS_MAX = 500


def _scope() -> list[sa.Column]:  # type: ignore[type-arg]
    """The scope columns every table starts with (fresh Column objects for each table)."""
    return [
        sa.Column("account_key", sa.String(255), nullable=False),  # '' is the platform
        sa.Column("livemode", sa.Boolean, nullable=False),
        sa.Column("period", sa.String(7), nullable=False),  # YYYY-MM
    ]


closed_periods = sa.Table(
    "closed_periods",
    metadata,
    *_scope(),
    sa.Column("since_s", sa.BigInteger, nullable=False),  # the month, [since_s, until_s)
    sa.Column("until_s", sa.BigInteger, nullable=False),
    sa.Column("closed_at_s", sa.BigInteger, nullable=False),
    sa.Column("postings", sa.Integer, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),  # sha256 of the frozen postings
    sa.PrimaryKeyConstraint("account_key", "livemode", "period"),
    sa.CheckConstraint("since_s < until_s", name="closed_periods_span"),
)

closed_postings = sa.Table(
    "closed_postings",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    *_scope(),
    sa.Column("currency", sa.String(16), nullable=False),
    sa.Column("posted_at", sa.BigInteger, nullable=False),
    sa.Column("entry_id", sa.String(512), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("ledger_account", sa.String(64), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("automatic_payout_id", sa.String(255)),
    sa.Column("object_type", sa.String(64)),
    sa.Column("object_id", sa.String(255)),
    sa.Column("estimated", sa.Boolean, nullable=False),
    sa.Column("adjustment", sa.Boolean, nullable=False),  # a late fact of an earlier month
    sa.Index("closed_postings_scope", "account_key", "livemode", "period"),
)

period_close_log = sa.Table(
    "period_close_log",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    *_scope(),
    sa.Column("action", sa.String(16), nullable=False),  # close | reopen
    sa.Column("at_s", sa.BigInteger, nullable=False),
    sa.Column("detail", sa.String(PERIOD_CLOSE_DETAIL_CHARS_MAX), nullable=False),
)
