"""A month of Stripe activity small enough to read, for docs/BOOKS.md and its test: October
2026 on the platform account, test mode, in USD.

- Oct 5: two charges (100.00 and 50.00, Stripe's fee 3.20 and 1.75) and a 20.00 refund of the
  first; Stripe's balance transactions as balance-sync stores them, each naming the automatic
  payout that paid it out.
- Oct 7: that payout, 125.05 (= 96.80 + 48.25 - 20.00), created; Oct 9 it arrives at the bank.
- Oct 28: a 30.00 charge not paid out yet: it stays in the Stripe balance (the clearing account).
- LATE: a 12.00 charge of Oct 30 whose balance transaction is synced after October was closed.
"""

from __future__ import annotations

from typing import Any

from projections.journal_rules import BT_FACT

DAY_S = 86_400
OCT_1 = 1_790_812_800  # 2026-10-01T00:00:00Z
PAYOUT = "po_1DocsPayout0000000001"


def _fact(n: int, bt: dict[str, Any], payout: str | None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "object": "event",
        "id": f"ledger_bt_{n:03d}",
        "type": BT_FACT,
        "created": bt["created"] + 3600,
        "livemode": False,
        "account": None,
        "data": {"object": bt},
    }
    if payout:
        event["ledger"] = {"automatic_payout_id": payout}
    return event


def _bt_id(n: int) -> str:
    return f"txn_1Docs{n:017d}"


def _bt(n: int, created: int, category: str, source: Any, amount: int, fee: int) -> dict[str, Any]:
    return {
        "id": _bt_id(n),
        "object": "balance_transaction",
        "amount": amount,
        "available_on": created + 2 * DAY_S,
        "created": created,
        "currency": "usd",
        "description": None,
        "exchange_rate": None,
        "fee": fee,
        "fee_details": (
            [
                {
                    "amount": fee,
                    "application": None,
                    "currency": "usd",
                    "description": "Stripe processing fees",
                    "type": "stripe_fee",
                }
            ]
            if fee
            else []
        ),  # fmt: skip
        "net": amount - fee,
        "reporting_category": category,
        "source": source,
        "status": "available",
        "type": {"charge": "charge", "refund": "refund", "payout": "payout"}[category],
    }


def _payout_event(n: int, status: str, created: int) -> dict[str, Any]:
    return {
        "object": "event",
        "id": f"evt_1DocsPayout{n:010d}",
        "type": f"payout.{status if status == 'paid' else 'created'}",
        "created": created,
        "livemode": False,
        "account": None,
        "api_version": "2026-07-29.dahlia",
        "data": {
            "object": {
                "id": PAYOUT, "object": "payout", "amount": 12505, "currency": "usd",
                "arrival_date": OCT_1 + 8 * DAY_S, "automatic": True, "status": status,
                "created": OCT_1 + 6 * DAY_S, "balance_transaction": _bt_id(4),
            }
        },
    }  # fmt: skip


def october() -> list[dict[str, Any]]:
    """The deliveries of October, in order."""
    oct_5 = OCT_1 + 4 * DAY_S + 36_000
    refund = {"id": "re_1DocsRefund000000000001", "object": "refund", "charge": "ch_1DocsA"}
    return [
        _fact(1, _bt(1, oct_5, "charge", "ch_1DocsA", 10000, 320), PAYOUT),
        _fact(2, _bt(2, oct_5 + 600, "charge", "ch_1DocsB", 5000, 175), PAYOUT),
        _fact(3, _bt(3, oct_5 + 7200, "refund", refund, -2000, 0), PAYOUT),
        _payout_event(1, "pending", OCT_1 + 6 * DAY_S),
        _fact(4, _bt(4, OCT_1 + 6 * DAY_S, "payout", PAYOUT, -12505, 0), PAYOUT),
        _payout_event(2, "paid", OCT_1 + 8 * DAY_S + 30_000),
        _fact(5, _bt(5, OCT_1 + 27 * DAY_S, "charge", "ch_1DocsC", 3000, 117), None),
    ]


def late() -> list[dict[str, Any]]:
    """A balance transaction of Oct 30 that balance-sync stores after October was closed."""
    return [_fact(6, _bt(6, OCT_1 + 29 * DAY_S, "charge", "ch_1DocsD", 1200, 65), None)]
