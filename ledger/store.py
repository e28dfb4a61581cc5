"""The append-only event store: idempotent batched appends and an ordered, gapless read.

Exactly-once comes from the database, not from the transport: ``event_id`` is unique and an
append of a known id is a counted no-op. Kafka offsets and dead letters are written in the same
transaction as the events they account for, so a crash between any two steps loses nothing and
stores nothing twice.

Gapless tailing: on PostgreSQL a sequence hands out positions at insert time, but transactions
commit in any order, so a reader of ``position > last`` could pass over a position that commits
later. Appends therefore take a transaction-level advisory lock first: positions are handed out
and committed one appending transaction at a time (see docs/ARCHITECTURE.md). SQLite has a single
writer, so its positions commit in order by construction.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ledger.database import WRITE
from ledger.envelope import SOURCES, StripeEvent
from ledger.schema import dead_letters, events, kafka_offsets

APPEND_STATEMENT_EVENTS_MAX = 500  # rows per INSERT: 15 columns x 500 stays under SQLite's 32766
READ_BATCH_EVENTS_MAX = 10_000
APPEND_LOCK_KEY = 0x5EDCE7  # pg_advisory_xact_lock key that serializes appends


@dataclass(frozen=True, slots=True)
class KafkaCoordinates:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Incoming:
    """An event on its way into the store, with where and when it came from."""

    event: StripeEvent
    source: str
    received_at: dt.datetime
    kafka: KafkaCoordinates | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    raw: bytes
    error: str
    received_at: dt.datetime
    kafka: KafkaCoordinates | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    appended: int
    duplicates: int
    dead_lettered: int = 0


@dataclass(frozen=True, slots=True)
class StoredEvent:
    position: int
    event_id: str
    type: str
    api_version: str | None
    created: int
    livemode: bool
    account: str | None
    object_type: str | None
    object_id: str | None
    received_at: dt.datetime
    source: str
    payload: dict[str, Any]
    kafka_topic: str | None
    kafka_partition: int | None
    kafka_offset: int | None


# PostgreSQL appends send one array per column and unnest them on the server: a short statement
# that psycopg and the server both cache, whatever the batch size. (A multi-row VALUES is a new
# statement text for every batch size, and compiling and parsing it cost more than the insert.)
_EVENT_COLUMNS = (
    ("event_id", "text"),
    ("type", "text"),
    ("api_version", "text"),
    ("created", "int8"),
    ("livemode", "bool"),
    ("account", "text"),
    ("object_type", "text"),
    ("object_id", "text"),
    ("received_at", "timestamptz"),
    ("source", "text"),
    ("payload", "text"),
    ("kafka_topic", "text"),
    ("kafka_partition", "int4"),
    ("kafka_offset", "int8"),
)
_POSTGRES_APPEND = (
    "INSERT INTO events ({names}) SELECT {selected} FROM unnest({arrays}) AS u({names}) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING position"
).format(
    names=", ".join(name for name, _ in _EVENT_COLUMNS),
    selected=", ".join(
        f"{name}::jsonb" if name == "payload" else name for name, _ in _EVENT_COLUMNS
    ),
    arrays=", ".join(f"%b::{kind}[]" for _, kind in _EVENT_COLUMNS),  # binary: no escaping
)
_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _payload_text(event: StripeEvent) -> str:
    """The JSON text to store: the bytes as received when we have them, else the encoding."""
    if event.raw is not None:
        return event.raw.decode("utf-8")
    return _json_encode(event.payload)


def _append_postgres(connection: sa.Connection, items: Sequence[Incoming]) -> int:
    appended = 0
    for start in range(0, len(items), APPEND_STATEMENT_EVENTS_MAX):
        chunk = items[start : start + APPEND_STATEMENT_EVENTS_MAX]
        for item in chunk:
            assert item.source in SOURCES, item.source
            assert item.received_at.tzinfo is not None, "received_at must be timezone-aware"
        evs = [item.event for item in chunk]
        kafka = [item.kafka for item in chunk]
        arrays = [
            [e.event_id for e in evs],
            [e.type for e in evs],
            [e.api_version for e in evs],
            [e.created for e in evs],
            [e.livemode for e in evs],
            [e.account for e in evs],
            [e.object_type for e in evs],
            [e.object_id for e in evs],
            [item.received_at for item in chunk],
            [item.source for item in chunk],
            [_payload_text(e) for e in evs],
            [k.topic if k else None for k in kafka],
            [k.partition if k else None for k in kafka],
            [k.offset if k else None for k in kafka],
        ]
        # exec_driver_sql: the text goes to psycopg as it is (``%b`` binary parameters),
        # and a lost connection surfaces as sqlalchemy's OperationalError (retried).
        appended += len(connection.exec_driver_sql(_POSTGRES_APPEND, tuple(arrays)).all())
    return appended


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _event_row(item: Incoming) -> dict[str, Any]:
    assert item.source in SOURCES, item.source
    assert item.received_at.tzinfo is not None, "received_at must be timezone-aware"
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
        "payload": event.payload,
        "kafka_topic": kafka.topic if kafka else None,
        "kafka_partition": kafka.partition if kafka else None,
        "kafka_offset": kafka.offset if kafka else None,
    }


def _stored(row: sa.Row[Any]) -> StoredEvent:
    received_at = row.received_at
    if received_at.tzinfo is None:  # SQLite keeps no zone; we only ever write UTC
        received_at = received_at.replace(tzinfo=dt.UTC)
    return StoredEvent(
        position=row.position,
        event_id=row.event_id,
        type=row.type,
        api_version=row.api_version,
        created=row.created,
        livemode=bool(row.livemode),
        account=row.account,
        object_type=row.object_type,
        object_id=row.object_id,
        received_at=received_at,
        source=row.source,
        payload=row.payload,
        kafka_topic=row.kafka_topic,
        kafka_partition=row.kafka_partition,
        kafka_offset=row.kafka_offset,
    )


class EventStore:
    """Reads and appends Stripe events. One instance per process; thread-safe via the pool."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        assert self.dialect in ("postgresql", "sqlite"), self.dialect

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    # -- writing ---------------------------------------------------------------------------

    def append(
        self,
        incoming: Sequence[Incoming],
        *,
        dead: Sequence[DeadLetter] = (),
        offsets: Mapping[tuple[str, int], int] | None = None,
        also: Callable[[sa.Connection], None] | None = None,
    ) -> AppendResult:
        """Append events, dead letters and consumer offsets in ONE transaction.

        Known event ids are skipped and counted as duplicates. ``offsets`` maps (topic,
        partition) to the next offset to read; a stored offset never moves backwards.
        ``also`` runs in the same transaction after the appends (a reader's cursor that must
        move exactly when its events are stored, as balance-sync's does).
        """
        with self.engine.connect().execution_options(**WRITE) as connection:
            with connection.begin():
                if self.dialect == "postgresql":
                    connection.execute(sa.select(sa.func.pg_advisory_xact_lock(APPEND_LOCK_KEY)))
                appended = self._append_events(connection, incoming)
                dead_lettered = self._append_dead_letters(connection, dead)
                if offsets:
                    self._save_offsets(connection, offsets)
                if also is not None:
                    also(connection)
        return AppendResult(
            appended=appended,
            duplicates=len(incoming) - appended,
            dead_lettered=dead_lettered,
        )

    def _append_events(self, connection: sa.Connection, incoming: Sequence[Incoming]) -> int:
        fresh: list[Incoming] = []
        seen: set[str] = set()
        for item in incoming:  # duplicates inside one batch are counted like any other
            if item.event.event_id not in seen:
                seen.add(item.event.event_id)
                fresh.append(item)
        if not fresh:
            return 0
        if self.dialect == "postgresql":
            appended = _append_postgres(connection, fresh)
        else:
            # The ids already stored are left out here: the events_no_replace trigger refuses
            # any insert over a stored event (issue 19), ON CONFLICT DO NOTHING's included.
            # This transaction holds SQLite's write lock (BEGIN IMMEDIATE): nobody adds one
            # between this read and the insert.
            known = self._known_ids(connection, [item.event.event_id for item in fresh])
            fresh = [item for item in fresh if item.event.event_id not in known]
            if not fresh:
                return 0
            # One cached statement executed for many rows ("insertmanyvalues"): a
            # .values(rows) statement would be compiled afresh for every batch. The payload
            # is bound as text: the bytes as received (as on PostgreSQL), not encoded again.
            statement = (
                self._insert(events)
                .values(payload=sa.bindparam("payload", type_=sa.Text()))
                .on_conflict_do_nothing(index_elements=["event_id"])
                .returning(events.c.position)
            )
            appended = len(
                connection.execution_options(insertmanyvalues_page_size=APPEND_STATEMENT_EVENTS_MAX)
                .execute(
                    statement,
                    [{**_event_row(item), "payload": _payload_text(item.event)} for item in fresh],
                )
                .all()
            )
        assert appended <= len(fresh)
        return appended

    def _known_ids(self, connection: sa.Connection, ids: Sequence[str]) -> set[str]:
        known: set[str] = set()
        for start in range(0, len(ids), APPEND_STATEMENT_EVENTS_MAX):
            chunk = ids[start : start + APPEND_STATEMENT_EVENTS_MAX]
            rows = connection.execute(
                sa.select(events.c.event_id).where(events.c.event_id.in_(chunk))
            )
            known.update(row[0] for row in rows)
        return known

    def _append_dead_letters(self, connection: sa.Connection, dead: Sequence[DeadLetter]) -> int:
        if not dead:
            return 0
        rows = [
            {
                "raw": letter.raw,
                "error": letter.error,
                "received_at": letter.received_at,
                "topic": letter.kafka.topic if letter.kafka else None,
                "partition": letter.kafka.partition if letter.kafka else None,
                "offset": letter.kafka.offset if letter.kafka else None,
            }
            for letter in dead
        ]
        statement = (
            self._insert(dead_letters)
            .values(rows)
            .on_conflict_do_nothing()
            .returning(dead_letters.c.id)
        )
        return len(connection.execute(statement).all())

    def _save_offsets(
        self, connection: sa.Connection, offsets: Mapping[tuple[str, int], int]
    ) -> None:
        now = utc_now()
        rows = [
            {"topic": topic, "partition": partition, "next_offset": offset, "updated_at": now}
            for (topic, partition), offset in offsets.items()
        ]
        assert all(offset >= 0 for offset in offsets.values()), offsets
        statement = self._insert(kafka_offsets).values(rows)
        statement = statement.on_conflict_do_update(
            index_elements=["topic", "partition"],
            set_={
                "next_offset": sa.func.max(
                    kafka_offsets.c.next_offset, statement.excluded.next_offset
                )
                if self.dialect == "sqlite"
                else sa.func.greatest(kafka_offsets.c.next_offset, statement.excluded.next_offset),
                "updated_at": statement.excluded.updated_at,
            },
        )
        connection.execute(statement)

    # -- reading ---------------------------------------------------------------------------

    def read(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Events with position > after_position, in position order, at most ``limit``."""
        assert 0 < limit <= READ_BATCH_EVENTS_MAX, limit
        statement = (
            sa.select(events)
            .where(events.c.position > after_position)
            .order_by(events.c.position)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [_stored(row) for row in connection.execute(statement)]

    def iter_events(self, after_position: int = 0, batch: int = 1000) -> Iterator[StoredEvent]:
        """Every event after ``after_position``, streamed in batches (bounded memory)."""
        position = after_position
        while True:
            page = self.read(position, batch)
            yield from page
            if len(page) < batch:
                return
            position = page[-1].position

    def head_position(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.max(events.c.position))).scalar() or 0)

    def count(self) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.execute(sa.select(sa.func.count()).select_from(events)).scalar() or 0
            )

    def event_ids(self) -> list[str]:
        with self.engine.connect() as connection:
            return list(connection.execute(sa.select(events.c.event_id)).scalars())

    def payloads_of(self, event_ids: Sequence[str]) -> dict[str, Any]:
        """The stored payload of each of ``event_ids`` that is stored (import's conflict check)."""
        assert len(event_ids) <= READ_BATCH_EVENTS_MAX, len(event_ids)
        if not event_ids:
            return {}
        statement = sa.select(events.c.event_id, events.c.payload).where(
            events.c.event_id.in_(list(event_ids))
        )
        with self.engine.connect() as connection:
            return {row.event_id: row.payload for row in connection.execute(statement)}

    def offsets(self, topic: str) -> dict[int, int]:
        """The next offset to read per partition of ``topic``, as stored with the events."""
        statement = sa.select(kafka_offsets.c.partition, kafka_offsets.c.next_offset).where(
            kafka_offsets.c.topic == topic
        )
        with self.engine.connect() as connection:
            return {row.partition: row.next_offset for row in connection.execute(statement)}

    def dead_letter_rows(self, limit: int = 100, after_id: int = 0) -> list[sa.Row[Any]]:
        """Dead letters with id > ``after_id``, oldest first, at most ``limit``."""
        statement = (
            sa.select(dead_letters)
            .where(dead_letters.c.id > after_id)
            .order_by(dead_letters.c.id)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return list(connection.execute(statement))
