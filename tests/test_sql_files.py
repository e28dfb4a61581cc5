"""The one SQL-file loader (ledger/sql_files.py): statements split as the files are written, and
'%' escaped exactly for drivers that read it as a placeholder, on both databases."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from ledger import sql_files
from ledger.database import create_engine

PLPGSQL = """-- a comment before the first statement; ignored
CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the % table: % refused', TG_TABLE_NAME, TG_OP;
END
$$;

CREATE TRIGGER t BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION f();
"""

SQLITE_TRIGGER = """CREATE TRIGGER no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'refused');
END;
CREATE VIEW v AS SELECT 1 AS one;
"""


def test_statements_end_at_a_semicolon_outside_bodies() -> None:
    first, second = sql_files.split_sql(PLPGSQL)
    assert first.startswith("CREATE FUNCTION") and first.rstrip().endswith("$$")
    assert "RAISE EXCEPTION" in first
    assert second.startswith("CREATE TRIGGER t") and not second.endswith(";")
    trigger, view = sql_files.split_sql(SQLITE_TRIGGER)
    assert trigger.startswith("CREATE TRIGGER no_update") and trigger.endswith("END")
    assert view == "CREATE VIEW v AS SELECT 1 AS one"


def test_percent_is_escaped_only_for_format_paramstyles() -> None:
    statement = "SELECT strftime('%s', 'now')"
    assert sql_files.escape_for_driver(statement, "pyformat") == "SELECT strftime('%%s', 'now')"
    assert sql_files.escape_for_driver(statement, "format") == "SELECT strftime('%%s', 'now')"
    assert sql_files.escape_for_driver(statement, "qmark") == statement
    assert sql_files.escape_for_driver(statement, "named") == statement


def test_a_file_with_a_literal_percent_runs_on_both_databases(
    database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "percent.sql"
    path.write_text("CREATE VIEW percent_sign AS SELECT '100%' AS text;\n", encoding="utf-8")
    engine = create_engine(database_url)
    with engine.begin() as connection:
        sql_files.run_sql_file(connection, path)
        assert connection.execute(sa.text("SELECT text FROM percent_sign")).scalar() == "100%"
    engine.dispose()
