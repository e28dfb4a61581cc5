"""Stripe API version differences, handled in ONE place.

Every event payload goes through ``upcast`` before any projection sees it, so projections only
ever read the newest shape. An upcaster is registered for the API version that CHANGED a shape
and applies to events written with an older ``api_version``. Each upcaster is also guarded by the
shape itself (it only rewrites the old form when it is present), so it is idempotent and safe on
events whose ``api_version`` is unknown (null: the stripe-ruby-mock and OpenAPI fixtures), which
get every upcaster.

Versions compare as strings: Stripe versions are ``YYYY-MM-DD`` optionally followed by a release
name (``2025-03-31.basil``), so string order is date order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]
# Rewrites a copy of the event in place: the event, its ``data`` and ``data.object`` are
# (shallow) copies, so an upcaster may set, pop and replace keys at those three levels and
# must never mutate anything below them (it builds new values instead).
Upcaster = Callable[[Payload], None]


def _object(event: Payload) -> Payload:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    return obj if isinstance(obj, dict) else {}


def request_as_object(event: Payload) -> None:
    """2017-05-25: ``request`` became {id, idempotency_key} (it was the request id string)."""
    request = event.get("request")
    if isinstance(request, str) or request is None and "request" in event:
        event["request"] = {"id": request, "idempotency_key": None}


def charge_amount_captured(event: Payload) -> None:
    """2019-02-19 (and earlier snapshots without it): ``charge.amount_captured`` is derived from
    ``captured``/``amount`` when absent: a captured charge captured its full amount."""
    obj = _object(event)
    if obj.get("object") != "charge" or "amount_captured" in obj:
        return
    # Charges of 2012-2014 have no `captured` either: then `paid` says the money moved.
    flag = obj.get("captured") if "captured" in obj else obj.get("paid")
    captured = flag is True and obj.get("status") in ("succeeded", "paid", None)
    obj["amount_captured"] = obj.get("amount", 0) if captured else 0


def charge_refunds_exclude_released(event: Payload) -> None:
    """2025-03-31.basil: ``amount_refunded`` no longer counts the part of an authorization that a
    partial capture released (before, a charge of 1000 captured for 600 said amount_refunded
    400 with nothing refunded). Only for events that NAME an older version: the shape alone
    cannot tell the two meanings apart, so an unknown version is read as the newest."""
    obj = _object(event)
    if obj.get("object") != "charge" or not isinstance(event.get("api_version"), str):
        return
    values = [obj.get(name) for name in ("amount", "amount_captured", "amount_refunded")]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return
    amount, captured, refunded = (int(v) for v in values)  # type: ignore[arg-type]
    if obj.get("captured") is True and 0 < captured < amount:
        obj["amount_refunded"] = max(0, refunded - (amount - captured))
    elif obj.get("captured") is False:  # released without capture: nothing was refunded
        obj["amount_refunded"] = 0


def invoice_payments_and_parent(event: Payload) -> None:
    """2025-03-31.basil: ``invoice.charge``/``invoice.payment_intent`` moved to
    ``invoice.payments`` (InvoicePayment objects) and ``invoice.subscription`` moved to
    ``invoice.parent.subscription_details.subscription``."""
    obj = _object(event)
    if obj.get("object") != "invoice":
        return
    if "charge" in obj or "payment_intent" in obj:
        charge = obj.pop("charge", None)
        payment_intent = obj.pop("payment_intent", None)
        if "payments" not in obj:
            data = []
            if charge is not None or payment_intent is not None:
                payment: Payload = (
                    {"type": "payment_intent", "payment_intent": payment_intent}
                    if payment_intent is not None
                    else {"type": "charge", "charge": charge}
                )
                data.append({"object": "invoice_payment", "payment": payment})
            obj["payments"] = {"object": "list", "data": data, "has_more": False}
    if "subscription" in obj:
        subscription = obj.pop("subscription")
        if "parent" not in obj:
            obj["parent"] = (
                {
                    "type": "subscription_details",
                    "subscription_details": {"subscription": subscription},
                }
                if subscription is not None
                else None
            )


def dispute_legacy_status(event: Payload) -> None:
    """Before 2017-05-25 a dispute could be ``charge_refunded``; the newest API closes such
    disputes as ``warning_closed``."""
    obj = _object(event)
    if obj.get("object") == "dispute" and obj.get("status") == "charge_refunded":
        obj["status"] = "warning_closed"


# (version that introduced the newer shape, upcaster) in version order. Read as a table.
UPCASTERS: tuple[tuple[str, Upcaster], ...] = (
    ("2017-05-25", request_as_object),
    ("2017-05-25", dispute_legacy_status),
    ("2019-02-19", charge_amount_captured),
    ("2025-03-31.basil", charge_refunds_exclude_released),
    ("2025-03-31.basil", invoice_payments_and_parent),
)


def applicable(api_version: str | None) -> list[Upcaster]:
    """The upcasters an event of ``api_version`` needs, oldest change first."""
    return [fn for version, fn in UPCASTERS if api_version is None or api_version < version]


def upcast(payload: Payload, api_version: str | None) -> Payload:
    """``payload`` in the newest shape. The stored payload is never modified: when an upcaster
    applies, it rewrites a copy of the three levels upcasters change (copy on write: a deep
    copy of a 2 KB payload cost more than folding it); when none does (an event of the newest
    shape, the common case), the payload itself is returned, so projections only ever READ
    what they are given."""
    upcasters = applicable(api_version)
    if not upcasters:
        return payload
    event = dict(payload)
    data = event.get("data")
    if isinstance(data, dict):
        event["data"] = data = dict(data)
        if isinstance(data.get("object"), dict):
            data["object"] = dict(data["object"])
    for fn in upcasters:
        fn(event)
    return event
