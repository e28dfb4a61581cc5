"""The consumer worker: Kafka records -> the event store, exactly once.

Offsets live in the database, written in the same transaction as the events (and dead letters)
of the batch. On partition assignment the consumer seeks to those stored offsets, so Kafka's own
group offsets are only informational (they are committed too, for lag monitoring). A record below
the stored offset of its partition (re-delivered after a rebalance) is dropped before the append;
an event id seen before is a counted no-op. Either guard alone keeps the store exact.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, RetriableError
from kafka.structs import OffsetAndMetadata

from ledger.envelope import EnvelopeError, parse_event
from ledger.kafka_wire import received_at
from ledger.logs import get_logger
from ledger.retry import retrying, stop_on_signals
from ledger.settings import CONSUMER_POLL_RECORDS_MAX, CONSUMER_POLL_TIMEOUT_MS, kafka_security
from ledger.store import AppendResult, DeadLetter, EventStore, Incoming, KafkaCoordinates

# A SIGKILLed member stays in the group until its session times out; a restarted consumer waits
# that long for its partitions. Short enough for quick fail-over, long enough for GC pauses.
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 2_000
# --until-idle never gives up before the group had this long to hand out partitions.
ASSIGNMENT_WAIT_S_MIN = 3 * SESSION_TIMEOUT_MS / 1000
SHUTDOWN_CLOSE_TIMEOUT_MS = 10_000
FETCH_PARTITION_BYTES_MAX = 8 * 1024 * 1024
UNASSIGNED_WARN_EVERY_S = 30.0
# The appender thread waits on PostgreSQL several times per batch (the lock, the INSERT's
# sends, the offsets, the commit) and each time needs the interpreter lock back from the
# polling thread, which is decoding the next batch and gives the lock up only every switch
# interval (Python's default 5 ms): the appender is the pipeline's critical path, so those
# waits were its time. 1 ms: small payloads 21,000-23,600 -> 25,500-26,700 events/s in three
# alternating pairs (docs/PERFORMANCE.md). A rebuild, whose writer is not alone on its path,
# was slower with it; only the consumer sets it, for as long as it runs.
APPENDER_SWITCH_INTERVAL_S = 0.001
log = get_logger("ledger.consumer")


@dataclass
class ConsumeStats:
    batches: int = 0
    records: int = 0
    appended: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    redelivered: int = 0  # below the stored offset: dropped before the append


@dataclass
class _Positions:
    """Next offset per partition, as the database has it; updated only after a commit."""

    topic: str
    next_offset: dict[int, int] = field(default_factory=dict)
    assigned: bool = False
    assigned_at: float = 0.0


def decode_records(records: Iterable[Any]) -> tuple[list[Incoming], list[DeadLetter]]:
    """Kafka records -> events to append and dead letters (records that are not Stripe events)."""
    incoming: list[Incoming] = []
    dead: list[DeadLetter] = []
    for record in records:
        coordinates = KafkaCoordinates(record.topic, record.partition, record.offset)
        when = received_at(record.headers, record.timestamp)
        raw = record.value if record.value is not None else b""
        try:
            event = parse_event(raw)
        except EnvelopeError as error:
            dead.append(DeadLetter(raw, str(error), when, coordinates))
            continue
        incoming.append(Incoming(event, "webhook", when, coordinates))
    return incoming, dead


@dataclass
class _InFlight:
    """The batch being appended on the appender thread."""

    future: Future[AppendResult | None]
    next_offsets: dict[tuple[str, int], int]
    records: int


class _SeekToStoredOffsets(ConsumerRebalanceListener):
    def __init__(
        self,
        consumer: KafkaConsumer,
        store: EventStore,
        positions: _Positions,
        stop: threading.Event,
        drain: Callable[[], object] = lambda: None,
    ) -> None:
        self.consumer = consumer
        self.store = store
        self.positions = positions
        self.stop = stop
        self.drain = drain

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.drain()  # the batch being appended commits (or fails) before offsets are re-read
        log.info("partitions_revoked", partitions=sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        stored = retrying("database", lambda: self.store.offsets(self.positions.topic), self.stop)
        if stored is None:  # stopping: fetch nothing, store nothing
            return
        for tp in assigned:
            if tp.partition in stored:
                self.consumer.seek(tp, stored[tp.partition])
            else:
                self.consumer.seek_to_beginning(tp)
        self.positions.next_offset = {tp.partition: stored.get(tp.partition, 0) for tp in assigned}
        self.positions.assigned = bool(assigned)
        self.positions.assigned_at = time.monotonic()
        log.info(
            "partitions_assigned",
            partitions={tp.partition: stored.get(tp.partition, "beginning") for tp in assigned},
        )


class Consumer:
    """A long-running member of the consumer group; ``run`` returns when stopped or idle."""

    def __init__(
        self,
        store: EventStore,
        bootstrap: str,
        topic: str,
        group: str,
        *,
        poll_records_max: int = CONSUMER_POLL_RECORDS_MAX,
    ) -> None:
        assert 0 < poll_records_max <= CONSUMER_POLL_RECORDS_MAX * 10
        self.store = store
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.poll_records_max = poll_records_max
        self.security = kafka_security()  # read now: a bad setting is an error at start
        self.stop = threading.Event()
        self.stats = ConsumeStats()
        self.positions = _Positions(topic)
        # One batch is appended on this thread while the next one is polled and decoded.
        self._appender: ThreadPoolExecutor | None = None
        self._in_flight: _InFlight | None = None

    def install_signal_handlers(self) -> None:
        stop_on_signals(self.stop)

    def _connect(self) -> KafkaConsumer | None:
        def connect() -> KafkaConsumer:
            return KafkaConsumer(
                bootstrap_servers=self.bootstrap.split(","),
                group_id=self.group,
                client_id=f"stripe-ledger-consume-{self.group}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=self.poll_records_max,
                # Room for a full poll of ~2 KB events per fetch (the default 1 MiB stopped at
                # ~400): fewer round trips and one commit per 1000 records.
                max_partition_fetch_bytes=FETCH_PARTITION_BYTES_MAX,
                reconnect_backoff_max_ms=10_000,
                session_timeout_ms=SESSION_TIMEOUT_MS,
                heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
                **self.security,
            )

        return retrying("kafka broker", connect, self.stop, transient=(RetriableError,))

    def run(self, until_idle_s: float | None = None) -> ConsumeStats:
        consumer = self._connect()
        if consumer is None:
            return self.stats
        self._appender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="consume-append")
        consumer.subscribe(
            [self.topic],
            listener=_SeekToStoredOffsets(
                consumer, self.store, self.positions, self.stop, lambda: self._drain(consumer)
            ),
        )
        log.info("consuming", topic=self.topic, group=self.group, bootstrap=self.bootstrap)
        started = idle_since = warned = time.monotonic()
        switch_interval_s = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval_s, APPENDER_SWITCH_INTERVAL_S))
        try:
            while not self.stop.is_set():
                batch = consumer.poll(timeout_ms=CONSUMER_POLL_TIMEOUT_MS)
                now = time.monotonic()
                if self.positions.assigned_at > idle_since:
                    idle_since = self.positions.assigned_at
                if not self.positions.assigned and now - warned >= UNASSIGNED_WARN_EVERY_S:
                    warned = now
                    log.warning(
                        "no_partitions_assigned",  # is the broker reachable, the topic there?
                        waited_s=round(now - started),
                        topic=self.topic,
                        bootstrap=self.bootstrap,
                    )
                records = [record for part in batch.values() for record in part]
                if records:
                    self._store_batch(consumer, batch)
                    idle_since = time.monotonic()
                else:
                    self._drain(consumer)  # nothing new: finish the batch in flight now
                    if until_idle_s is not None and now - idle_since >= until_idle_s:
                        if self.positions.assigned or now - started >= max(
                            until_idle_s, ASSIGNMENT_WAIT_S_MIN
                        ):
                            log.info("idle_exit", idle_s=round(now - idle_since, 1))
                            break
            self._drain(consumer)
        finally:
            try:
                if self._in_flight is not None:  # an error above: let the append finish
                    self._in_flight.future.exception()
                    self._in_flight = None
            finally:
                self._appender.shutdown(wait=True)
                self._close(consumer)
                sys.setswitchinterval(switch_interval_s)
        return self.stats

    def _store_batch(self, consumer: KafkaConsumer, batch: dict[Any, list[Any]]) -> None:
        fresh: list[Any] = []
        next_offsets: dict[tuple[str, int], int] = {}
        for tp, part in batch.items():
            known = self.positions.next_offset.get(tp.partition, 0)
            for record in part:
                if record.offset < known:
                    self.stats.redelivered += 1
                    continue
                fresh.append(record)
            if part:
                next_offsets[(tp.topic, tp.partition)] = max(part[-1].offset + 1, known)
        incoming, dead = decode_records(fresh)  # overlaps with the previous batch's append
        if not self._drain(consumer):
            return  # stopped while the database was away: that batch and this one not stored
        assert self._appender is not None
        future = self._appender.submit(
            retrying,
            "database",
            lambda: self.store.append(incoming, dead=dead, offsets=next_offsets),
            self.stop,
        )
        self._in_flight = _InFlight(future, next_offsets, len(fresh))

    def _drain(self, consumer: KafkaConsumer) -> bool:
        """Wait for the batch being appended, then account for it (on the polling thread, as
        kafka-python wants). False when it was not stored (stopped while the database was away).
        An append that raised raises here."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            return True
        result = in_flight.future.result()
        if result is None:  # stopped while the database was away: nothing stored, nothing lost
            return False
        next_offsets = in_flight.next_offsets
        for (_, partition), offset in next_offsets.items():
            self.positions.next_offset[partition] = offset
        self._commit_to_kafka(consumer, next_offsets)
        self.stats.batches += 1
        self.stats.records += in_flight.records
        self.stats.appended += result.appended
        self.stats.duplicates += result.duplicates
        self.stats.dead_lettered += result.dead_lettered
        log.info(
            "batch_stored",
            records=in_flight.records,
            appended=result.appended,
            duplicates=result.duplicates,
            dead_lettered=result.dead_lettered,
            offsets={partition: offset for (_, partition), offset in next_offsets.items()},
        )
        return True

    def _commit_to_kafka(
        self, consumer: KafkaConsumer, offsets: dict[tuple[str, int], int]
    ) -> None:
        """Informational only (lag dashboards): the database holds the offsets that count."""
        try:
            consumer.commit_async(
                {
                    TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
                    for (topic, partition), offset in offsets.items()
                }
            )
        except KafkaError as error:
            log.debug("offset_commit_skipped", error=str(error))

    def _close(self, consumer: KafkaConsumer) -> None:
        try:
            consumer.close(autocommit=False, timeout_ms=SHUTDOWN_CLOSE_TIMEOUT_MS)
        except KafkaError as error:  # leaving the group is best effort; offsets are safe
            log.warning("group_leave_failed", error=str(error))
        log.info(
            "consumer_stopped",
            batches=self.stats.batches,
            records=self.stats.records,
            appended=self.stats.appended,
            duplicates=self.stats.duplicates,
            dead_lettered=self.stats.dead_lettered,
            redelivered=self.stats.redelivered,
        )
