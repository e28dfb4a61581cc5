"""Bulk reads and writes of a batch's rows: one statement per table and kind, whatever the row
count (reads: one per 500 keys).

On PostgreSQL each write is ONE statement over arrays, one array per column, sent in binary
(``INSERT ... SELECT FROM unnest(...)``, ``UPDATE ... FROM unnest(...)``, ``DELETE ... USING
unnest(...)``), the way ``EventStore.append`` writes events: an executemany would execute the
statement once per row on the server, which was most of a rebuild's database time. On SQLite an
executemany of one cached statement is already a C loop in-process.

Rows are plain dicts of column values; every row of one call has the same columns. Statements
are built once per table and column set (cached): building and cache-keying a fresh expression
per batch cost more than executing it. (Tables are per generation; a dropped generation's few
entries stay cached until the process ends.)
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

Row = dict[str, Any]
Key = tuple[Any, ...]  # values of some key columns, in the order of their names
KEYS_PER_QUERY_MAX = 500  # keys per bulk SELECT (x 3-4 bound values: far below any limit)
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")  # generated table names, fixed column names
_json_encode = json.JSONEncoder(separators=(",", ":")).encode


def select(
    connection: sa.Connection,
    table: sa.Table,
    key_names: tuple[str, ...],
    keys: Sequence[Key],
    selected: tuple[str, ...],
) -> Iterator[Any]:  # sa.Row
    """The rows (``selected`` columns) whose ``key_names`` columns equal one of ``keys``.

    One query per 500 keys that matches each key column against the SET of its values in the
    chunk (``= ANY(array)`` on PostgreSQL, ``IN (...)`` on SQLite; both use the index), then keeps
    the rows whose whole key was asked for. A row-value ``(a, b, c) IN (...)`` list of 500 tuples
    is planned by PostgreSQL as 500 OR-ed conditions: it cost ~40 ms per query here."""
    statement = _select_statement(table, key_names, selected, connection.dialect.name)
    positions = [selected.index(name) for name in key_names]
    for start in range(0, len(keys), KEYS_PER_QUERY_MAX):
        chunk = {tuple(key) for key in keys[start : start + KEYS_PER_QUERY_MAX]}
        params = {f"in_{name}": list({key[i] for key in chunk}) for i, name in enumerate(key_names)}
        for row in connection.execute(statement, params):
            if tuple(row[i] for i in positions) in chunk:
                yield row


def insert(connection: sa.Connection, table: sa.Table, rows: Sequence[Row]) -> None:
    if not rows:
        return
    columns = tuple(rows[0])
    if connection.dialect.name == "postgresql":
        _execute(connection, _pg_insert(table, columns), table, columns, rows)
    else:
        connection.execute(sa.insert(table), list(rows))


def update(
    connection: sa.Connection,
    table: sa.Table,
    key: tuple[str, ...],
    values: tuple[str, ...],
    rows: Sequence[Row],
) -> None:
    """Set the ``values`` columns of the rows matching each row's ``key`` columns."""
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        _execute(connection, _pg_update(table, key, values), table, key + values, rows)
    else:
        params = [{f"p_{name}": row[name] for name in key + values} for row in rows]
        connection.execute(_sqlite_update(table, key, values), params)


def delete(
    connection: sa.Connection, table: sa.Table, key: tuple[str, ...], rows: Sequence[Row]
) -> None:
    """Delete the rows matching each row's ``key`` columns."""
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        _execute(connection, _pg_delete(table, key), table, key, rows)
    else:
        params = [{f"p_{name}": row[name] for name in key} for row in rows]
        connection.execute(_sqlite_delete(table, key), params)


def _execute(
    connection: sa.Connection,
    statement: str,
    table: sa.Table,
    columns: tuple[str, ...],
    rows: Sequence[Row],
) -> None:
    arrays = []
    for name in columns:
        values = [row[name] for row in rows]
        if isinstance(table.c[name].type, sa.JSON):
            values = [None if value is None else _json_encode(value) for value in values]
        arrays.append(values)
    # exec_driver_sql: the text goes to psycopg as it is (``%b`` binary parameters), and a lost
    # connection still surfaces as sqlalchemy's OperationalError, which the workers retry.
    connection.exec_driver_sql(statement, tuple(arrays))


def _pg_type(column: sa.Column[Any]) -> tuple[str, str]:
    """(array element type sent, cast applied in the statement) of a column."""
    kind = column.type
    if isinstance(kind, sa.JSON):
        return "text", "::jsonb"
    if isinstance(kind, sa.Boolean):
        return "bool", ""
    if isinstance(kind, sa.BigInteger):
        return "int8", ""
    if isinstance(kind, sa.Integer):
        return "int4", ""
    if isinstance(kind, sa.String):
        return "text", ""
    raise AssertionError(f"no bulk type for {column.table.name}.{column.name}: {kind!r}")


def _unnest(table: sa.Table, columns: tuple[str, ...]) -> str:
    assert _IDENTIFIER.match(table.name), table.name
    assert all(_IDENTIFIER.match(name) for name in columns), columns
    arrays = ", ".join(f"%b::{_pg_type(table.c[name])[0]}[]" for name in columns)
    return f"unnest({arrays}) AS u({', '.join(columns)})"


@functools.lru_cache(maxsize=512)
def _pg_insert(table: sa.Table, columns: tuple[str, ...]) -> str:
    selected = ", ".join(f"u.{name}{_pg_type(table.c[name])[1]}" for name in columns)
    return (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"SELECT {selected} FROM {_unnest(table, columns)}"
    )


@functools.lru_cache(maxsize=512)
def _pg_update(table: sa.Table, key: tuple[str, ...], values: tuple[str, ...]) -> str:
    assignments = ", ".join(f"{name} = u.{name}{_pg_type(table.c[name])[1]}" for name in values)
    matched = " AND ".join(f"t.{name} = u.{name}" for name in key)
    return (
        f"UPDATE {table.name} AS t SET {assignments} "
        f"FROM {_unnest(table, key + values)} WHERE {matched}"
    )


@functools.lru_cache(maxsize=512)
def _pg_delete(table: sa.Table, key: tuple[str, ...]) -> str:
    matched = " AND ".join(f"t.{name} = u.{name}" for name in key)
    return f"DELETE FROM {table.name} AS t USING {_unnest(table, key)} WHERE {matched}"


@functools.lru_cache(maxsize=512)
def _sqlite_update(table: sa.Table, key: tuple[str, ...], values: tuple[str, ...]) -> sa.Update:
    condition = sa.and_(*(table.c[name] == sa.bindparam(f"p_{name}") for name in key))
    return sa.update(table).where(condition).values({n: sa.bindparam(f"p_{n}") for n in values})


@functools.lru_cache(maxsize=512)
def _sqlite_delete(table: sa.Table, key: tuple[str, ...]) -> sa.Delete:
    condition = sa.and_(*(table.c[name] == sa.bindparam(f"p_{name}") for name in key))
    return sa.delete(table).where(condition)


@functools.lru_cache(maxsize=512)
def _select_statement(
    table: sa.Table, key_names: tuple[str, ...], selected: tuple[str, ...], dialect: str
) -> sa.Select[Any]:
    def any_of(column: sa.Column[Any]) -> sa.ColumnElement[bool]:
        values = f"in_{column.name}"
        if dialect == "postgresql":  # one array parameter: a short, cacheable statement
            return column == sa.any_(sa.bindparam(values, type_=postgresql.ARRAY(column.type)))
        return column.in_(sa.bindparam(values, expanding=True))

    condition = sa.and_(*(any_of(table.c[name]) for name in key_names))
    return sa.select(*(table.c[name] for name in selected)).where(condition)
