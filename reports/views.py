"""Create and drop the ``report_*`` views (and the ``shared_*`` parts they read) from
``reports/sql/*.sql``.

They are always dropped and created together, inside the caller's transaction: a rebuild drops
them, repoints the ``proj_*`` views at the new generation and creates them again in ONE
transaction, so a report query sees the old state or the new one, never a mix (PostgreSQL's
DDL is transactional; SQLite's BEGIN IMMEDIATE holds the only write lock).
"""

from __future__ import annotations

import functools
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


# A view's name is interpolated into DDL (DROP VIEW, GRANT take no bound parameters): it is a
# file name of reports/sql/, and must be a plain lower-case identifier.
VIEW_NAME = re.compile(r"[a-z][a-z0-9_]*")


@functools.cache  # the package's own files: listed once per process, not per command or query
def _stems(pattern: str) -> tuple[str, ...]:
    stems = tuple(sorted(path.stem for path in SQL_DIR.glob(pattern)))
    assert all(VIEW_NAME.fullmatch(stem) for stem in stems), stems
    return stems


def report_names() -> list[str]:
    """``balances``, ``invoices``, ... : the NAMEs ``stripe-ledger report NAME`` accepts."""
    return [stem.removeprefix("report_") for stem in _stems("report_*.sql")]


def shared_views() -> list[str]:
    """The ``shared_*`` views: parts that several report views read, not reports themselves
    (not listed, not granted). Created before the reports in name order, so one may read only
    the ``proj_*`` views and the shared views named before it; dropped after them."""
    return list(_stems("shared_*.sql"))


def view_sql(view: str, dialect: str) -> str:
    """The ``CREATE VIEW`` of ``reports/sql/<view>.sql`` for ``dialect``, as the driver's SQL."""
    text = sql_files.read_sql(SQL_DIR / f"{view}.sql")
    text = text.replace("{now_epoch}", NOW_EPOCH[dialect]).replace(
        "{utc_day_of_created}", UTC_DAY_OF_CREATED[dialect]
    )
    statements = sql_files.split_sql(text)
    assert len(statements) == 1, f"{view}.sql: one view per file, not {len(statements)}"
    return statements[0]


def _report_views() -> list[str]:
    return [f"report_{name}" for name in report_names()]


def drop_views(connection: sa.Connection) -> None:
    """Drop the report views, then the shared views they read (PostgreSQL refuses the other
    order without CASCADE)."""
    for view in [*_report_views(), *reversed(shared_views())]:
        connection.exec_driver_sql(f"DROP VIEW IF EXISTS {view}")


def create_views(connection: sa.Connection) -> None:
    """(Re)create the shared and the report views; on PostgreSQL grant SELECT on each report
    view to the reporting role (a view reads the shared ones with its owner's rights)."""
    dialect = connection.dialect.name
    drop_views(connection)
    views = [*shared_views(), *_report_views()]
    sql_files.run_statements(connection, [view_sql(view, dialect) for view in views])
    if dialect == "postgresql" and _role_exists(connection, REPORTING_ROLE):
        for view in _report_views():
            connection.exec_driver_sql(f"GRANT SELECT ON {view} TO {REPORTING_ROLE}")


def _role_exists(connection: sa.Connection, role: str) -> bool:
    found = connection.execute(
        sa.text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}
    ).first()
    return found is not None
