"""Small, realistic Stripe events for tests of the spine (the demo generator makes richer ones)."""

from __future__ import annotations

import json
from typing import Any


def charge_event(
    n: int,
    *,
    event_id: str | None = None,
    account: str | None = None,
    livemode: bool = False,
    amount: int = 2000,
    currency: str = "usd",
    created: int = 1_760_000_000,
) -> dict[str, Any]:
    charge_id = f"ch_test{n:08d}"
    return {
        "id": event_id or f"evt_test{n:08d}",
        "object": "event",
        "api_version": "2026-07-29.dahlia",
        "created": created + n,
        "livemode": livemode,
        "account": account,
        "pending_webhooks": 1,
        "request": {"id": f"req_{n}", "idempotency_key": None},
        "type": "charge.succeeded",
        "data": {
            "object": {
                "id": charge_id,
                "object": "charge",
                "amount": amount,
                "amount_captured": amount,
                "amount_refunded": 0,
                "captured": True,
                "currency": currency,
                "livemode": livemode,
                "status": "succeeded",
                "created": created + n,
                "metadata": {"order": f"order-{n}"},
            }
        },
    }


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()
