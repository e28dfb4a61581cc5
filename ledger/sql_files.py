"""The one loader of SQL files: read a file, split it into statements, escape for the driver.

The migrations' dialect-specific objects (``migrations/sql/*.sql``) and the report views
(``reports/sql/*.sql``) are both plain SQL run through ``exec_driver_sql``, which hands the text
to the driver as it is. Drivers with a ``format``/``pyformat`` paramstyle (psycopg) read ``%`` as
a placeholder even without parameters, so every ``%`` the SQL means literally (``'%s'`` in
strftime, ``%`` in a RAISE message) is doubled here, and nowhere else.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

SQL_FILE_BYTES_MAX = 1_000_000  # a hand-written SQL file; anything larger is a mistake
PERCENT_PARAMSTYLES = frozenset({"format", "pyformat"})


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


def escape_for_driver(statement: str, paramstyle: str) -> str:
    """``statement`` as ``exec_driver_sql`` must pass it to a driver of ``paramstyle``."""
    return statement.replace("%", "%%") if paramstyle in PERCENT_PARAMSTYLES else statement


def read_sql(path: Path) -> str:
    """The text of a SQL file, bounded."""
    size = path.stat().st_size
    assert size <= SQL_FILE_BYTES_MAX, f"{path}: {size} bytes, more than {SQL_FILE_BYTES_MAX}"
    return path.read_text(encoding="utf-8")


def run_statements(connection: sa.Connection, statements: list[str]) -> None:
    """Run each statement as the driver's own SQL (no SQLAlchemy parameters), escaped."""
    paramstyle = connection.dialect.paramstyle
    for statement in statements:
        connection.exec_driver_sql(escape_for_driver(statement, paramstyle))


def run_sql_file(connection: sa.Connection, path: Path) -> None:
    """Run every statement of the SQL file ``path`` on ``connection``."""
    run_statements(connection, split_sql(read_sql(path)))
