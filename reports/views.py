"""Create and drop the ``report_*`` views from ``reports/sql/*.sql``.

They are always dropped and created together, inside the caller's transaction: a rebuild drops
them, repoints the ``proj_*`` views at the new generation and creates them again in ONE
transaction, so a report query sees the old state or the new one, never a mix (PostgreSQL's
DDL is transactional; SQLite's BEGIN IMMEDIATE holds the only write lock).
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

from ledger import sql_files

SQL_DIR = Path(__file__).resolve().parent / "sql"
REPORTING_ROLE = "ledger_reporting"

# The current time as unix seconds, per dialect: the one thing the report SQL cannot share.
NOW_EPOCH = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)",
    "sqlite": "CAST(strftime('%s', 'now') AS INTEGER)",
}


# The UTC day (YYYY-MM-DD text) of a journal entry's ``e.posted_at``, per dialect.
UTC_DAY_OF_CREATED = {
    "postgresql": "to_char(to_timestamp(e.posted_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "sqlite": "date(e.posted_at, 'unixepoch')",
}


# A report's name is interpolated into DDL (DROP VIEW, GRANT take no bound parameters): it is
# a file name of reports/sql/, and must be a plain lower-case identifier.
REPORT_NAME = re.compile(r"[a-z][a-z0-9_]*")


def report_names() -> list[str]:
    """``balances``, ``invoices``, ... : the NAMEs ``stripe-ledger report NAME`` accepts."""
    names = sorted(path.stem.removeprefix("report_") for path in SQL_DIR.glob("report_*.sql"))
    assert all(REPORT_NAME.fullmatch(name) for name in names), names
    return names


def view_sql(name: str, dialect: str) -> str:
    """The ``CREATE VIEW`` of ``report_<name>`` for ``dialect``, as the driver's own SQL."""
    text = sql_files.read_sql(SQL_DIR / f"report_{name}.sql")
    text = text.replace("{now_epoch}", NOW_EPOCH[dialect]).replace(
        "{utc_day_of_created}", UTC_DAY_OF_CREATED[dialect]
    )
    statements = sql_files.split_sql(text)
    assert len(statements) == 1, f"report_{name}.sql: one view per file, not {len(statements)}"
    return statements[0]


def drop_views(connection: sa.Connection) -> None:
    for name in report_names():
        connection.exec_driver_sql(f"DROP VIEW IF EXISTS report_{name}")


def create_views(connection: sa.Connection) -> None:
    """(Re)create every report view; on PostgreSQL grant SELECT on each to the reporting role."""
    dialect = connection.dialect.name
    drop_views(connection)
    sql_files.run_statements(connection, [view_sql(name, dialect) for name in report_names()])
    if dialect == "postgresql" and _role_exists(connection, REPORTING_ROLE):
        for name in report_names():
            connection.exec_driver_sql(f"GRANT SELECT ON report_{name} TO {REPORTING_ROLE}")


def _role_exists(connection: sa.Connection, role: str) -> bool:
    found = connection.execute(
        sa.text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}
    ).first()
    return found is not None
