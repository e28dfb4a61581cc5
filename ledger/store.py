"""The event store's interface: idempotent batched appends and an ordered, gapless read.

Exactly-once comes from the database, not from the transport: ``event_id`` is unique and an
append of a known id is a counted no-op. Kafka offsets and dead letters are written in the same
transaction as the events they account for, so a crash between any two steps loses nothing and
stores nothing twice.

Gapless tailing: on PostgreSQL a sequence hands out positions at insert time, but transactions
commit in any order, so a reader of ``position > last`` could pass over a position that commits
later. Appends therefore take a transaction-level advisory lock first: positions are handed out
and committed one appending transaction at a time (see docs/ARCHITECTURE.md). SQLite has a single
writer, so its positions commit in order by construction.

This module is the interface and what every backend shares (the dataclasses, the append
transaction, the reads); ``ledger/store_postgres.py`` and ``ledger/store_sqlite.py`` are the
backends, and ``open_event_store(engine)`` picks one by the engine's dialect.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import orjson
import sqlalchemy as sa

from ledger.database import WRITE
from ledger.envelope import SOURCES, StripeEvent, long_digit_run
from ledger.schema import dead_letters, events, kafka_offsets

READ_BATCH_EVENTS_MAX = 10_000


@dataclasses.dataclass(frozen=True, slots=True)
class KafkaCoordinates:
    topic: str
    partition: int
    offset: int


@dataclasses.dataclass(frozen=True, slots=True)
class Incoming:
    """An event on its way into the store, with where and when it came from."""

    event: StripeEvent
    source: str
    received_at: dt.datetime
    kafka: KafkaCoordinates | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    raw: bytes
    error: str
    received_at: dt.datetime
    kafka: KafkaCoordinates | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AppendResult:
    appended: int
    duplicates: int
    dead_lettered: int = 0


# Not frozen, though never changed once read: a frozen dataclass's __init__ sets each of its 16
# fields through object.__setattr__ (2.4 us per event against 0.2 us), and the store's readers
# build one per event read (a rebuild reads 1,000,000). Nothing assigns to one (mypy would not
# stop it: the tests' readers compare what they read with what was appended).
@dataclasses.dataclass(slots=True)
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
    # False: read with a ``wanted`` filter that did not want it, so its payload was not decoded
    # (``payload`` is {}): a reader that skips most events does not pay for their JSON.
    decoded: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class Wanted:
    """Which events a reader needs decoded, from their columns alone; the rest come back
    undecoded (``StoredEvent.decoded``), in order, so that positions stay contiguous.

    ``types``: only events of these types can be wanted, so the database does not even send
    the payloads of the others (46% of a demo store's events are of types no projection folds;
    turning their JSONB into text was a sixth of a rebuild's read). ``accepts``: a finer test
    among those, on the event's other columns (a projection shard's ``route``)."""

    types: frozenset[str]
    accepts: Callable[[StoredEvent], bool] | None = None

    def __call__(self, event: StoredEvent) -> bool:
        return event.type in self.types and (self.accepts is None or self.accepts(event))


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def payload_text(event: StripeEvent) -> str:
    """The JSON text to store: the bytes as received when we have them, else the encoding."""
    if event.raw is not None:
        return event.raw.decode("utf-8")
    return _json_encode(event.payload)


def stored_event(row: sa.Row[Any]) -> StoredEvent:
    """A row of ``events`` (all columns, read through SQLAlchemy) as a ``StoredEvent``."""
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


# The columns ``read`` returns, in ``StoredEvent``'s order (the payload as its JSON text).
READ_COLUMNS = tuple(field.name for field in dataclasses.fields(StoredEvent))[:-1]
_LIVEMODE, _RECEIVED_AT, _PAYLOAD = (
    READ_COLUMNS.index(name) for name in ("livemode", "received_at", "payload")
)
assert (_LIVEMODE, _RECEIVED_AT, _PAYLOAD) == (5, 9, 11), "event_of_row's slices"


def _loads(text: str | bytes) -> Any:
    """A stored payload's JSON text -> its value, as ``json.loads`` gives it. orjson is 2.5x
    faster on a demo event (issue 21), but a store may hold what an older decoder let in (an
    integer past int64, tests/test_poison_numbers.py): orjson would make it a float, so such a
    payload, and anything orjson refuses, is json.loads's."""
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    if not long_digit_run(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def event_of_row(
    row: Sequence[Any], received_at: dt.datetime, livemode: bool, wanted: Wanted | None = None
) -> StoredEvent:
    """A ``READ_COLUMNS`` row as a ``StoredEvent``, its payload text decoded once, or not at all
    when ``wanted`` says the reader does not need it. (Each backend converts ``received_at`` and
    ``livemode``: their drivers return them differently.)"""
    head = (row[0], row[1], row[2], row[3], row[4], livemode, row[6], row[7], row[8], received_at)
    tail = (row[12], row[13], row[14])
    if wanted is not None and (row[2] not in wanted.types or wanted.accepts is not None):
        undecoded = StoredEvent(*head, row[10], {}, *tail, False)
        if not wanted(undecoded):  # one object per event: built twice only for a shard's test
            return undecoded
    text = row[11]
    assert text is not None, ("a wanted event's payload was not read", row[0], row[2])
    return StoredEvent(*head, row[10], _loads(text), *tail)


def check_incoming(item: Incoming) -> None:
    """The invariants of an event on its way in, checked before any backend writes it."""
    assert item.source in SOURCES, item.source
    assert item.received_at.tzinfo is not None, "received_at must be timezone-aware"


def distinct_incoming(incoming: Sequence[Incoming]) -> list[Incoming]:
    """``incoming`` checked, each event id kept once (its first occurrence): duplicates inside
    one batch are counted like any other."""
    fresh: list[Incoming] = []
    seen: set[str] = set()
    for item in incoming:
        check_incoming(item)
        if item.event.event_id not in seen:
            seen.add(item.event.event_id)
            fresh.append(item)
    return fresh


class EventStore(abc.ABC):
    """Reads and appends Stripe events. One instance per process; thread-safe via the pool.

    The interface every backend keeps (tests/contracts/ checks it on each): open one with
    ``open_event_store(engine)``. A backend supplies how appends are serialized, how new events
    are inserted and how a batch of events is read; the rest is shared here."""

    dialect: ClassVar[str]  # the SQLAlchemy dialect name this backend serves
    read_sql: ClassVar[str]  # ``READ_COLUMNS`` after a position, in order, limited (driver SQL)
    read_typed_sql: ClassVar[str]  # the same, the payload only for a set of types (else NULL)

    def __init__(self, engine: sa.Engine) -> None:
        assert engine.dialect.name == self.dialect, (engine.dialect.name, self.dialect)
        self.engine = engine

    # -- what a backend supplies -------------------------------------------------------------

    @abc.abstractmethod
    def _serialize_appends(self, connection: sa.Connection) -> None:
        """Make this transaction the only appending one until it ends (gapless positions)."""

    @abc.abstractmethod
    def _insert_events(self, connection: sa.Connection, fresh: Sequence[Incoming]) -> int:
        """Insert ``fresh`` (distinct ids) except the ids already stored; how many were new."""

    @abc.abstractmethod
    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT construct (it has ``on_conflict_do_*``) for ``table``."""

    @abc.abstractmethod
    def _greatest(self, left: Any, right: Any) -> Any:
        """The SQL expression of the larger of two values."""

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
        if not dead and not offsets and also is None:
            return self._append_alone(incoming)
        return self._append_transaction(incoming, dead, offsets, also)

    def _append_alone(self, incoming: Sequence[Incoming]) -> AppendResult:
        """An append of events alone (serve's group commit, import): a backend may take a
        faster path for it (SQLite: through the driver); by default the one transaction."""
        return self._append_transaction(incoming, (), None, None)

    def _append_transaction(
        self,
        incoming: Sequence[Incoming],
        dead: Sequence[DeadLetter],
        offsets: Mapping[tuple[str, int], int] | None,
        also: Callable[[sa.Connection], None] | None,
    ) -> AppendResult:
        with self.engine.connect().execution_options(**WRITE) as connection:
            with connection.begin():
                self._serialize_appends(connection)
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
        fresh = distinct_incoming(incoming)
        if not fresh:
            return 0
        appended = self._insert_events(connection, fresh)
        assert 0 <= appended <= len(fresh), (appended, len(fresh))
        return appended

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
                "next_offset": self._greatest(
                    kafka_offsets.c.next_offset, statement.excluded.next_offset
                ),
                "updated_at": statement.excluded.updated_at,
            },
        )
        connection.execute(statement)

    # -- reading ---------------------------------------------------------------------------

    def read(
        self, after_position: int = 0, events_max: int = 1000, wanted: Wanted | None = None
    ) -> list[StoredEvent]:
        """Events with position > after_position, in position order, at most ``events_max``;
        with ``wanted``, only the events it accepts have their payload decoded."""
        assert 0 < events_max <= READ_BATCH_EVENTS_MAX, events_max
        assert after_position >= 0, after_position
        with self.engine.connect() as connection:
            page = self._read_page(connection, after_position, events_max, wanted)
        assert len(page) <= events_max, (len(page), events_max)
        return page

    def _read_page(
        self,
        connection: sa.Connection,
        after_position: int,
        events_max: int,
        wanted: Wanted | None = None,
    ) -> list[StoredEvent]:
        """``read``'s page. The hot path of project and rebuild: the rows come through the
        driver (the backend's ``read_sql``: ``READ_COLUMNS``, the payload as text decoded once,
        here), not SQLAlchemy's row processing, which was most of a rebuild's read time."""
        if wanted is None:
            result = connection.exec_driver_sql(self.read_sql, (after_position, events_max))
        else:  # the payloads of other types stay in the database (NULL here)
            types = self._types_parameter(wanted.types)
            result = connection.exec_driver_sql(
                self.read_typed_sql, (types, after_position, events_max)
            )
        rows = result.all()
        received_at = self._received_at
        return [event_of_row(row, received_at(row[9]), bool(row[5]), wanted) for row in rows]

    @abc.abstractmethod
    def _types_parameter(self, types: frozenset[str]) -> Any:
        """``types`` as ``read_typed_sql``'s first parameter binds them."""

    def _received_at(self, value: Any) -> dt.datetime:
        """``received_at`` as the driver returns it, as an aware datetime (PostgreSQL: as is)."""
        return value  # type: ignore[no-any-return]

    def iter_events(
        self, after_position: int = 0, batch_events: int = 1000
    ) -> Iterator[StoredEvent]:
        """Every event after ``after_position``, streamed in batches (bounded memory)."""
        position = after_position
        while True:
            page = self.read(position, batch_events)
            yield from page
            if len(page) < batch_events:
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

    def dead_letter_rows(self, rows_max: int = 100, after_id: int = 0) -> list[sa.Row[Any]]:
        """Dead letters with id > ``after_id``, oldest first, at most ``rows_max``."""
        assert 0 < rows_max <= READ_BATCH_EVENTS_MAX, rows_max
        statement = (
            sa.select(dead_letters)
            .where(dead_letters.c.id > after_id)
            .order_by(dead_letters.c.id)
            .limit(rows_max)
        )
        with self.engine.connect() as connection:
            return list(connection.execute(statement))


def open_event_store(engine: sa.Engine) -> EventStore:
    """The event store of ``engine``'s database: the backend of its dialect."""
    # Imported here: each backend module imports this one (the interface) first.
    from ledger.store_postgres import PostgresEventStore
    from ledger.store_sqlite import SqliteEventStore

    backends: dict[str, type[EventStore]] = {
        backend.dialect: backend for backend in (PostgresEventStore, SqliteEventStore)
    }
    backend = backends.get(engine.dialect.name)
    assert backend is not None, f"no event store for {engine.dialect.name}"
    return backend(engine)
