"""The Kafka wire format of Stripe events: the record, its headers, the producer's options.

Every producer (ingest's HTTP app and Lambda handlers, ``backfill --via-kafka``,
``consume-sqs --via-kafka``) builds its records here and every consumer reads their headers
here, so that what one side writes is what the other side parses. A record is:

- key: the Stripe account (``acct_...``), or ``PLATFORM_KEY`` for the platform's own events, so
  that one account's events stay in one partition, in order;
- value: the event's JSON exactly as received (the signed bytes for a webhook);
- headers: ``RECEIVED_AT_MS_HEADER`` (when ingest received it, unix ms, ASCII digits) and
  ``EVENT_ID_HEADER`` (the event id, UTF-8), readable without parsing the value.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.envelope import StripeEvent
from ledger.settings import Settings, kafka_security

RECEIVED_AT_MS_HEADER = "received_at_ms"
EVENT_ID_HEADER = "event_id"
PLATFORM_KEY = "platform"  # the record key of events of the platform account (account null)

# Send at once: while a send is in flight the next records gather anyway (batching under load
# is natural). 5 ms of linger added ~5 ms to every answer: p50 at 500 req/s 8-12 -> 4-7 ms
# (docs/PERFORMANCE.md) with the same throughput.
KAFKA_LINGER_MS = 0
# Under load the records that gather while a produce request is in flight go in one batch per
# partition; kafka-python's 16 KiB default cut that to ~8 demo events, so a burst of requests
# became many produce requests and acknowledgements (issue 21). A batch never exceeds the
# request size below.
KAFKA_BATCH_BYTES = 256 * 1024
KAFKA_MAX_BLOCK_MS = 5_000  # send() waits this long at most for metadata or buffer room
KAFKA_BOOTSTRAP_TIMEOUT_MS = 5_000
KAFKA_REQUEST_TIMEOUT_MS = 10_000
KAFKA_DELIVERY_TIMEOUT_MS = 30_000
# A record is the raw body plus headers: room for a body at the configured limit, never below
# Kafka's default request size.
KAFKA_REQUEST_BYTES_MIN = 1024 * 1024
RECORD_OVERHEAD_BYTES_MAX = 64 * 1024
# A batch of produced records (a backfill page, an SQS batch) is acknowledged within this.
BATCH_ACK_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """What goes on the topic: the raw body as received, keyed by Stripe account."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def now_ms() -> int:
    """The ``RECEIVED_AT_MS_HEADER`` value of a record produced now (unix ms)."""
    return time.time_ns() // 1_000_000


def kafka_record(raw: bytes, event: StripeEvent, received_at_ms: int) -> KafkaRecord:
    """The record of an event whose JSON is ``raw`` (the bytes as received, signed or not)."""
    assert received_at_ms >= 0, received_at_ms
    return KafkaRecord(
        key=(event.account or PLATFORM_KEY).encode("utf-8"),
        value=raw,
        headers=[
            (RECEIVED_AT_MS_HEADER, str(received_at_ms).encode("ascii")),
            (EVENT_ID_HEADER, event.event_id.encode("utf-8")),
        ],
    )


def payload_record(event: StripeEvent, received_at_ms: int) -> KafkaRecord:
    """The record of an event that came without its original bytes (listed by the Events API,
    unwrapped from EventBridge): its payload as compact JSON."""
    raw = json.dumps(event.payload, separators=(",", ":")).encode("utf-8")
    return kafka_record(raw, event, received_at_ms)


def send(producer: Any, topic: str, record: KafkaRecord) -> Any:
    """``producer.send`` of one record (a kafka-python KafkaProducer); its FutureRecordMetadata."""
    return producer.send(topic, key=record.key, value=record.value, headers=record.headers)


def produce_acknowledged(
    producer: Any,
    topic: str,
    events: Sequence[StripeEvent],
    *,
    received_at_ms: int,
    timeout_s: float = BATCH_ACK_TIMEOUT_S,
) -> int:
    """Produce every event (``payload_record``) and return once the broker acknowledged each one
    (raises the first failure: the caller treats the whole batch as not sent)."""
    futures = [send(producer, topic, payload_record(event, received_at_ms)) for event in events]
    producer.flush(timeout=timeout_s)
    for future in futures:
        future.get(timeout=timeout_s)
    return len(futures)


def new_producer(settings: Settings, *, client_id: str) -> Any:
    """A kafka-python KafkaProducer with ``producer_config`` (kafka is imported here, so that
    modules that only build records do not load the client)."""
    from kafka import KafkaProducer

    return KafkaProducer(**producer_config(settings, client_id=client_id))


def producer_config(
    settings: Settings,
    *,
    client_id: str = "stripe-ledger-ingest",
    max_block_ms: int = KAFKA_MAX_BLOCK_MS,
) -> dict[str, Any]:
    """kafka-python KafkaProducer options: idempotent, acks=all, bounded in time and size."""
    assert max_block_ms > 0, max_block_ms
    return {
        "bootstrap_servers": [
            part.strip() for part in settings.require_kafka().split(",") if part.strip()
        ],
        "client_id": client_id,
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": KAFKA_LINGER_MS,
        "batch_size": KAFKA_BATCH_BYTES,
        "max_block_ms": max_block_ms,
        "bootstrap_timeout_ms": KAFKA_BOOTSTRAP_TIMEOUT_MS,
        "request_timeout_ms": KAFKA_REQUEST_TIMEOUT_MS,
        "delivery_timeout_ms": KAFKA_DELIVERY_TIMEOUT_MS,
        "max_request_size": max(
            KAFKA_REQUEST_BYTES_MIN, settings.body_bytes_max + RECORD_OVERHEAD_BYTES_MAX
        ),
        **kafka_security(),  # PLAINTEXT, SSL (mutual TLS with a client certificate), SASL/SCRAM
    }


def received_at(
    headers: Iterable[tuple[str, bytes]] | None, broker_timestamp_ms: int | None
) -> dt.datetime:
    """A consumed record's receive time: ingest's header, else the broker's timestamp of the
    record, else now (a record from a producer that set neither)."""
    for key, value in headers or ():
        if key == RECEIVED_AT_MS_HEADER:
            try:
                return dt.datetime.fromtimestamp(int(value) / 1000, dt.UTC)
            except (TypeError, ValueError, OverflowError):
                break
    if broker_timestamp_ms is not None and broker_timestamp_ms > 0:
        return dt.datetime.fromtimestamp(broker_timestamp_ms / 1000, dt.UTC)
    return dt.datetime.now(dt.UTC)
