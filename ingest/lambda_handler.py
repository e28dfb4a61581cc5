"""AWS Lambda behind API Gateway: the same verify-then-produce core, synchronously.

``handler(event, context)`` takes an API Gateway proxy event, REST API (payload format 1.0) or
HTTP API (2.0), plain or base64 body, header names in any case, and returns
``{"statusCode", "headers", "body"}``. One KafkaProducer per execution environment is created on
first use and reused across invocations; each accepted event is ``send(...).get(timeout)``:
200 only once the broker acknowledged it (acks=all), 503 when it did not in time.

Configuration is the same environment as the server (``ledger.settings.Settings.from_env``):
STRIPE_WEBHOOK_SECRET (comma-separated while rolling), LEDGER_KAFKA_BOOTSTRAP,
LEDGER_KAFKA_TOPIC, optional LEDGER_KAFKA_SECURITY_PROTOCOL=SSL for TLS listeners (MSK :9094).
Or, instead of STRIPE_WEBHOOK_SECRET, STRIPE_WEBHOOK_SECRET_ARN: the secret is read from AWS
Secrets Manager at run time (boto3, in the Lambda runtime), cached for SECRET_CACHE_S, so it
never sits in the function's configuration in plain text and a rotation needs no redeploy.

The same handler also takes Stripe events from Amazon EventBridge (issue 16), with no webhook
secret: an EventBridge event (a rule targeting the function directly) or an SQS batch (an event
source mapping on the rule's queue, with ReportBatchItemFailures). Their ``source`` must be one
of LEDGER_EVENTBRIDGE_SOURCES; the Stripe event in ``detail`` is checked by the one envelope
parser. An SQS batch answers ``{"batchItemFailures": [...]}`` naming every message that was not
a Stripe event from a configured source, or that the broker did not acknowledge: SQS keeps
those (and its redrive policy moves the poison ones to the DLQ) and deletes the rest. A direct
EventBridge event that fails raises, so that Lambda retries it and then hands it to the
function's on-failure destination.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping
from typing import Any

from kafka import KafkaProducer

from ingest.core import (
    PRODUCE_TIMEOUT_S,
    Rejection,
    accepted_body,
    body_too_large,
    error_body,
    verify_and_parse,
)
from ledger import kafka_wire, logs
from ledger.envelope import EnvelopeError, StripeEvent
from ledger.eventbridge import looks_like_eventbridge, parse_eventbridge, unwrap
from ledger.settings import WEBHOOK_SECRET_ARN_ENV, Settings, SettingsError, split_secrets

log = logs.get_logger("ingest.lambda")
SECRET_CACHE_S = 300.0  # a rotated secret is picked up within this; one read per 5 min at most


class SecretsManagerSecret:
    """The webhook secret(s) of a Secrets Manager secret (SecretString, comma-separated while
    rolling), read on first use and again once ``cache_s`` passed. When a refresh fails the
    last good value is kept (logged): Secrets Manager being slow must not refuse every event."""

    def __init__(
        self,
        arn: str,
        *,
        cache_s: float = SECRET_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert cache_s > 0
        self._arn = arn
        self._cache_s = cache_s
        self._clock = clock
        self._value: tuple[str, ...] = ()
        self._read_at = 0.0
        self._client: Any = None

    def __call__(self) -> tuple[str, ...]:
        if self._value and self._clock() - self._read_at < self._cache_s:
            return self._value
        try:
            value = self._read()
        except Exception as error:  # noqa: BLE001 - any failure: keep the last good value
            if not self._value:
                raise SettingsError(
                    f"{WEBHOOK_SECRET_ARN_ENV}: cannot read the secret ({type(error).__name__})"
                ) from None
            log.warning("webhook_secret_refresh_failed", error=type(error).__name__)
            return self._value
        self._value, self._read_at = value, self._clock()
        return value

    def _read(self) -> tuple[str, ...]:
        if self._client is None:
            import boto3  # in the Lambda runtime; needed only with a Secrets Manager secret

            self._client = boto3.client("secretsmanager")
        answer = self._client.get_secret_value(SecretId=self._arn)
        secrets = split_secrets(str(answer.get("SecretString") or ""))
        Settings(webhook_secrets=secrets).require_webhook_secrets()
        return secrets


def _response(status: int, body: bytes) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", "cache-control": "no-store"},
        "body": body.decode("utf-8"),
        "isBase64Encoded": False,
    }


def _headers(event: Mapping[str, Any]) -> dict[str, str]:
    """Header names lower-cased; REST (1.0) multiValueHeaders fill in what headers lack."""
    result: dict[str, str] = {}
    for name, value in (event.get("headers") or {}).items():
        if isinstance(name, str) and isinstance(value, str):
            result.setdefault(name.lower(), value)
    for name, values in (event.get("multiValueHeaders") or {}).items():
        if isinstance(name, str) and isinstance(values, list) and values:
            first = values[0]
            if isinstance(first, str):
                result.setdefault(name.lower(), first)
    return result


def _method(event: Mapping[str, Any]) -> str:
    if event.get("version") == "2.0":
        http = (event.get("requestContext") or {}).get("http") or {}
        return str(http.get("method", "")).upper()
    return str(event.get("httpMethod", "")).upper()


def _body(event: Mapping[str, Any], bytes_max: int) -> bytes:
    """The raw request body, bounded before decoding; Rejection on a bad or oversized one."""
    body = event.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise Rejection(400, "invalid_body", "the body is not a string")
    if event.get("isBase64Encoded"):
        if len(body) // 4 * 3 > bytes_max + 3:
            raise body_too_large(bytes_max)
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise Rejection(400, "invalid_body", "the body is not valid base64") from None
    else:
        if len(body) > bytes_max:  # each character is at least one byte
            raise body_too_large(bytes_max)
        raw = body.encode("utf-8")
    if len(raw) > bytes_max:
        raise body_too_large(bytes_max)
    return raw


class LambdaIngest:
    """The state kept across invocations of one execution environment."""

    def __init__(
        self,
        settings: Settings,
        *,
        produce_timeout_s: float = PRODUCE_TIMEOUT_S,
        secrets: Callable[[], tuple[str, ...]] | None = None,
    ):
        if secrets is None:
            settings.require_webhook_secrets()
            secrets = settings.require_webhook_secrets
        self._secrets = secrets
        self._settings = settings
        self._config = kafka_wire.producer_config(
            settings, max_block_ms=int(produce_timeout_s * 1000)
        )
        self._timeout_s = produce_timeout_s
        self._producer: KafkaProducer | None = None

    def _get_producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(**self._config)
        return self._producer

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(1)
            self._producer = None

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        received_at_ms = time.time_ns() // 1_000_000
        if _method(event) != "POST":
            return _response(405, error_body("method_not_allowed", "use POST"))
        settings = self._settings
        try:
            raw = _body(event, settings.body_bytes_max)
            stripe_event = verify_and_parse(
                raw,
                _headers(event).get("stripe-signature"),
                self._secrets(),
                tolerance_s=settings.webhook_tolerance_s,
                now_s=time.time(),
            )
        except Rejection as rejection:
            log.warning("webhook_rejected", reason=rejection.code, status=rejection.status)
            return _response(rejection.status, error_body(rejection.code, rejection.message))
        record = kafka_wire.kafka_record(raw, stripe_event, received_at_ms)
        try:
            producer = self._get_producer()
            kafka_wire.send(producer, settings.kafka_topic, record).get(timeout=self._timeout_s)
        except Exception as error:  # noqa: BLE001 - any Kafka failure: 503, Stripe retries
            log.warning(
                "webhook_rejected",
                reason="sink_unavailable",
                status=503,
                event_id=stripe_event.event_id,
                error=type(error).__name__,
            )
            return _response(
                503, error_body("sink_unavailable", "the broker did not acknowledge the event")
            )
        return _response(200, accepted_body(stripe_event))


_INGEST: LambdaIngest | None = None


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point (``ingest.lambda_handler.handler``)."""
    global _INGEST
    if is_sqs_batch(event) or looks_like_eventbridge(event):
        return _eventbridge_state().handle(event)
    if _INGEST is None:
        try:
            settings = Settings.from_env()
            logs.configure(settings.log_format, settings.log_level)
            _INGEST = _from_env(settings)
        except SettingsError as error:
            log.error("ingest_misconfigured", error=str(error))
            return _response(500, error_body("misconfigured", "the function is misconfigured"))
    return _INGEST.handle(event)


def _from_env(settings: Settings) -> LambdaIngest:
    arn = settings.webhook_secret_arn
    if not arn:
        return LambdaIngest(settings)
    if settings.webhook_secrets:
        raise SettingsError(f"set STRIPE_WEBHOOK_SECRET or {WEBHOOK_SECRET_ARN_ENV}, not both")
    source = SecretsManagerSecret(arn)
    source()  # read once now: a missing secret or permission shows on the first request
    return LambdaIngest(settings, secrets=source)


def _reset_for_tests() -> None:
    global _INGEST, _EVENTBRIDGE
    if _INGEST is not None:
        _INGEST.close()
    _INGEST = None
    if _EVENTBRIDGE is not None:
        _EVENTBRIDGE.close()
    _EVENTBRIDGE = None


# -- Amazon EventBridge: a direct rule target, or an SQS batch from the rule's queue -----------


class EventRejected(Exception):
    """A direct EventBridge event that is not a Stripe event from a configured source."""


class SinkUnavailable(Exception):
    """The broker did not acknowledge in time; Lambda retries the event."""


def is_sqs_batch(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, Mapping) else None
    return (
        isinstance(records, list)
        and bool(records)
        and isinstance(records[0], Mapping)
        and records[0].get("eventSource") == "aws:sqs"
    )


class LambdaEventBridge:
    """EventBridge events -> Kafka, acks=all. No webhook secret: trust is the partner source."""

    def __init__(self, settings: Settings, *, produce_timeout_s: float = PRODUCE_TIMEOUT_S):
        self._sources = settings.require_eventbridge_sources()
        self._topic = settings.kafka_topic
        self._config = kafka_wire.producer_config(
            settings,
            client_id="stripe-ledger-lambda-eventbridge",
            max_block_ms=int(produce_timeout_s * 1000),
        )
        self._timeout_s = produce_timeout_s
        self._producer: KafkaProducer | None = None

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(1)
            self._producer = None

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        if is_sqs_batch(event):
            return self.handle_sqs(event)
        return self.handle_eventbridge(event)

    def _send(self, events: list[StripeEvent]) -> list[bool]:
        """Produce each event like ingest does; True where the broker acknowledged it."""
        if not events:
            return []
        received_at_ms = time.time_ns() // 1_000_000
        try:
            if self._producer is None:
                self._producer = KafkaProducer(**self._config)
            futures = [
                kafka_wire.send(
                    self._producer, self._topic, kafka_wire.payload_record(event, received_at_ms)
                )
                for event in events
            ]
        except Exception as error:  # noqa: BLE001 - no producer, or it could not take a record
            log.warning("eventbridge_unacknowledged", error=type(error).__name__)
            return [False] * len(events)
        acknowledged = []
        for future in futures:
            try:
                future.get(timeout=self._timeout_s)
                acknowledged.append(True)
            except Exception as error:  # noqa: BLE001 - that one is retried by Lambda/SQS
                log.warning("eventbridge_unacknowledged", error=type(error).__name__)
                acknowledged.append(False)
        return acknowledged

    def handle_eventbridge(self, event: Mapping[str, Any]) -> dict[str, Any]:
        try:
            stripe_event = unwrap(dict(event), self._sources)
        except EnvelopeError as error:
            log.warning("eventbridge_rejected", reason=str(error))
            raise EventRejected(str(error)) from None
        if not self._send([stripe_event])[0]:
            raise SinkUnavailable("the broker did not acknowledge the event")
        return {"status": "accepted", "event_id": stripe_event.event_id}

    def handle_sqs(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Partial batch response: the ids of the messages SQS must keep."""
        failures: list[str] = []
        parsed: list[tuple[str, StripeEvent]] = []
        for record in event["Records"]:
            message_id = str(record.get("messageId", ""))
            body = record.get("body")
            try:
                raw = body.encode("utf-8") if isinstance(body, str) else b""
                parsed.append((message_id, parse_eventbridge(raw, self._sources)))
            except EnvelopeError as error:
                log.warning("eventbridge_rejected", reason=str(error), message_id=message_id)
                failures.append(message_id)
        acknowledged = self._send([stripe_event for _, stripe_event in parsed])
        failures += [
            message_id for (message_id, _), ok in zip(parsed, acknowledged, strict=True) if not ok
        ]
        return {"batchItemFailures": [{"itemIdentifier": item} for item in failures]}


_EVENTBRIDGE: LambdaEventBridge | None = None


def _eventbridge_state() -> LambdaEventBridge:
    global _EVENTBRIDGE
    if _EVENTBRIDGE is None:
        try:
            settings = Settings.from_env()
            logs.configure(settings.log_format, settings.log_level)
            _EVENTBRIDGE = LambdaEventBridge(settings)
        except SettingsError as error:
            log.error("eventbridge_misconfigured", error=str(error))
            raise RuntimeError("the function is misconfigured for EventBridge events") from None
    return _EVENTBRIDGE
