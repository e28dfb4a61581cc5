"""Bulk reads and writes of a batch's rows: one statement per table and kind, whatever the row
count (reads: one per 500 keys).

On PostgreSQL each write is ONE statement over arrays, one array per column, sent in binary
(``ledger/pg_bulk.py``, the writer the PostgreSQL event store appends with): an executemany
would execute the statement once per row on the server, which was most of a rebuild's database
time. On SQLite an executemany of one cached statement is already a C loop in-process.

Rows are plain dicts of column values; every row of one call has the same columns. Statements
are built once per table and column set (cached): building and cache-keying a fresh expression
per batch cost more than executing it. (Tables are per generation; a dropped generation's few
entries stay cached until the process ends.)
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ledger import pg_bulk

Row = dict[str, Any]
Key = tuple[Any, ...]  # values of some key columns, in the order of their names
KEYS_PER_QUERY_MAX = 500  # keys per bulk SELECT (x 3-4 bound values: far below any limit)


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
        pg_bulk.execute(
            connection, pg_bulk.insert(table, columns), pg_bulk.parameters(table, columns, rows)
        )
    else:
        connection.execute(sa.insert(table), list(rows))


def upsert(
    connection: sa.Connection, table: sa.Table, key: tuple[str, ...], rows: Sequence[Row]
) -> None:
    """Insert each row, or set its other columns where a row with its ``key`` exists: ONE
    statement (``INSERT ... ON CONFLICT (key) DO UPDATE``) where an UPDATE of the rows that
    existed and an INSERT of the new ones were two round trips. Each key at most once (a row
    cannot be changed twice by one statement)."""
    if not rows:
        return
    columns = tuple(rows[0])
    assert all(name in columns for name in key), (key, columns)
    assert len({tuple(row[name] for name in key) for row in rows}) == len(rows), "a key twice"
    if connection.dialect.name == "postgresql":
        statement = _pg_upsert(table, columns, key)
        pg_bulk.execute(connection, statement, pg_bulk.parameters(table, columns, rows))
    else:
        connection.execute(_sqlite_upsert(table, columns, key), list(rows))


@functools.lru_cache(maxsize=512)
def _pg_upsert(table: sa.Table, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    values = [name for name in columns if name not in key]
    assert values, "a key-only row has nothing to update"
    assignments = ", ".join(f"{name} = EXCLUDED.{name}" for name in values)
    conflict = f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {assignments}"
    return f"{pg_bulk.insert(table, columns)} {conflict}"


@functools.lru_cache(maxsize=512)
def _sqlite_upsert(table: sa.Table, columns: tuple[str, ...], key: tuple[str, ...]) -> Any:
    statement = sqlite.insert(table)
    values = {name: statement.excluded[name] for name in columns if name not in key}
    return statement.on_conflict_do_update(index_elements=list(key), set_=values)


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
        statement = pg_bulk.update(table, key, values)
        pg_bulk.execute(connection, statement, pg_bulk.parameters(table, key + values, rows))
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
        statement = pg_bulk.delete(table, key)
        pg_bulk.execute(connection, statement, pg_bulk.parameters(table, key, rows))
    else:
        params = [{f"p_{name}": row[name] for name in key} for row in rows]
        connection.execute(_sqlite_delete(table, key), params)


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
