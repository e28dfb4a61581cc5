"""Closed periods: the month a person closed, the journal's postings as they were at the close
(what that month's export is made of from then on), and a log of every close and reopen.

The rows are copies of ``report_journal`` rows, so nothing here names a projection's table.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations import run_sql_file

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _scope() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("account_key", sa.String(255), nullable=False),  # '' is the platform
        sa.Column("livemode", sa.Boolean, nullable=False),
        sa.Column("period", sa.String(7), nullable=False),  # YYYY-MM
    ]


def upgrade() -> None:
    op.create_table(
        "closed_periods",
        *_scope(),
        sa.Column("since_s", sa.BigInteger, nullable=False),  # the month, [since_s, until_s)
        sa.Column("until_s", sa.BigInteger, nullable=False),
        sa.Column("closed_at_s", sa.BigInteger, nullable=False),
        sa.Column("postings", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),  # sha256 of the frozen postings
        sa.PrimaryKeyConstraint("account_key", "livemode", "period"),
        sa.CheckConstraint("since_s < until_s", name="closed_periods_span"),
    )
    op.create_table(
        "closed_postings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),  # fmt: skip
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
    )
    op.create_index(
        "closed_postings_scope", "closed_postings", ["account_key", "livemode", "period"]
    )
    op.create_table(
        "period_close_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),  # fmt: skip
        *_scope(),
        sa.Column("action", sa.String(16), nullable=False),  # close | reopen
        sa.Column("at_s", sa.BigInteger, nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
    )
    run_sql_file(op.get_bind(), "0006_closed_periods")


def downgrade() -> None:
    op.drop_table("period_close_log")
    op.drop_index("closed_postings_scope", "closed_postings")
    op.drop_table("closed_postings")
    op.drop_table("closed_periods")
