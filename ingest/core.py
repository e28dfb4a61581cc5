"""Verify-then-parse of one webhook request, and the Kafka record made of it.

Shared by every way of running ingest (the ASGI app, AWS Lambda) so that all of them accept and
refuse exactly the same requests with the same status codes and error codes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingest.signature import SignatureError, verify
from ledger.envelope import EnvelopeError, StripeEvent, decode_json, event_from_dict
from ledger.settings import Settings, SettingsError

PRODUCE_TIMEOUT_S = 5.0  # the broker must acknowledge within this, else 503 (Stripe retries)
REQUESTS_IN_FLIGHT_MAX = 10_000  # webhook requests being served at once; beyond -> 503
# Send at once: while a send is in flight the next records gather anyway (batching under load
# is natural). 5 ms of linger added ~5 ms to every answer: p50 at 500 req/s 8-12 -> 4-7 ms
# (docs/PERFORMANCE.md) with the same throughput.
KAFKA_LINGER_MS = 0
KAFKA_BOOTSTRAP_TIMEOUT_MS = 5_000
KAFKA_REQUEST_TIMEOUT_MS = 10_000
KAFKA_DELIVERY_TIMEOUT_MS = 30_000
PLATFORM_KEY = "platform"  # the record key of events of the platform account (account null)
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL")


class Rejection(Exception):
    """A request we answer with an error: HTTP status, a stable code, a short safe message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def body_too_large(limit_bytes: int) -> Rejection:
    return Rejection(413, "body_too_large", f"the body is larger than {limit_bytes} bytes")


def verify_and_parse(
    raw: bytes,
    signature_header: str | None,
    secrets: Sequence[str],
    *,
    tolerance_s: int,
    now_s: float,
) -> StripeEvent:
    """The raw body and its Stripe-Signature -> the event, or Rejection (400).

    The signature is checked first, on the raw bytes; only a signed body is parsed.
    """
    try:
        verify(raw, signature_header, secrets, tolerance_s=tolerance_s, now_s=now_s)
    except SignatureError as error:
        raise Rejection(400, error.code, error.message) from None
    try:
        value = decode_json(raw)
    except EnvelopeError as error:
        raise Rejection(400, "invalid_json", str(error)) from None
    try:
        return event_from_dict(value, raw)
    except EnvelopeError as error:
        raise Rejection(400, "not_a_stripe_event", str(error)) from None


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": code, "message": message}, separators=(",", ":")).encode()


def accepted_body(event: StripeEvent) -> bytes:
    return json.dumps(
        {"status": "accepted", "event_id": event.event_id}, separators=(",", ":")
    ).encode()


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """What goes on the topic: the raw body as received, keyed by Stripe account."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def kafka_record(raw: bytes, event: StripeEvent, received_at_ms: int) -> KafkaRecord:
    return KafkaRecord(
        key=(event.account or PLATFORM_KEY).encode("utf-8"),
        value=raw,
        headers=[
            ("received_at_ms", str(received_at_ms).encode("ascii")),
            ("event_id", event.event_id.encode("utf-8")),
        ],
    )


def security_protocol() -> str:
    """LEDGER_KAFKA_SECURITY_PROTOCOL: PLAINTEXT (default) or SSL (e.g. Amazon MSK on 9094)."""
    value = os.environ.get("LEDGER_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper() or "PLAINTEXT"
    if value not in SECURITY_PROTOCOLS:
        raise SettingsError(
            f"LEDGER_KAFKA_SECURITY_PROTOCOL must be PLAINTEXT or SSL, got {value!r}"
        )
    return value


def producer_config(settings: Settings, *, max_block_ms: int = 5_000) -> dict[str, Any]:
    """kafka-python KafkaProducer options: idempotent, acks=all, bounded in time."""
    return {
        "bootstrap_servers": [
            part.strip() for part in settings.require_kafka().split(",") if part.strip()
        ],
        "client_id": "stripe-ledger-ingest",
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": KAFKA_LINGER_MS,
        "max_block_ms": max_block_ms,
        "bootstrap_timeout_ms": KAFKA_BOOTSTRAP_TIMEOUT_MS,
        "request_timeout_ms": KAFKA_REQUEST_TIMEOUT_MS,
        "delivery_timeout_ms": KAFKA_DELIVERY_TIMEOUT_MS,
        # The raw body plus headers: room for a body at the configured limit.
        "max_request_size": max(1024 * 1024, settings.body_bytes_max + 64 * 1024),
        "security_protocol": security_protocol(),
    }
