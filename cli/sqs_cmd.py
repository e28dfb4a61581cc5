"""``stripe-ledger consume-sqs``: Stripe events from Amazon EventBridge via an SQS queue.

Only the wiring lives here (the boto3 client, the sink, the flags); the worker is
``ledger.sqs_consumer``. The Kafka sink (``--via-kafka``) produces the records ingest produces
(ledger/kafka_wire.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from cli.errors import CommandError
from ledger import kafka_wire
from ledger.database import create_engine, require_migrated
from ledger.retry import TRANSIENT_DB_ERRORS
from ledger.settings import Settings, SettingsError
from ledger.sqs_consumer import (
    SQS_BATCH_MESSAGES_DEFAULT,
    SQS_BATCH_MESSAGES_MAX,
    SQS_VISIBILITY_TIMEOUT_S_DEFAULT,
    SQS_VISIBILITY_TIMEOUT_S_MAX,
    SQS_WAIT_TIME_S_MAX,
    BatchSink,
    SqsConsumer,
    SqsError,
    queue_name,
    region_from_queue_url,
    store_sink,
)
from ledger.store import AppendResult, DeadLetter, EventStore, Incoming, open_event_store

SQS_CONNECT_TIMEOUT_S = 5
SQS_READ_TIMEOUT_MARGIN_S = 10  # beyond the long poll's wait
SQS_CLIENT_ATTEMPTS_MAX = 3  # boto3's own retries per call; ours (backoff, logged) come after
DEFAULT_REGION = "us-east-1"  # for local servers (ElasticMQ) whose URL names no region

DESCRIPTION = """\
Receive Stripe events that Amazon EventBridge routed to an SQS queue (the Event Destination of
type amazon_eventbridge -> partner event source -> event bus -> rule -> queue), in long-polled
batches. Each message body is an EventBridge event: its 'source' must be a configured Stripe
partner event source, and its 'detail' is checked by the same envelope parser as every door
(the Stripe evt_ id is the identity). The batch is appended to the event store (default) or
produced to Kafka (--via-kafka, acks=all); only then are its messages deleted. A message that
is not a Stripe event from a configured source is recorded as a dead letter and left on the
queue, whose redrive policy moves it to the dead-letter queue. SIGTERM/SIGINT finish the batch
in flight and exit 0."""

EPILOG = """\
environment:
  LEDGER_EVENTBRIDGE_SOURCES  accepted partner event source(s), aws.partner/stripe.com/ed_...,
                              comma-separated (or --source)
  LEDGER_DATABASE_URL         the event store (also where dead letters go with --via-kafka)
  LEDGER_KAFKA_BOOTSTRAP      with --via-kafka
  AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID ...  boto3's usual credentials and region (an IAM
                              role on AWS); AWS_ENDPOINT_URL_SQS or --endpoint-url for another
                              SQS-compatible server
See docs/AWS.md."""


def _bounded_int(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def sqs_client(
    queue_url: str, endpoint_url: str | None, wait_time_s: int, region: str | None = None
) -> Any:
    """A boto3 SQS client, bounded in time; the region from the environment or the URL."""
    import boto3
    from botocore.config import Config

    # botocore's debug lines carry request headers (the access key id, signatures): never log
    # them, whatever LEDGER_LOG_LEVEL says.
    for name in ("boto3", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)

    # ``region``: Settings.aws_region (AWS_REGION, then AWS_DEFAULT_REGION), else the queue's.
    region = region or region_from_queue_url(queue_url) or DEFAULT_REGION
    config = Config(
        connect_timeout=SQS_CONNECT_TIMEOUT_S,
        read_timeout=wait_time_s + SQS_READ_TIMEOUT_MARGIN_S,
        retries={"max_attempts": SQS_CLIENT_ATTEMPTS_MAX, "mode": "standard"},
        max_pool_connections=4,
    )
    return boto3.client("sqs", region_name=region, endpoint_url=endpoint_url, config=config)


def _kafka_batch_sink(settings: Settings, store: EventStore, topic: str) -> tuple[BatchSink, Any]:
    """Events to Kafka (acks=all, every record acknowledged), dead letters to the store."""
    producer = kafka_wire.new_producer(settings, client_id="stripe-ledger-consume-sqs")

    def sink(incoming: Sequence[Incoming], dead: Sequence[DeadLetter]) -> AppendResult:
        if incoming:
            kafka_wire.produce_acknowledged(
                producer,
                topic,
                [item.event for item in incoming],
                received_at_ms=kafka_wire.now_ms(),
            )
        dead_lettered = store.append([], dead=dead).dead_lettered if dead else 0
        return AppendResult(appended=len(incoming), duplicates=0, dead_lettered=dead_lettered)

    return sink, producer


def _sources(args: argparse.Namespace, settings: Settings) -> tuple[str, ...]:
    if args.source:
        settings = dataclasses.replace(settings, eventbridge_sources=tuple(args.source))
    return settings.require_eventbridge_sources()


def cmd_consume_sqs(args: argparse.Namespace, settings: Settings) -> int:
    sources = _sources(args, settings)
    try:
        queue_name(args.queue_url)
    except SqsError as error:
        raise SettingsError(f"--queue-url: {error}") from None
    engine = create_engine(settings.database_url, create=False)
    store = open_event_store(engine)
    producer = None
    transient: tuple[type[BaseException], ...] = TRANSIENT_DB_ERRORS
    if args.via_kafka:
        from kafka.errors import KafkaTimeoutError, RetriableError

        settings.require_kafka()
        sink, producer = _kafka_batch_sink(settings, store, args.topic or settings.kafka_topic)
        transient = (*TRANSIENT_DB_ERRORS, KafkaTimeoutError, RetriableError)
    else:
        sink = store_sink(store)
    consumer = SqsConsumer(
        sqs_client(args.queue_url, args.endpoint_url, args.wait_time, settings.aws_region),
        args.queue_url,
        sources,
        sink,
        sink_transient=transient,
        batch_messages_max=args.batch,
        wait_time_s=args.wait_time,
        visibility_timeout_s=args.visibility_timeout,
    )
    consumer.install_signal_handlers()
    try:
        require_migrated(engine, wait=consumer.stop)
        if not consumer.stop.is_set() and consumer.check_queue() is not None:
            consumer.run(until_idle_s=args.until_idle)
    except SqsError as error:
        raise CommandError(str(error)) from None
    finally:
        if producer is not None:
            producer.close(10)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "consume-sqs",
        help="append Stripe events from Amazon EventBridge via an SQS queue (long-running)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--queue-url", required=True, metavar="URL", help="the SQS queue URL")
    parser.add_argument(
        "--source",
        action="append",
        metavar="NAME",
        help="accepted partner event source, aws.partner/stripe.com/ed_... (repeatable; "
        "default LEDGER_EVENTBRIDGE_SOURCES)",
    )
    parser.add_argument(
        "--via-kafka",
        action="store_true",
        help="produce the events to Kafka (acks=all) instead of appending them to the store",
    )
    parser.add_argument("--topic", help="with --via-kafka: the topic (default LEDGER_KAFKA_TOPIC)")
    parser.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="another SQS-compatible endpoint, e.g. a local ElasticMQ "
        "(default: boto3's, AWS_ENDPOINT_URL_SQS)",
    )
    bounded = (
        ("--batch", 1, SQS_BATCH_MESSAGES_MAX, SQS_BATCH_MESSAGES_DEFAULT, "N",
         f"messages per append, received ten per call (default {SQS_BATCH_MESSAGES_DEFAULT})"),
        ("--wait-time", 0, SQS_WAIT_TIME_S_MAX, SQS_WAIT_TIME_S_MAX, "SECONDS",
         f"long poll of each receive (default {SQS_WAIT_TIME_S_MAX})"),
        ("--visibility-timeout", 1, SQS_VISIBILITY_TIMEOUT_S_MAX,
         SQS_VISIBILITY_TIMEOUT_S_DEFAULT, "SECONDS",
         "messages received stay invisible this long, extended while their batch is in "
         f"flight (default {SQS_VISIBILITY_TIMEOUT_S_DEFAULT})"),
    )  # fmt: skip
    for flag, low, high, default, metavar, text in bounded:
        parser.add_argument(
            flag, type=_bounded_int(low, high), default=default, metavar=metavar, help=text
        )
    parser.add_argument(
        "--until-idle",
        type=float,
        metavar="SECONDS",
        help="exit after SECONDS with no message (for batch runs and tests)",
    )
    parser.set_defaults(handler=cmd_consume_sqs)
