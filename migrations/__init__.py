"""Alembic migrations of stripe-ledger (``stripe-ledger migrate`` upgrades to head)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from ledger import sql_files

MIGRATIONS_DIR = Path(__file__).resolve().parent
SQL_DIR = MIGRATIONS_DIR / "sql"


def run_sql_file(connection: sa.Connection, stem: str) -> None:
    """Run ``sql/<stem>.<dialect>.sql`` when it exists for the connection's dialect."""
    path = SQL_DIR / f"{stem}.{connection.dialect.name}.sql"
    if path.exists():
        sql_files.run_sql_file(connection, path)
