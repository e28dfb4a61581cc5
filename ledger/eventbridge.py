"""The Amazon EventBridge envelope around a Stripe event, for the doors that receive it.

Stripe's Event Destination of type ``amazon_eventbridge`` puts each event on a partner event
source ``aws.partner/stripe.com/ed_...``; EventBridge wraps it as
``{"version": "0", "id", "detail-type", "source", "account", "time", "region", "resources",
"detail": <the whole Stripe event>}``. There is no Stripe signature: trust comes from IAM and the
event source, so ``source`` must be one the operator configured. The Stripe event in ``detail``
goes through the same parser as every other door (``ledger.envelope``); its ``evt_`` id is the
identity, never the EventBridge ``id`` (EventBridge may deliver one event several times, each
time with the same detail).
"""

from __future__ import annotations

from typing import Any

from ledger.envelope import EnvelopeError, StripeEvent, decode_json, event_from_dict

PARTNER_SOURCE_PREFIX = "aws.partner/stripe.com/"
SOURCE_CHARS_MAX = 256  # EventBridge's limit on a source name
SOURCE_SHOWN_CHARS_MAX = 80  # how much of a refused source an error message repeats


def looks_like_eventbridge(value: Any) -> bool:
    """An EventBridge event (as a Lambda target receives it), not an API Gateway request."""
    return isinstance(value, dict) and "detail-type" in value and "detail" in value


def unwrap(value: Any, sources: tuple[str, ...]) -> StripeEvent:
    """A decoded EventBridge event -> the Stripe event in its detail, or EnvelopeError.

    ``sources``: the partner event sources accepted (exact names); anything else is refused."""
    assert sources, "no partner event source configured"
    if not isinstance(value, dict):
        raise EnvelopeError("message is not an EventBridge event (not a JSON object)")
    source = value.get("source")
    if not isinstance(source, str) or not source:
        raise EnvelopeError("EventBridge event has no 'source'")
    if source not in sources:
        shown = source[:SOURCE_SHOWN_CHARS_MAX]
        raise EnvelopeError(f"source {shown!r} is not a configured Stripe partner event source")
    detail = value.get("detail")
    if not isinstance(detail, dict):
        raise EnvelopeError("EventBridge event has no 'detail' object")
    return event_from_dict(detail)


def parse_eventbridge(raw: bytes, sources: tuple[str, ...]) -> StripeEvent:
    """Raw bytes of an EventBridge event (an SQS message body) -> the Stripe event."""
    return unwrap(decode_json(raw), sources)


def check_partner_sources(sources: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Each name must be a Stripe partner event source; ValueError naming ``what`` otherwise."""
    for source in sources:
        if not source.startswith(PARTNER_SOURCE_PREFIX) or len(source) > SOURCE_CHARS_MAX:
            raise ValueError(
                f"{what}: {source[:SOURCE_SHOWN_CHARS_MAX]!r} is not a Stripe partner event "
                f"source (aws.partner/stripe.com/ed_..., at most {SOURCE_CHARS_MAX} characters)"
            )
    return sources
