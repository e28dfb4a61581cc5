"""Verify-then-parse of one webhook request (the Kafka record made of it: ledger/kafka_wire.py).

Shared by every way of running ingest (the ASGI app, AWS Lambda) so that all of them accept and
refuse exactly the same requests with the same status codes and error codes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import orjson

from ingest.signature import SignatureError, verify
from ledger.envelope import EnvelopeError, StripeEvent, decode_json, event_from_dict

PRODUCE_TIMEOUT_S = 5.0  # the broker must acknowledge within this, else 503 (Stripe retries)
REQUESTS_IN_FLIGHT_MAX = 10_000  # webhook requests being served at once; beyond -> 503


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
    # orjson: the compact JSON that json.dumps gave (UTF-8 rather than \u escapes: the same
    # value) in a tenth of the time; every accepted request builds one.
    return orjson.dumps({"status": "accepted", "event_id": event.event_id})
