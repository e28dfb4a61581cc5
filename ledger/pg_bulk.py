"""PostgreSQL bulk writes over arrays: one statement per table and column set, whatever the rows.

Each write sends one array per column, in binary, and unnests them on the server (``INSERT ...
SELECT FROM unnest(...)``, ``UPDATE ... FROM unnest(...)``, ``DELETE ... USING unnest(...)``).
The statement text depends only on the table and the columns, so psycopg and the server both
cache it whatever the batch size. (A multi-row VALUES is a new text for every batch size, and
compiling and parsing it cost more than the insert; an executemany executes the statement once
per row on the server, which was most of a rebuild's database time.)

The element type of each array and the cast applied to it come from the column's type in the
table definition (``ledger/schema.py`` and the projections' tables), never from a second list.
Used by the PostgreSQL event store (``ledger/store_postgres.py``) and ``projections/bulk.py``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

Row = Mapping[str, Any]
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")  # generated table names, fixed column names
_json_encode = json.JSONEncoder(separators=(",", ":")).encode


def array_type(column: sa.Column[Any]) -> tuple[str, str]:
    """(array element type sent, cast applied in the statement) of a column."""
    kind = column.type
    if isinstance(kind, sa.JSON):
        return "text", "::jsonb"  # JSON travels as its text: one parse, on the server
    if isinstance(kind, sa.Boolean):
        return "bool", ""
    if isinstance(kind, sa.BigInteger):
        return "int8", ""
    if isinstance(kind, sa.Integer):
        return "int4", ""
    if isinstance(kind, sa.DateTime) and kind.timezone:
        return "timestamptz", ""
    if isinstance(kind, sa.String):  # Text too
        return "text", ""
    raise AssertionError(f"no bulk type for {column.table.name}.{column.name}: {kind!r}")


def _unnest(table: sa.Table, columns: tuple[str, ...]) -> str:
    assert _IDENTIFIER.match(table.name), table.name
    assert all(_IDENTIFIER.match(name) for name in columns), columns
    assert len(set(columns)) == len(columns), columns
    # %b: binary parameters, no escaping; the arrays go as they are.
    arrays = ", ".join(f"%b::{array_type(table.c[name])[0]}[]" for name in columns)
    return f"unnest({arrays}) AS u({', '.join(columns)})"


@functools.lru_cache(maxsize=512)
def insert(
    table: sa.Table,
    columns: tuple[str, ...],
    *,
    conflict_do_nothing: tuple[str, ...] = (),
    returning: tuple[str, ...] = (),
) -> str:
    """``INSERT INTO table (columns) SELECT ... FROM unnest(arrays)``, optionally skipping rows
    whose ``conflict_do_nothing`` columns are known and returning ``returning`` columns."""
    selected = ", ".join(f"u.{name}{array_type(table.c[name])[1]}" for name in columns)
    statement = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"SELECT {selected} FROM {_unnest(table, columns)}"
    )
    if conflict_do_nothing:
        assert all(name in table.c for name in conflict_do_nothing), conflict_do_nothing
        statement += f" ON CONFLICT ({', '.join(conflict_do_nothing)}) DO NOTHING"
    if returning:
        assert all(name in table.c for name in returning), returning
        statement += f" RETURNING {', '.join(returning)}"
    return statement


@functools.lru_cache(maxsize=512)
def update(table: sa.Table, key: tuple[str, ...], values: tuple[str, ...]) -> str:
    """Set the ``values`` columns of the rows matching each row's ``key`` columns."""
    assignments = ", ".join(f"{name} = u.{name}{array_type(table.c[name])[1]}" for name in values)
    matched = " AND ".join(f"t.{name} = u.{name}" for name in key)
    return (
        f"UPDATE {table.name} AS t SET {assignments} "
        f"FROM {_unnest(table, key + values)} WHERE {matched}"
    )


@functools.lru_cache(maxsize=512)
def delete(table: sa.Table, key: tuple[str, ...]) -> str:
    """Delete the rows matching each row's ``key`` columns."""
    matched = " AND ".join(f"t.{name} = u.{name}" for name in key)
    return f"DELETE FROM {table.name} AS t USING {_unnest(table, key)} WHERE {matched}"


def parameters(table: sa.Table, columns: tuple[str, ...], rows: Sequence[Row]) -> tuple[Any, ...]:
    """One array per column, in ``columns`` order; JSON columns' values encoded as text."""
    arrays = []
    for name in columns:
        values = [row[name] for row in rows]
        if isinstance(table.c[name].type, sa.JSON):
            values = [None if value is None else _json_encode(value) for value in values]
        arrays.append(values)
    return tuple(arrays)


def execute(connection: sa.Connection, statement: str, arrays: Sequence[Any]) -> Any:
    """Run one of the statements above with its arrays (a ``CursorResult``)."""
    assert statement.count("%b") == len(arrays), "one array per column"
    # exec_driver_sql: the text goes to psycopg as it is (``%b`` binary parameters), and a lost
    # connection still surfaces as sqlalchemy's OperationalError, which the workers retry.
    return connection.exec_driver_sql(statement, tuple(arrays))
