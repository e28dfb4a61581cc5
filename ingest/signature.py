"""Stripe webhook signatures: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...][,v0=<hex>]``.

The signed payload is ``b"<t>." + raw_body`` and each ``v1`` is the hex HMAC-SHA256 of it keyed
with the whole endpoint secret string (``whsec_...``, the prefix included), exactly as
``stripe.WebhookSignature`` computes and checks it. Differences from the library, all stricter
or bounded:

- the MAC is computed over the raw body bytes (the library decodes them as UTF-8 first; for a
  UTF-8 body both give the same bytes, and a non-UTF-8 body is refused later anyway);
- ``t`` must be 1 to 12 ASCII digits; the first ``t`` counts (as in the library);
- a timestamp more than ``tolerance_s`` in the future is refused too (the library only bounds
  the past), so a leaked signed request cannot be replayed later by post-dating it;
- the header is at most ``SIGNATURE_HEADER_CHARS_MAX`` characters and only the first
  ``SIGNATURE_V1_ENTRIES_MAX`` ``v1`` entries are compared, so the work per request is bounded
  whatever the header holds: at most ``len(secrets) * SIGNATURE_V1_ENTRIES_MAX`` constant-time
  comparisons and one HMAC per secret.

``v0`` entries (a legacy test-mode scheme) and unknown keys are ignored. Nothing here logs or
returns a secret, a signature or the header: errors carry a short code and a fixed message.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

SIGNATURE_HEADER_CHARS_MAX = 8 * 1024
SIGNATURE_V1_ENTRIES_MAX = 32
SIGNATURE_HEX_CHARS = 64  # hex SHA-256
TIMESTAMP_DIGITS_MAX = 12
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class SignatureError(ValueError):
    """The request is not signed by any of our secrets. ``code`` is a stable, safe reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ParsedSignature:
    timestamp: int
    v1: tuple[str, ...]  # at most SIGNATURE_V1_ENTRIES_MAX, each 64 hex characters


def parse_header(header: str | None) -> ParsedSignature:
    """The header -> timestamp and the v1 signatures to compare, or SignatureError."""
    if header is None or header == "":
        raise SignatureError("missing_signature", "the Stripe-Signature header is missing")
    if len(header) > SIGNATURE_HEADER_CHARS_MAX:
        raise SignatureError(
            "malformed_signature",
            f"the Stripe-Signature header is longer than {SIGNATURE_HEADER_CHARS_MAX} characters",
        )
    timestamp: int | None = None
    v1: list[str] = []
    # Bounded: the header is at most 8 KiB, so split() makes at most ~4K short items.
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if timestamp is None:
                if not (
                    0 < len(value) <= TIMESTAMP_DIGITS_MAX and value.isascii() and value.isdigit()
                ):
                    raise SignatureError(
                        "malformed_signature", "the Stripe-Signature timestamp is not a number"
                    )
                timestamp = int(value)
        elif key == "v1" and len(v1) < SIGNATURE_V1_ENTRIES_MAX:
            # A value that is not 64 hex digits can never match a hex SHA-256: skip it, but
            # count it, so that a flood of junk entries is bounded the same way.
            v1.append(value)
    if timestamp is None:
        raise SignatureError("malformed_signature", "the Stripe-Signature header has no timestamp")
    if not v1:
        raise SignatureError(
            "no_v1_signature",
            "the Stripe-Signature header has no v1 signature (v0 is not accepted)",
        )
    candidates = tuple(
        value for value in v1 if len(value) == SIGNATURE_HEX_CHARS and _HEX_DIGITS.issuperset(value)
    )
    return ParsedSignature(timestamp=timestamp, v1=candidates)


def compute_signature(timestamp: int, payload: bytes, secret: str) -> str:
    """Hex HMAC-SHA256 of ``b"<timestamp>." + payload`` keyed with the secret string."""
    signed = str(timestamp).encode("ascii") + b"." + payload
    # hmac.digest is OpenSSL's one-shot HMAC: the same bytes as hmac.new(...).digest() without
    # building an HMAC object (~40% of this function's CPU in ingest's profile, issue 21).
    return hmac.digest(secret.encode("utf-8"), signed, "sha256").hex()


def verify(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    tolerance_s: int,
    now_s: float,
) -> int:
    """Check the header against every secret; return the signed timestamp or raise SignatureError.

    Accepts when any considered v1 matches any secret (secret rolling: during a roll Stripe
    signs with both the old and the new secret, and we may hold either or both). The timestamp
    must lie within ``[now - tolerance_s, now + tolerance_s]``.
    """
    if not secrets:
        raise SignatureError("signature_mismatch", "no webhook secret is configured")
    parsed = parse_header(header)
    matched = False
    for secret in secrets:
        expected = compute_signature(parsed.timestamp, payload, secret).encode("ascii")
        for candidate in parsed.v1:
            # Both are ASCII (checked hex); compare_digest on bytes is constant time.
            if hmac.compare_digest(expected, candidate.encode("ascii")):
                matched = True
    if not matched:
        raise SignatureError(
            "signature_mismatch", "no v1 signature matches the payload for any configured secret"
        )
    if parsed.timestamp < now_s - tolerance_s:
        raise SignatureError(
            "timestamp_outside_tolerance",
            f"the signature timestamp is more than {tolerance_s} s in the past",
        )
    if parsed.timestamp > now_s + tolerance_s:
        raise SignatureError(
            "timestamp_outside_tolerance",
            f"the signature timestamp is more than {tolerance_s} s in the future",
        )
    return parsed.timestamp
