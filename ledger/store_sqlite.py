"""The SQLite event store: one writer (``BEGIN IMMEDIATE``), known ids left out before insert.

SQLite has a single writer, so positions commit in the order they are handed out and appends
need no lock of their own. The ``events_no_replace`` trigger refuses any insert over a stored
event (issue 19), ``ON CONFLICT DO NOTHING``'s included, so the ids already stored are read
first and left out.

An append of events alone (``serve``'s group commit, import) goes through the driver: one
``sqlite3`` connection from the engine's pool, ``BEGIN IMMEDIATE``, the known-ids SELECT, one
prepared ``executemany`` INSERT, ``COMMIT``. Through SQLAlchemy the same transaction cost most
of serve's writer thread (issue 21: connection, transaction and statement processing per group
of 10-15 events, with the interpreter lock held from the event loop); ``sqlite3`` releases the
lock while SQLite works. Same rows, same positions, same triggers; a driver error is raised as
the SQLAlchemy error the other path raises (``DBAPIError.instance``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from ledger.database import SQLITE_BUSY_TIMEOUT_MS
from ledger.schema import events
from ledger.store import (
    READ_COLUMNS,
    AppendResult,
    EventStore,
    Incoming,
    distinct_incoming,
    payload_text,
)

BUSY_POLL_S = 0.0005  # how often a waiting append tries the write lock again
# Bounds the poll loop (the deadline ends it first: a sleep lasts at least BUSY_POLL_S).
BUSY_POLLS_MAX = int(SQLITE_BUSY_TIMEOUT_MS / 1000 / BUSY_POLL_S)
APPEND_STATEMENT_EVENTS_MAX = 500  # ids per known-ids SELECT: under SQLite's 32766 variables
# The columns an append writes (``position`` comes from AUTOINCREMENT), in ``_event_values``'
# order. One prepared statement for every row (``executemany``); the payload is bound as text:
# the bytes as received (as on PostgreSQL), not encoded again. ON CONFLICT is never reached (the
# known ids are left out under the write lock) and kept as the statement's statement of intent.
_COLUMNS = tuple(column.name for column in events.c if column.name != "position")
_INSERT = (
    f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)}) "
    "ON CONFLICT (event_id) DO NOTHING"
)
_KNOWN = "SELECT event_id FROM events WHERE event_id IN ({marks})"
_READ = f"SELECT {', '.join(READ_COLUMNS)} FROM events WHERE position > ? ORDER BY position LIMIT ?"
# A reader's ``Wanted.types`` as a JSON array: the other payloads are not read at all.
_READ_TYPED = _READ.replace(
    ", payload,", ", CASE WHEN type IN (SELECT value FROM json_each(?)) THEN payload END,"
)
assert _READ_TYPED != _READ


def _event_values(item: Incoming, received_at: str) -> tuple[Any, ...]:
    """The row of ``_COLUMNS`` for ``item``, as the driver binds it (``received_at`` as the text
    SQLAlchemy's DateTime would have written, livemode as 0/1)."""
    event = item.event
    kafka = item.kafka
    return (
        event.event_id,
        event.type,
        event.api_version,
        event.created,
        1 if event.livemode else 0,
        event.account,
        event.object_type,
        event.object_id,
        received_at,
        item.source,
        payload_text(event),
        kafka.topic if kafka else None,
        kafka.partition if kafka else None,
        kafka.offset if kafka else None,
    )


assert len(_COLUMNS) == 14 and _COLUMNS[8] == "received_at", "_event_values' order"


class SqliteEventStore(EventStore):
    dialect = "sqlite"
    read_sql = _READ
    read_typed_sql = _READ_TYPED

    def _types_parameter(self, types: frozenset[str]) -> Any:
        return json.dumps(sorted(types))

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        # The text SQLAlchemy stores a DateTime as, written and parsed back the way it does.
        kind = events.c.received_at.type.dialect_impl(engine.dialect)
        parse = kind.result_processor(engine.dialect, None)
        render = kind.bind_processor(engine.dialect)
        assert parse is not None and render is not None, "SQLite keeps datetimes as text"
        self._parse_datetime = parse
        self._render_datetime: Callable[[dt.datetime], str] = render

    def _append_alone(self, incoming: Sequence[Incoming]) -> AppendResult:
        """Events alone, through the driver (the module docstring)."""
        fresh = distinct_incoming(incoming)
        appended = self._append_through_driver(fresh) if fresh else 0
        return AppendResult(appended=appended, duplicates=len(incoming) - appended)

    def _append_through_driver(self, fresh: Sequence[Incoming]) -> int:
        """One driver transaction: BEGIN IMMEDIATE, the insert, COMMIT (ROLLBACK on any error)."""
        pooled = self.engine.raw_connection()
        try:
            connection = pooled.driver_connection
            assert isinstance(connection, sqlite3.Connection)
            assert not connection.in_transaction, "a pooled connection comes back idle"
            with _as_sqlalchemy_error("BEGIN IMMEDIATE"):
                _begin_immediate(connection)
            try:
                appended = self._insert_rows(connection, fresh)
                with _as_sqlalchemy_error("COMMIT"):
                    connection.execute("COMMIT")
            finally:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
        finally:
            pooled.close()  # back to the pool
        return appended

    def _serialize_appends(self, connection: sa.Connection) -> None:
        """Nothing to take: this transaction holds SQLite's write lock (BEGIN IMMEDIATE)."""

    def _insert_events(self, connection: sa.Connection, fresh: Sequence[Incoming]) -> int:
        driver = connection.connection.driver_connection  # the same transaction
        assert isinstance(driver, sqlite3.Connection)
        return self._insert_rows(driver, fresh)

    def _insert_rows(self, connection: sqlite3.Connection, fresh: Sequence[Incoming]) -> int:
        """Insert ``fresh`` (distinct ids) but the ids already stored; how many were new. The
        write lock is held: nobody adds an id between the read of the known ids and the insert."""
        assert connection.in_transaction, "inserts run inside the append's transaction"
        render = self._render_datetime
        with _as_sqlalchemy_error(_KNOWN):
            known = _known_ids(connection, [item.event.event_id for item in fresh])
        rows = [
            _event_values(item, render(item.received_at))
            for item in fresh
            if item.event.event_id not in known
        ]
        if not rows:
            return 0
        with _as_sqlalchemy_error(_INSERT):
            inserted = connection.executemany(_INSERT, rows).rowcount
        assert inserted == len(rows), (inserted, len(rows))
        return inserted

    def _received_at(self, text: str) -> dt.datetime:
        parsed = self._parse_datetime(text)
        assert isinstance(parsed, dt.datetime), text
        return parsed.replace(tzinfo=dt.UTC)  # SQLite keeps no zone; we only ever write UTC

    def _insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)

    def _greatest(self, left: Any, right: Any) -> Any:
        return sa.func.max(left, right)  # SQLite's two-argument max() is a scalar function


def _known_ids(connection: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    known: set[str] = set()
    for start in range(0, len(ids), APPEND_STATEMENT_EVENTS_MAX):
        chunk = ids[start : start + APPEND_STATEMENT_EVENTS_MAX]
        statement = _KNOWN.format(marks=", ".join("?" * len(chunk)))
        known.update(row[0] for row in connection.execute(statement, chunk))
    return known


@contextlib.contextmanager
def _as_sqlalchemy_error(statement: str) -> Iterator[None]:
    """A driver error as the SQLAlchemy error the SQLAlchemy path raises (IntegrityError,
    OperationalError, ...): callers catch those. Parameters are hidden (they hold payloads)."""
    try:
        yield
    except sqlite3.Error as error:
        raise sa.exc.DBAPIError.instance(
            statement, None, error, sqlite3.Error, hide_parameters=True
        ) from error


def _begin_immediate(connection: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, polling the write lock every ``BUSY_POLL_S`` while another writer (the
    projector) holds it, up to the busy timeout of every connection (``SQLITE_BUSY_TIMEOUT_MS``).

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms between
    tries: an append that met a 40 ms projector transaction waited until its next try, up to
    50 ms after the lock was free, and held every request of its group (and the 32 behind it)
    that long (issue 21: commits of median 0.2 ms, mean 1-5 ms, max 40-146 ms)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    connection.execute("PRAGMA busy_timeout=0")
    try:
        for _ in range(BUSY_POLLS_MAX):
            try:
                connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
            time.sleep(BUSY_POLL_S)
        connection.execute("BEGIN IMMEDIATE")  # the last try raises SQLITE_BUSY if still held
    finally:
        connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
