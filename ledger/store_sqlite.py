"""The SQLite event store: one writer (``BEGIN IMMEDIATE``), known ids left out before insert.

SQLite has a single writer, so positions commit in the order they are handed out and appends
need no lock of their own. The ``events_no_replace`` trigger refuses any insert over a stored
event (issue 19), ``ON CONFLICT DO NOTHING``'s included, so the ids already stored are read
first and left out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from ledger.schema import events
from ledger.store import (
    READ_COLUMNS,
    EventStore,
    Incoming,
    StoredEvent,
    Wanted,
    event_of_row,
    payload_text,
)

APPEND_STATEMENT_EVENTS_MAX = 500  # rows per INSERT: 15 columns x 500 stays under SQLite's 32766
# One cached statement executed for many rows ("insertmanyvalues"): a .values(rows) statement
# would be compiled afresh for every batch. The payload is bound as text: the bytes as received
# (as on PostgreSQL), not encoded again.
_APPEND = (
    sqlite.insert(events)
    .values(payload=sa.bindparam("payload", type_=sa.Text()))
    .on_conflict_do_nothing(index_elements=["event_id"])
    .returning(events.c.position)
)
_READ = f"SELECT {', '.join(READ_COLUMNS)} FROM events WHERE position > ? ORDER BY position LIMIT ?"


def _event_row(item: Incoming) -> dict[str, Any]:
    event = item.event
    kafka = item.kafka
    return {
        "event_id": event.event_id,
        "type": event.type,
        "api_version": event.api_version,
        "created": event.created,
        "livemode": event.livemode,
        "account": event.account,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "received_at": item.received_at,
        "source": item.source,
        "payload": payload_text(event),
        "kafka_topic": kafka.topic if kafka else None,
        "kafka_partition": kafka.partition if kafka else None,
        "kafka_offset": kafka.offset if kafka else None,
    }


class SqliteEventStore(EventStore):
    dialect = "sqlite"

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        # The text SQLAlchemy stored a DateTime as, parsed back the way SQLAlchemy parses it.
        kind = events.c.received_at.type
        parse = kind.dialect_impl(engine.dialect).result_processor(engine.dialect, None)
        assert parse is not None, "SQLite keeps datetimes as text"
        self._parse_datetime = parse

    def _serialize_appends(self, connection: sa.Connection) -> None:
        """Nothing to take: this transaction holds SQLite's write lock (BEGIN IMMEDIATE)."""

    def _insert_events(self, connection: sa.Connection, fresh: Sequence[Incoming]) -> int:
        # The write lock is held: nobody adds an id between this read and the insert.
        known = self._known_ids(connection, [item.event.event_id for item in fresh])
        rows = [_event_row(item) for item in fresh if item.event.event_id not in known]
        if not rows:
            return 0
        paged = connection.execution_options(insertmanyvalues_page_size=APPEND_STATEMENT_EVENTS_MAX)
        return len(paged.execute(_APPEND, rows).all())

    def _known_ids(self, connection: sa.Connection, ids: Sequence[str]) -> set[str]:
        known: set[str] = set()
        for start in range(0, len(ids), APPEND_STATEMENT_EVENTS_MAX):
            chunk = ids[start : start + APPEND_STATEMENT_EVENTS_MAX]
            rows = connection.execute(
                sa.select(events.c.event_id).where(events.c.event_id.in_(chunk))
            )
            known.update(row[0] for row in rows)
        return known

    def _read_page(
        self,
        connection: sa.Connection,
        after_position: int,
        events_max: int,
        wanted: Wanted | None = None,
    ) -> list[StoredEvent]:
        rows = connection.exec_driver_sql(_READ, (after_position, events_max)).all()
        return [
            event_of_row(row, self._received_at(row[9]), bool(row[5]), wanted) for row in rows
        ]

    def _received_at(self, text: str) -> dt.datetime:
        parsed = self._parse_datetime(text)
        assert isinstance(parsed, dt.datetime), text
        return parsed.replace(tzinfo=dt.UTC)  # SQLite keeps no zone; we only ever write UTC

    def _insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)

    def _greatest(self, left: Any, right: Any) -> Any:
        return sa.func.max(left, right)  # SQLite's two-argument max() is a scalar function
