"""Where verified events go: the ``Sink`` interface and ``KafkaSink``.

The HTTP app only knows ``Sink``: a later embedded mode can append straight to the event store
with another implementation. ``put`` returns only once the event is durable in the sink, and
raises ``SinkUnavailable`` (answered 503, so Stripe retries) when it cannot be within a bounded
time.

``KafkaSink`` shares one idempotent kafka-python producer (acks=all, linger 0) between all
requests. The asyncio event loop never calls into the Kafka client: ``send`` runs on one
dedicated thread (it can block on metadata or a full buffer).

Both crossings between the loop and that thread are per group, not per request (issue 21): the
records of the requests parsed in one loop iteration go to the thread as one job (up to
``GROUP_EVENTS_MAX``; at most ``WAITING_EVENTS_MAX`` wait, beyond that 503), and the broker's
answers come back as one ``call_soon_threadsafe`` per run of answers. One job and one wake-up
per request cost a lock, a notify and a self-pipe write each, and the loop's CPU was the limit.
A request is still answered only after the broker acknowledged its own record.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from kafka import KafkaProducer
from kafka.producer.transaction_manager import TransactionState

from ingest.core import PRODUCE_TIMEOUT_S
from ingest.deadlines import Deadlines, settle
from ledger import kafka_wire
from ledger.envelope import StripeEvent
from ledger.logs import get_logger
from ledger.settings import Settings

READY_CHECK_TIMEOUT_S = 2.0
READY_CACHE_S = 1.0
CONNECT_BACKOFF_S_MIN = 0.5
CONNECT_BACKOFF_S_MAX = 30.0
CLOSE_TIMEOUT_S = 5.0
# The records handed to the kafka-send thread in one job, and those waiting on the loop for it
# (beyond that, 503 at once: a broker that stalls cannot make ingest hold unbounded memory).
GROUP_EVENTS_MAX = 500
WAITING_EVENTS_MAX = 20_000

log = get_logger("ingest.sink")


_Outgoing = tuple[kafka_wire.KafkaRecord, "asyncio.Future[None]"]


class SinkUnavailable(Exception):
    """The sink cannot take the event now (answered 503). The message is safe to show."""


class Sink(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ready(self) -> bool: ...

    async def put(self, raw: bytes, event: StripeEvent, received_at_ms: int) -> None: ...


class KafkaSink:
    """Appends each event to a Kafka topic; ``put`` returns after the broker's acknowledgement."""

    def __init__(
        self,
        settings: Settings,
        *,
        produce_timeout_s: float = PRODUCE_TIMEOUT_S,
    ) -> None:
        self._config = kafka_wire.producer_config(settings)
        self._topic = settings.kafka_topic
        self.destination = f"kafka:{settings.kafka_topic}"  # what the start-up line names
        self._producer: KafkaProducer | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._connector: asyncio.Task[None] | None = None
        self._stopping = False
        self._ready_cache: tuple[float, bool] = (0.0, False)
        self._ready_lock: asyncio.Lock | None = None
        self._outbox: collections.deque[_Outgoing] = collections.deque()  # on the loop only
        self._group_scheduled = False
        self._acks_lock = threading.Lock()
        self._acks: list[tuple[asyncio.Future[None], BaseException | None]] = []
        self._deadlines = Deadlines(
            produce_timeout_s,
            SinkUnavailable,
            f"the broker did not acknowledge the event within {produce_timeout_s:g} s",
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Returns at once: the producer connects in the background (503 until it has)."""
        # One thread for everything that touches the producer from our side: connect, send.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-send")
        self._ready_lock = asyncio.Lock()
        self._connector = asyncio.create_task(self._connect_until_done())

    async def _connect_until_done(self) -> None:
        loop = asyncio.get_running_loop()
        backoff_s = CONNECT_BACKOFF_S_MIN
        while not self._stopping and self._producer is None:
            assert self._executor is not None
            try:
                producer = await loop.run_in_executor(self._executor, self._new_producer)
            except Exception as error:  # noqa: BLE001 - any failure: log, back off, retry
                log.warning(
                    "kafka_connect_failed", error=type(error).__name__, retry_in_s=backoff_s
                )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, CONNECT_BACKOFF_S_MAX)
                continue
            if self._stopping:
                self._producer = None
                await asyncio.to_thread(producer.close, 0)
                return
            log.info("kafka_connected", topic=self._topic)

    def _new_producer(self) -> KafkaProducer:
        # Runs on the kafka-send thread and publishes the producer there, so that sends queued
        # behind the connect (requests that arrived during start-up) find it.
        producer = KafkaProducer(**self._config)
        self._producer = producer
        return producer

    async def stop(self) -> None:
        self._stopping = True
        if self._connector is not None:
            self._connector.cancel()
            try:
                await self._connector
            except asyncio.CancelledError:
                pass
        producer, self._producer = self._producer, None
        if producer is not None:
            # Flushes what is buffered (bounded), then closes the connections.
            await asyncio.to_thread(producer.close, CLOSE_TIMEOUT_S)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        stopped = SinkUnavailable("the Kafka sink is stopping")
        while self._outbox:  # records no job took: their requests are answered 503 now
            settle(self._outbox.popleft()[1], stopped)
        self._deadlines.fail_all(stopped)  # sent, never answered: 503 now, not at the timeout

    # -- readiness ---------------------------------------------------------------------------

    async def ready(self) -> bool:
        """True when a broker answered a metadata request just now (cached for a second)."""
        producer = self._producer
        if producer is None or self._ready_lock is None:
            return False
        async with self._ready_lock:  # one check at a time, however many probes arrive
            checked_at, ok = self._ready_cache
            if time.monotonic() - checked_at < READY_CACHE_S:
                return ok
            ok = await asyncio.to_thread(_metadata_round_trip, producer, READY_CHECK_TIMEOUT_S)
            self._ready_cache = (time.monotonic(), ok)
            return ok

    # -- the write ---------------------------------------------------------------------------

    async def put(self, raw: bytes, event: StripeEvent, received_at_ms: int) -> None:
        if self._executor is None or self._stopping:
            raise SinkUnavailable("the Kafka sink is not running")
        if len(self._outbox) >= WAITING_EVENTS_MAX:
            raise SinkUnavailable("too many events waiting for the broker")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._outbox.append((kafka_wire.kafka_record(raw, event, received_at_ms), done))
        if not self._group_scheduled:
            # The requests parsed in this loop iteration join the group: one job for them all.
            self._group_scheduled = True
            loop.call_soon(self._hand_over_group, loop)
        self._deadlines.add(loop, done)
        try:
            await done
        except SinkUnavailable:
            raise
        except Exception as error:  # noqa: BLE001 - a Kafka error: the write did not happen
            reason = type(error).__name__
            raise SinkUnavailable(f"the broker refused the write ({reason})") from None
        finally:
            if not done.done() or done.cancelled() or done.exception() is not None:
                self._replace_if_wedged()

    def _hand_over_group(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop: give the kafka-send thread the records waiting (up to
        ``GROUP_EVENTS_MAX``) as one job; more waiting are handed over on the next iteration."""
        self._group_scheduled = False
        group = [self._outbox.popleft() for _ in range(min(GROUP_EVENTS_MAX, len(self._outbox)))]
        if self._outbox:
            self._group_scheduled = True
            loop.call_soon(self._hand_over_group, loop)
        if self._executor is not None:
            try:
                self._executor.submit(self._send_group, loop, group)
                return
            except RuntimeError:  # shut down between the check and the submit
                pass
        stopping = SinkUnavailable("the Kafka sink is stopping")
        for _record, done in group:
            settle(done, stopping)

    def _send_group(self, loop: asyncio.AbstractEventLoop, group: list[_Outgoing]) -> None:
        """On the kafka-send thread: ``send`` each record of the group; the broker's answers
        come back through ``_acknowledge``."""
        producer = self._producer
        for record, done in group:
            if done.done():  # the request already gave up (timeout): do not send late
                continue
            if producer is None:
                self._acknowledge(loop, done, SinkUnavailable("not connected to Kafka yet"))
                continue
            try:
                future = kafka_wire.send(producer, self._topic, record)
            except Exception as error:  # noqa: BLE001 - KafkaTimeoutError, closed producer...
                self._acknowledge(loop, done, error)
                continue
            future.add_both(_answered, self, loop, done)

    def _acknowledge(
        self,
        loop: asyncio.AbstractEventLoop,
        done: asyncio.Future[None],
        error: BaseException | None,
    ) -> None:
        """On any thread: queue one answer; the first of a run wakes the loop, which settles
        every answer queued by then (one wake-up per produce response, not one per record)."""
        with self._acks_lock:
            self._acks.append((done, error))
            first = len(self._acks) == 1
        if first:
            try:
                loop.call_soon_threadsafe(self._settle_acks)
            except RuntimeError:  # the loop closed (shutdown): nobody waits for the answer
                pass

    def _settle_acks(self) -> None:
        with self._acks_lock:
            acks, self._acks = self._acks, []
        for done, error in acks:
            settle(done, error)

    def _replace_if_wedged(self) -> None:
        """After a failed write: a producer that can never send again is replaced by a new one.

        kafka-python 3.0.12 wedges its idempotent producer for good when a batch that was sent
        expires (two of three brokers lost for longer than the delivery timeout): it drops its
        producer id and never asks for another one, so every later write times out, even once the
        cluster is back (tests/test_cluster_faults.py found it). A new producer gets a new id.
        """
        producer = self._producer
        if producer is None or self._stopping or not _producer_wedged(producer):
            return
        self._producer = None  # writes answer 503 (not connected) until the new one connects
        log.warning("kafka_producer_replaced", reason="no_producer_id", topic=self._topic)
        threading.Thread(target=_discard, args=(producer,), daemon=True).start()
        self._connector = asyncio.create_task(self._connect_until_done())


def _answered(
    sink: KafkaSink, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None], outcome: Any
) -> None:
    """The broker's answer to one record (its metadata, or the exception): on the sender."""
    error = outcome if isinstance(outcome, BaseException) else None
    sink._acknowledge(loop, done, error)  # noqa: SLF001 - the sink's own callback


def _producer_wedged(producer: KafkaProducer) -> bool:
    """An idempotent producer READY without a producer id: its sender waits for an id forever."""
    manager = producer._transaction_manager  # noqa: SLF001 - the state has no public accessor
    if manager is None or manager.is_transactional():
        return False
    with manager._lock:  # noqa: SLF001
        state = manager._current_state  # noqa: SLF001
    return state == TransactionState.READY and not manager.has_producer_id()


def _discard(producer: KafkaProducer) -> None:
    """Close a wedged producer without waiting for its records (they were answered 503)."""
    try:
        producer.close(0)
    except Exception:  # noqa: BLE001 - flush(0) raises with records pending: stop the sender
        producer._sender.force_close()  # noqa: SLF001 - no public way to drop the buffer


def _metadata_round_trip(producer: KafkaProducer, timeout_s: float) -> bool:
    """Ask the cluster for fresh metadata; True if a broker answered within the timeout."""
    try:
        future = producer._metadata.request_update()  # noqa: SLF001 - no public probe exists
        answered = threading.Event()
        future.add_both(lambda *_: answered.set())
        producer._sender.wakeup()  # noqa: SLF001
        answered.wait(timeout_s)
        return bool(future.is_done and future.succeeded())
    except Exception:  # noqa: BLE001 - a failed probe means not ready
        return False
