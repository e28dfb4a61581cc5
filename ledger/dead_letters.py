"""Dead letters: read them, and re-append those that the parser now accepts.

A dead letter is a Kafka record the envelope refused, kept byte for byte with the reason
(``dead_letters``). After a parser fix, ``retry`` parses the raw bytes again; an accepted event
goes through the same idempotent append as every other (source ``webhook``, its original receive
time and Kafka coordinates), so a retry twice stores it once. The dead-letter row itself is never
changed or removed: it stays as the history of what arrived and why it was refused then. Its
status is computed: ``refused`` (the parser still refuses it), ``retriable`` (accepted now, not
stored yet) or ``stored`` (accepted, and its event id is in the store).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ledger.envelope import EnvelopeError, StripeEvent, parse_event
from ledger.eventbridge import parse_eventbridge
from ledger.schema import dead_letters, events
from ledger.store import EventStore, Incoming, KafkaCoordinates

DEAD_LETTERS_PAGE_ROWS_MAX = 500  # rows per read and per append transaction
# consume-sqs files its dead letters under this topic prefix (ledger/sqs_consumer.py's
# DEAD_LETTER_TOPIC_PREFIX; not imported: that module needs boto3 to load).
SQS_DEAD_LETTER_TOPIC_PREFIX = "sqs:"


@dataclass(frozen=True)
class Letter:
    id: int
    topic: str | None
    partition: int | None
    offset: int | None
    raw: bytes
    error: str
    received_at: dt.datetime
    event: StripeEvent | None  # what the parser makes of ``raw`` now
    reason_now: str | None  # why the parser refuses it now (None when accepted)
    stored: bool  # its event id is in the store

    @property
    def status(self) -> str:
        if self.event is None:
            return "refused"
        return "stored" if self.stored else "retriable"


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _parse(row: Any, sources: tuple[str, ...]) -> StripeEvent:
    """The parser of the door the record came through: an SQS message body is an EventBridge
    event (consume-sqs files it under topic ``sqs:QUEUE``); a Kafka record is a webhook body."""
    if row.topic is not None and row.topic.startswith(SQS_DEAD_LETTER_TOPIC_PREFIX):
        if not sources:
            raise EnvelopeError(
                "an EventBridge dead letter: set LEDGER_EVENTBRIDGE_SOURCES to parse it"
            )
        return parse_eventbridge(bytes(row.raw), sources)
    return parse_event(bytes(row.raw))


def _letters(store: EventStore, rows: list[Any], sources: tuple[str, ...]) -> list[Letter]:
    parsed: list[tuple[Any, StripeEvent | None, str | None]] = []
    for row in rows:
        try:
            parsed.append((row, _parse(row, sources), None))
        except EnvelopeError as error:
            parsed.append((row, None, str(error)))
    ids = sorted({event.event_id for _, event, _ in parsed if event is not None})
    stored: set[str] = set()
    if ids:
        with store.engine.connect() as connection:
            query = sa.select(events.c.event_id).where(events.c.event_id.in_(ids))
            stored = set(connection.execute(query).scalars())
    return [
        Letter(
            row.id, row.topic, row.partition, row.offset, bytes(row.raw), row.error,
            _utc(row.received_at), event, reason, event is not None and event.event_id in stored,
        )  # fmt: skip
        for row, event, reason in parsed
    ]


def page(
    store: EventStore, after_id: int = 0, rows_max: int = 50, sources: tuple[str, ...] = ()
) -> list[Letter]:
    """Dead letters with id > ``after_id``, oldest first, at most ``rows_max``. ``sources``:
    the EventBridge partner sources, to parse what consume-sqs dead-lettered."""
    assert 0 < rows_max <= DEAD_LETTERS_PAGE_ROWS_MAX, rows_max
    return _letters(store, store.dead_letter_rows(rows_max, after_id), sources)


def get(store: EventStore, letter_id: int, sources: tuple[str, ...] = ()) -> Letter | None:
    with store.engine.connect() as connection:
        row = connection.execute(
            sa.select(dead_letters).where(dead_letters.c.id == letter_id)
        ).first()
    return _letters(store, [row], sources)[0] if row is not None else None


def count(store: EventStore) -> int:
    with store.engine.connect() as connection:
        total = connection.execute(sa.select(sa.func.count()).select_from(dead_letters)).scalar()
    return int(total or 0)


def all_letters(store: EventStore, sources: tuple[str, ...] = ()) -> Iterator[list[Letter]]:
    """Every dead letter, a page at a time (bounded memory)."""
    after = 0
    while letters := page(store, after, DEAD_LETTERS_PAGE_ROWS_MAX, sources):
        yield letters
        after = letters[-1].id


@dataclass
class RetryTotals:
    appended: int = 0
    already_stored: int = 0
    refused: int = 0


def retry(store: EventStore, letters: list[Letter]) -> RetryTotals:
    """Append the events the parser now accepts (idempotent by event id), in one transaction."""
    assert len(letters) <= DEAD_LETTERS_PAGE_ROWS_MAX, len(letters)
    totals = RetryTotals()
    incoming = []
    for letter in letters:
        if letter.event is None:
            totals.refused += 1
            continue
        kafka = (
            KafkaCoordinates(letter.topic, letter.partition, letter.offset)
            if letter.topic is not None and letter.partition is not None
            and letter.offset is not None
            else None
        )  # fmt: skip
        incoming.append(Incoming(letter.event, "webhook", letter.received_at, kafka))
    if incoming:
        result = store.append(incoming)
        totals.appended += result.appended
        totals.already_stored += result.duplicates
    return totals
