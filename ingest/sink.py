"""Where verified events go: the ``Sink`` interface and ``KafkaSink``.

The HTTP app only knows ``Sink``: a later embedded mode can append straight to the event store
with another implementation. ``put`` returns only once the event is durable in the sink, and
raises ``SinkUnavailable`` (answered 503, so Stripe retries) when it cannot be within a bounded
time.

``KafkaSink`` shares one idempotent kafka-python producer (acks=all, linger 0) between all
requests. The asyncio event loop never calls into the Kafka client: ``send`` runs on one
dedicated thread (it can block on metadata or a full buffer), and the record's completion is
bridged back to the loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from kafka import KafkaProducer
from kafka.producer.transaction_manager import TransactionState

from ingest.core import PRODUCE_TIMEOUT_S, kafka_record, producer_config
from ledger.envelope import StripeEvent
from ledger.logs import get_logger
from ledger.settings import Settings

READY_CHECK_TIMEOUT_S = 2.0
READY_CACHE_S = 1.0
CONNECT_BACKOFF_S_MIN = 0.5
CONNECT_BACKOFF_S_MAX = 30.0
CLOSE_TIMEOUT_S = 5.0

log = get_logger("ingest.sink")


class SinkUnavailable(Exception):
    """The sink cannot take the event now (answered 503). The message is safe to show."""


class Sink(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ready(self) -> bool: ...

    async def put(self, raw: bytes, event: StripeEvent, received_at_ms: int) -> None: ...


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    """On the loop: complete the request's future unless it already timed out."""
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class KafkaSink:
    """Appends each event to a Kafka topic; ``put`` returns after the broker's acknowledgement."""

    def __init__(
        self,
        settings: Settings,
        *,
        produce_timeout_s: float = PRODUCE_TIMEOUT_S,
    ) -> None:
        self._config = producer_config(settings)
        self._topic = settings.kafka_topic
        self.destination = f"kafka:{settings.kafka_topic}"  # what the start-up line names
        self._timeout_s = produce_timeout_s
        self._producer: KafkaProducer | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._connector: asyncio.Task[None] | None = None
        self._stopping = False
        self._ready_cache: tuple[float, bool] = (0.0, False)
        self._ready_lock: asyncio.Lock | None = None

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
        executor = self._executor
        if executor is None or self._stopping:
            raise SinkUnavailable("the Kafka sink is not running")
        record = kafka_record(raw, event, received_at_ms)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def on_success(_metadata: Any) -> None:
            loop.call_soon_threadsafe(_resolve, done, None)

        def on_error(error: BaseException) -> None:
            loop.call_soon_threadsafe(_resolve, done, error)

        def send() -> None:  # on the kafka-send thread
            if done.done():  # the request already gave up (timeout): do not send late
                return
            producer = self._producer
            if producer is None:
                on_error(SinkUnavailable("not connected to Kafka yet"))
                return
            try:
                future = producer.send(
                    self._topic, value=record.value, key=record.key, headers=record.headers
                )
            except Exception as error:  # noqa: BLE001 - KafkaTimeoutError, closed producer...
                on_error(error)
                return
            future.add_callback(on_success)
            future.add_errback(on_error)

        try:
            executor.submit(send)
        except RuntimeError:  # executor shut down
            raise SinkUnavailable("the Kafka sink is stopping") from None
        try:
            async with asyncio.timeout(self._timeout_s):
                await done
        except TimeoutError:
            raise SinkUnavailable(
                f"the broker did not acknowledge the event within {self._timeout_s:g} s"
            ) from None
        except SinkUnavailable:
            raise
        except Exception as error:  # noqa: BLE001 - a Kafka error: the write did not happen
            reason = type(error).__name__
            raise SinkUnavailable(f"the broker refused the write ({reason})") from None
        finally:
            if not done.done() or done.cancelled() or done.exception() is not None:
                self._replace_if_wedged()

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
