"""consume-sqs: Stripe events from Amazon EventBridge, through an SQS queue, into the ledger.

The standard AWS shape is EventBridge rule -> SQS queue (redrive policy to a DLQ) -> workers.
A batch is received with long polls (up to ``batch_messages_max`` messages, ten per call),
each body is unwrapped (``ledger.eventbridge``: configured partner source, then the one Stripe
envelope parser), the batch goes to the sink (the event store, or Kafka with acks=all) and only
then are its messages deleted. So:

- a crash at any instruction loses nothing: an undeleted message comes back after its
  visibility timeout; and stores nothing twice: the store keeps each ``evt_`` id once (a message
  stored but not yet deleted is a counted duplicate when it comes back);
- a message that is not a Stripe event from a configured source (poison) is recorded as a dead
  letter and NOT deleted: the queue's redrive policy moves it to the DLQ after its
  maxReceiveCount receives. Its dead letter is keyed by the message id, so its receives record
  it once;
- while a batch is in flight (the database away and retried, a slow commit), a helper thread
  extends the visibility of its messages, so another worker does not receive them meanwhile;
- SIGTERM finishes the batch in flight (stored and deleted), then exits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from ledger.envelope import EnvelopeError
from ledger.eventbridge import parse_eventbridge
from ledger.logs import get_logger
from ledger.retry import TRANSIENT_DB_ERRORS, retrying, stop_on_signals
from ledger.store import AppendResult, DeadLetter, EventStore, Incoming, KafkaCoordinates

SQS_RECEIVE_MESSAGES_MAX = 10  # the API's limit per ReceiveMessage / DeleteMessageBatch call
SQS_WAIT_TIME_S_MAX = 20  # the API's longest long poll
SQS_VISIBILITY_TIMEOUT_S_MAX = 12 * 3600  # the API's limit
SQS_BATCH_MESSAGES_MAX = 1000  # messages per append (and per visibility heartbeat)
SQS_BATCH_MESSAGES_DEFAULT = 100
SQS_VISIBILITY_TIMEOUT_S_DEFAULT = 60
# The heartbeat extends a batch's visibility this many times per timeout: one late call
# still leaves the messages invisible.
VISIBILITY_EXTENSIONS_PER_TIMEOUT = 3
# Dead letters of SQS messages: "topic" names the queue, partition 0, and "offset" is 63 bits of
# the SHA-256 of the message id, so that a poison message's receives record it once (the
# dead_letters table is unique on those coordinates).
DEAD_LETTER_TOPIC_PREFIX = "sqs:"
DEAD_LETTER_TOPIC_CHARS_MAX = 255
ERROR_CHARS_MAX = 300  # of an error, in a log line
QUEUE_URL_SHOWN_CHARS_MAX = 200  # of a malformed queue URL, in the error that refuses it
RECEIVE_COUNT_ATTRIBUTE = "ApproximateReceiveCount"
SENT_AT_ATTRIBUTE = "SentTimestamp"
# ClientError codes that mean "try again later", beside any HTTP 5xx.
_TRANSIENT_CLIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "KMSThrottling",
    }
)
log = get_logger("ledger.sqs")


class SqsError(ValueError):
    """The queue cannot be consumed (does not exist, access denied, bad URL): a clear line."""


class SqsUnavailable(Exception):
    """A transient failure of the SQS API (throttled, 5xx) after boto3's own retries."""


SQS_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    BotoConnectionError,
    HTTPClientError,
    SqsUnavailable,
)
_SQS_ERRORS: tuple[type[BaseException], ...] = (*SQS_TRANSIENT_ERRORS, SqsError)

# (events, dead letters) -> what was stored; raises on failure (transient ones are retried).
BatchSink = Callable[[Sequence[Incoming], Sequence[DeadLetter]], AppendResult]


def store_sink(store: EventStore) -> BatchSink:
    """Events and dead letters of a batch in ONE transaction of the event store."""

    def sink(incoming: Sequence[Incoming], dead: Sequence[DeadLetter]) -> AppendResult:
        return store.append(incoming, dead=dead)

    return sink


def queue_name(queue_url: str) -> str:
    """The last path segment of a queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)."""
    parsed = urlparse(queue_url)
    name = parsed.path.rstrip("/").rsplit("/", 1)[-1]
    if parsed.scheme not in ("http", "https") or not parsed.netloc or not name:
        raise SqsError(f"not an SQS queue URL: {queue_url[:QUEUE_URL_SHOWN_CHARS_MAX]!r}")
    return name


def region_from_queue_url(queue_url: str) -> str | None:
    """us-east-1 from https://sqs.us-east-1.amazonaws.com/...; None for other hosts."""
    host = urlparse(queue_url).hostname or ""
    parts = host.split(".")
    if len(parts) >= 4 and parts[0] == "sqs" and parts[2] == "amazonaws":
        return parts[1]
    return None


def _sqs_call(action: Callable[[], Any]) -> Any:
    """Run one SQS call; a throttling or 5xx ClientError becomes SqsUnavailable (retried),
    any other ClientError an SqsError (a wrong queue URL or missing permission)."""
    try:
        return action()
    except (BotoConnectionError, HTTPClientError):
        raise  # the network: retried by the caller
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if status >= 500 or code in _TRANSIENT_CLIENT_CODES:
            raise SqsUnavailable(f"{code or status}: {error}") from None
        raise SqsError(f"SQS refused the request ({code or status}): {error}") from None
    except BotoCoreError as error:  # no credentials or region, a bad endpoint URL ...
        raise SqsError(f"the SQS client cannot make the request: {error}") from None


@dataclass
class SqsStats:
    batches: int = 0
    messages: int = 0
    appended: int = 0
    duplicates: int = 0
    dead_lettered: int = 0  # new dead-letter rows (a poison message's later receives add none)
    poison_receives: int = 0  # receives of poison messages, each left for the redrive to the DLQ
    deleted: int = 0
    delete_failures: int = 0  # stored but not deleted: will come back as counted duplicates


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    incoming: list[Incoming]
    dead: list[DeadLetter]
    stored_receipts: list[str]  # deleted once the sink has them
    poison_receipts: list[str]  # left on the queue for its redrive policy


def _sent_at(message: dict[str, Any]) -> dt.datetime:
    """When EventBridge put the message on the queue (SentTimestamp), else now."""
    raw: Any = (message.get("Attributes") or {}).get(SENT_AT_ATTRIBUTE)
    try:
        return dt.datetime.fromtimestamp(int(raw) / 1000, dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return dt.datetime.now(dt.UTC)


def dead_letter_coordinates(queue: str, message_id: str) -> KafkaCoordinates:
    digest = hashlib.sha256(message_id.encode("utf-8")).digest()
    offset = int.from_bytes(digest[:8], "big") & (2**63 - 1)
    topic = (DEAD_LETTER_TOPIC_PREFIX + queue)[:DEAD_LETTER_TOPIC_CHARS_MAX]
    return KafkaCoordinates(topic, 0, offset)


def decode_messages(
    messages: Sequence[dict[str, Any]], sources: tuple[str, ...], queue: str
) -> DecodedBatch:
    """SQS messages -> events to store and dead letters (bodies that are not Stripe events
    from a configured partner source)."""
    batch = DecodedBatch([], [], [], [])
    for message in messages:
        body = message.get("Body")
        raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else b""
        received_at = _sent_at(message)
        try:
            event = parse_eventbridge(raw, sources)
        except EnvelopeError as error:
            where = dead_letter_coordinates(queue, str(message.get("MessageId", "")))
            batch.dead.append(DeadLetter(raw, str(error), received_at, where))
            batch.poison_receipts.append(message["ReceiptHandle"])
            continue
        # "webhook": pushed by Stripe (the schema's sources are webhook, import, backfill).
        batch.incoming.append(Incoming(event, "webhook", received_at))
        batch.stored_receipts.append(message["ReceiptHandle"])
    return batch


def _chunks(items: Sequence[str], items_max: int = SQS_RECEIVE_MESSAGES_MAX) -> Iterator[list[str]]:
    for start in range(0, len(items), items_max):
        yield list(items[start : start + items_max])


class SqsConsumer:
    """One worker on one queue; ``run`` returns when stopped (SIGTERM) or idle."""

    def __init__(
        self,
        client: Any,  # a boto3 SQS client
        queue_url: str,
        sources: tuple[str, ...],
        sink: BatchSink,
        *,
        sink_transient: tuple[type[BaseException], ...] = TRANSIENT_DB_ERRORS,
        batch_messages_max: int = SQS_BATCH_MESSAGES_DEFAULT,
        wait_time_s: int = SQS_WAIT_TIME_S_MAX,
        visibility_timeout_s: int = SQS_VISIBILITY_TIMEOUT_S_DEFAULT,
    ) -> None:
        assert sources, "no partner event source configured"
        assert 0 < batch_messages_max <= SQS_BATCH_MESSAGES_MAX, batch_messages_max
        assert 0 <= wait_time_s <= SQS_WAIT_TIME_S_MAX, wait_time_s
        assert 0 < visibility_timeout_s <= SQS_VISIBILITY_TIMEOUT_S_MAX, visibility_timeout_s
        self.client = client
        self.queue_url = queue_url
        self.queue = queue_name(queue_url)
        self.sources = sources
        self.sink = sink
        self.sink_transient = sink_transient
        self.batch_messages_max = batch_messages_max
        self.wait_time_s = wait_time_s
        self.visibility_timeout_s = visibility_timeout_s
        self.stop = threading.Event()
        self.stats = SqsStats()

    def install_signal_handlers(self) -> None:
        stop_on_signals(self.stop)

    def _api(self, action: Callable[[], Any]) -> Any:
        """One SQS call, retried with backoff while the queue is unreachable; None if stopped."""
        return retrying(
            "sqs queue", lambda: _sqs_call(action), self.stop, transient=SQS_TRANSIENT_ERRORS
        )

    def check_queue(self) -> dict[str, str] | None:
        """The queue's attributes (it exists and we may read it); warns without a redrive
        policy, since poison messages would then come back forever. None when stopped."""
        attributes = self._api(
            lambda: self.client.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["QueueArn", "RedrivePolicy"]
            )
        )
        if attributes is None:
            return None
        found: dict[str, str] = attributes.get("Attributes") or {}
        if "RedrivePolicy" not in found:
            log.warning(
                "no_redrive_policy",  # poison comes back forever: give the queue a DLQ
                fix="a dead-letter queue (deploy/aws/eventbridge.yaml has one)",
                queue=self.queue,
            )
        return found

    def run(self, until_idle_s: float | None = None) -> SqsStats:
        log.info("consuming", queue=self.queue, sources=list(self.sources))
        idle_since = time.monotonic()
        while not self.stop.is_set():
            messages = self._receive_batch()
            if messages:
                self._process(messages)
                idle_since = time.monotonic()
            elif until_idle_s is not None and time.monotonic() - idle_since >= until_idle_s:
                log.info("idle_exit", idle_s=round(time.monotonic() - idle_since, 1))
                break
        log.info("sqs_consumer_stopped", **vars(self.stats))
        return self.stats

    def _receive(self, messages_max: int, wait_s: int) -> list[dict[str, Any]] | None:
        response = self._api(
            lambda: self.client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=messages_max,
                WaitTimeSeconds=wait_s,
                VisibilityTimeout=self.visibility_timeout_s,
                MessageSystemAttributeNames=[RECEIVE_COUNT_ATTRIBUTE, SENT_AT_ATTRIBUTE],
            )
        )
        return None if response is None else list(response.get("Messages") or [])

    def _receive_batch(self) -> list[dict[str, Any]]:
        """Up to batch_messages_max messages: one long poll, then short ones while they come."""
        messages: list[dict[str, Any]] = []
        wait_s = self.wait_time_s
        while len(messages) < self.batch_messages_max and not self.stop.is_set():
            messages_max = min(SQS_RECEIVE_MESSAGES_MAX, self.batch_messages_max - len(messages))
            got = self._receive(messages_max, wait_s)
            if not got:  # None: stopped while the queue was away; what we have is processed
                break
            messages.extend(got)
            wait_s = 0
        return messages

    def _process(self, messages: list[dict[str, Any]]) -> None:
        batch = decode_messages(messages, self.sources, self.queue)
        with self._kept_invisible([m["ReceiptHandle"] for m in messages]):
            result = retrying(
                "event sink",
                lambda: self.sink(batch.incoming, batch.dead),
                self.stop,
                transient=self.sink_transient,
            )
        if result is None:  # stopped while the sink was away: nothing deleted, nothing lost
            log.info("stopped_before_store", messages="will come back")
            return
        deleted = self._delete(batch.stored_receipts)
        stats = self.stats
        stats.batches += 1
        stats.messages += len(messages)
        stats.appended += result.appended
        stats.duplicates += result.duplicates
        stats.dead_lettered += result.dead_lettered
        stats.poison_receives += len(batch.dead)
        stats.deleted += deleted
        stats.delete_failures += len(batch.stored_receipts) - deleted
        log.info(
            "sqs_batch_stored",
            messages=len(messages),
            appended=result.appended,
            duplicates=result.duplicates,
            dead_lettered=result.dead_lettered,
            deleted=deleted,
            left_for_redrive=len(batch.poison_receipts),
        )
        for letter in batch.dead:
            log.warning("poison_left_for_redrive", error=letter.error)

    def _delete(self, receipts: Sequence[str]) -> int:
        """Delete stored messages, ten per call; returns how many SQS confirmed. A failure
        is not an error: the message comes back and is stored as a counted duplicate."""
        deleted = 0
        for chunk in _chunks(receipts):
            entries = [{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(chunk)]
            response = self._api(
                partial(self.client.delete_message_batch, QueueUrl=self.queue_url, Entries=entries)
            )
            if response is None:
                break
            deleted += len(response.get("Successful") or [])
            for failure in response.get("Failed") or []:
                log.warning("delete_failed", code=failure.get("Code"))
        return deleted

    @contextmanager
    def _kept_invisible(self, receipts: list[str]) -> Iterator[None]:
        """While the body runs, extend the messages' visibility every timeout/3."""
        done = threading.Event()
        interval_s = self.visibility_timeout_s / VISIBILITY_EXTENSIONS_PER_TIMEOUT

        def beat() -> None:
            while not done.wait(interval_s):
                self._extend_visibility(receipts)

        thread = threading.Thread(target=beat, name="sqs-visibility", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _extend_visibility(self, receipts: list[str]) -> None:
        for chunk in _chunks(receipts):
            entries = [
                {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": self.visibility_timeout_s}
                for i, r in enumerate(chunk)
            ]
            try:
                self.client.change_message_visibility_batch(
                    QueueUrl=self.queue_url, Entries=entries
                )
            except (*_SQS_ERRORS, ClientError) as error:  # the next beat tries again
                log.warning("visibility_extension_failed", error=str(error)[:ERROR_CHARS_MAX])
                return
        log.info("visibility_extended", messages=len(receipts), seconds=self.visibility_timeout_s)
