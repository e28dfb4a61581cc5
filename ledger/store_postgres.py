"""The PostgreSQL event store: appends serialized by an advisory lock, one ``unnest`` INSERT.

Positions come from a sequence at insert time, but transactions commit in any order: a reader
of ``position > last`` could pass over a position that commits later. Every appending
transaction therefore takes ``pg_advisory_xact_lock(APPEND_LOCK_KEY)`` first, so positions are
handed out and committed one appending transaction at a time (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ledger import pg_bulk
from ledger.schema import events
from ledger.store import (
    READ_COLUMNS,
    EventStore,
    Incoming,
    payload_text,
)

APPEND_LOCK_KEY = 0x5EDCE7  # pg_advisory_xact_lock key that serializes appends
# The columns an append writes (``position`` comes from the sequence), in the statement's order.
EVENT_COLUMNS = tuple(column.name for column in events.c if column.name != "position")
# No RETURNING: the row count of INSERT ... ON CONFLICT DO NOTHING is the rows inserted, and
# sending back a position per row only to count them cost a result row per event.
_APPEND = pg_bulk.insert(events, EVENT_COLUMNS, conflict_do_nothing=("event_id",))
# The payload as its text: the server's jsonb output, decoded once by ``event_of_row`` (psycopg's
# jsonb loader through SQLAlchemy's row processing cost more than the decode itself).
_READ = (
    f"SELECT {', '.join(f'{name}::text' if name == 'payload' else name for name in READ_COLUMNS)}"
    " FROM events WHERE position > %s ORDER BY position LIMIT %s"
)
# A reader's ``Wanted.types`` (a text[]): the other payloads are not turned into text at all.
_READ_TYPED = _READ.replace("payload::text", "CASE WHEN type = ANY(%s) THEN payload::text END")
assert _READ_TYPED != _READ

# One INSERT binds one array per column of at most this many events: a batch of any size is
# written as a few statements of bounded size, never one unbounded one.
APPEND_BATCH_EVENTS_MAX = 2000


def _arrays(chunk: Sequence[Incoming]) -> tuple[list[Any], ...]:
    """The append's arrays, one per column of ``EVENT_COLUMNS``, built column by column (no
    dict per row). The payload goes as its text: the bytes as received, parsed once, by the
    server (``::jsonb``)."""
    evs = [item.event for item in chunk]
    kafka = [item.kafka for item in chunk]
    columns: dict[str, list[Any]] = {
        "event_id": [e.event_id for e in evs],
        "type": [e.type for e in evs],
        "api_version": [e.api_version for e in evs],
        "created": [e.created for e in evs],
        "livemode": [e.livemode for e in evs],
        "account": [e.account for e in evs],
        "object_type": [e.object_type for e in evs],
        "object_id": [e.object_id for e in evs],
        "received_at": [item.received_at for item in chunk],
        "source": [item.source for item in chunk],
        "payload": [payload_text(e) for e in evs],
        "kafka_topic": [k.topic if k else None for k in kafka],
        "kafka_partition": [k.partition if k else None for k in kafka],
        "kafka_offset": [k.offset if k else None for k in kafka],
    }
    assert tuple(columns) == EVENT_COLUMNS, "one array per column of the events table"
    return tuple(columns.values())


class PostgresEventStore(EventStore):
    dialect = "postgresql"
    read_sql = _READ
    read_typed_sql = _READ_TYPED

    def _types_parameter(self, types: frozenset[str]) -> Any:
        return sorted(types)  # a text[]; sorted: the same statement parameters every batch

    def _serialize_appends(self, connection: sa.Connection) -> None:
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(APPEND_LOCK_KEY)))

    def _insert_events(self, connection: sa.Connection, fresh: Sequence[Incoming]) -> int:
        # Known ids are skipped by ON CONFLICT DO NOTHING (and counted as duplicates); the
        # arrays have no parameter limit, so a consumer's whole batch is one statement.
        appended = 0
        for start in range(0, len(fresh), APPEND_BATCH_EVENTS_MAX):
            chunk = fresh[start : start + APPEND_BATCH_EVENTS_MAX]
            inserted = pg_bulk.execute(connection, _APPEND, _arrays(chunk)).rowcount
            assert 0 <= inserted <= len(chunk), (inserted, len(chunk))
            appended += inserted
        return appended

    def _insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def _greatest(self, left: Any, right: Any) -> Any:
        return sa.func.greatest(left, right)
