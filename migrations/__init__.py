"""Alembic migrations of stripe-ledger (``stripe-ledger migrate`` upgrades to head)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

MIGRATIONS_DIR = Path(__file__).resolve().parent
SQL_DIR = MIGRATIONS_DIR / "sql"


def split_sql(text: str) -> list[str]:
    """Split a SQL file into statements: ';' at a line end ends one, except inside a
    dollar-quoted body ($$ ... $$) or a SQLite trigger body (BEGIN ... END;)."""
    statements: list[str] = []
    current: list[str] = []
    in_dollar = False
    in_trigger = False
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("--")):
            continue
        current.append(line)
        in_dollar ^= stripped.count("$$") % 2 == 1
        if stripped.upper() == "BEGIN":
            in_trigger = True
        if in_trigger and stripped.upper().startswith("END"):
            in_trigger = False
        if stripped.endswith(";") and not in_dollar and not in_trigger:
            statements.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    assert not current or all(not part.strip() for part in current), "unterminated SQL statement"
    return statements


def run_sql_file(connection: sa.Connection, stem: str) -> None:
    """Run ``sql/<stem>.<dialect>.sql`` when it exists for the connection's dialect."""
    path = SQL_DIR / f"{stem}.{connection.dialect.name}.sql"
    if not path.exists():
        return
    # Drivers with a format paramstyle (psycopg) read '%' as a placeholder: escape it.
    escape = connection.dialect.paramstyle in ("format", "pyformat")
    for statement in split_sql(path.read_text(encoding="utf-8")):
        connection.exec_driver_sql(statement.replace("%", "%%") if escape else statement)
