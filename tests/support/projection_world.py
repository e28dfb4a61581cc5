"""Generators of realistic Stripe histories for the projection tests (no test functions here).

A *world* is a list of Stripe event payloads (in the order Stripe would send them) plus what a
correct projection must show for it (``Expected``), computed independently of the projection code.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from ledger.envelope import event_from_dict
from ledger.store import StoredEvent

# (account, livemode): the platform in test and live mode, and a Connect account.
SCOPES = ((None, False), (None, True), ("acct_1Connected", False))
CURRENCIES = ("usd", "eur", "jpy")  # jpy is zero-decimal: amounts are whole yen, as they are
DISPUTE_FEE = 1500
START = 1_700_000_000

INVOICE_PATHS = (
    ("draft", "open", "paid"),
    ("draft", "open", "open", "paid"),  # a failed attempt first
    ("draft", "open", "uncollectible", "paid"),
    ("draft", "open", "void"),
    ("draft", "open", "uncollectible", "void"),
    ("draft", "open"),
)
INVOICE_EVENT = {
    "draft": "invoice.created",
    "open": "invoice.finalized",
    "paid": "invoice.paid",
    "uncollectible": "invoice.marked_uncollectible",
    "void": "invoice.voided",
}
# An invoice status -> the status_transitions field it sets (the first time).
INVOICE_TRANSITIONS = {
    "open": "finalized_at",
    "paid": "paid_at",
    "void": "voided_at",
    "uncollectible": "marked_uncollectible_at",
}
PAYOUT_PATHS = (
    ("pending", "in_transit", "paid"),
    ("pending", "in_transit", "paid", "failed"),  # paid, then the bank returns it
    ("pending", "canceled"),
    ("pending", "in_transit", "paid", "canceled"),
)
PAYOUT_EVENT = {"pending": "created", "in_transit": "updated"}  # else payout.<status>
TOTALS = (
    "captured",
    "refunded",
    "dispute_withdrawn",
    "dispute_reinstated",
    "dispute_fees",
    "fees",
    "payouts",
)


def scope_key(account: str | None, livemode: bool, currency: str) -> tuple[str, bool, str]:
    return (account or "", livemode, currency)


@dataclass
class Expected:
    totals: dict[tuple[str, bool, str], dict[str, int]] = field(default_factory=dict)
    invoices: dict[str, str] = field(default_factory=dict)  # invoice id -> final status
    disputes: dict[str, tuple[str, int, int, int]] = field(default_factory=dict)
    # ^ dispute id -> (status, withdrawn, reinstated, fees)

    def add(
        self, account: str | None, livemode: bool, currency: str, name: str, amount: int
    ) -> None:
        bucket = self.totals.setdefault(
            scope_key(account, livemode, currency), dict.fromkeys(TOTALS, 0)
        )
        bucket[name] += amount


@dataclass
class World:
    events: list[dict[str, Any]]
    expected: Expected


class _Builder:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.counter = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def event(
        self, event_type: str, created: int, scope: tuple[str | None, bool], obj: dict[str, Any]
    ) -> None:
        account, livemode = scope
        payload: dict[str, Any] = {
            "id": f"evt_{self.prefix}{next(self.counter)}",
            "object": "event",
            "api_version": "2024-06-20",
            "created": created,
            "livemode": livemode,
            "type": event_type,
            "data": {"object": {**obj, "livemode": livemode}},
            "request": {"id": None, "idempotency_key": None},
        }
        if account is not None:
            payload["account"] = account
        self.events.append(payload)


Scope = tuple[str | None, bool]


class _Stories:
    """The stories of one world, each drawn from ``draw`` in a fixed order (a world is a function
    of the draws): charges with their refunds and disputes, invoices, payouts, balances."""

    def __init__(self, draw: st.DrawFn, prefix: str) -> None:
        self.draw = draw
        self.prefix = prefix
        self.builder = _Builder(prefix)
        self.expected = Expected()
        self.step = st.integers(0, 2)  # 0: two events of one object in the same second

    def charge(self, n: int) -> None:
        """A charge, its refunds to increasing levels, and maybe a dispute."""
        draw, prefix = self.draw, self.prefix
        scope = draw(st.sampled_from(SCOPES))
        currency = draw(st.sampled_from(CURRENCIES))
        amount = draw(st.integers(50, 50_000))
        fee = draw(st.integers(0, 400))
        charge_id = f"ch_{prefix}{n}"
        expand = draw(st.booleans())
        bt = {
            "id": f"txn_{prefix}c{n}",
            "object": "balance_transaction",
            "amount": amount,
            "fee": fee,
            "net": amount - fee,
            "currency": currency,
            "type": "charge",
        }
        t = START + draw(st.integers(0, 10_000))
        base = {
            "id": charge_id,
            "object": "charge",
            "amount": amount,
            "currency": currency,
            "captured": True,
            "status": "succeeded",
            "amount_captured": amount,
            "balance_transaction": bt if expand else bt["id"],
        }
        self.builder.event(
            "charge.succeeded", t, scope, {**base, "amount_refunded": 0, "refunded": False}
        )
        self.expected.add(*scope, currency, "captured", amount)
        if expand:
            self.expected.add(*scope, currency, "fees", fee)
        levels = sorted(set(draw(st.lists(st.integers(1, amount), max_size=3))))
        if levels and draw(st.booleans()):
            levels.append(amount)  # ends fully refunded
        for level in sorted(set(levels)):
            t += draw(self.step)
            refunded = {**base, "amount_refunded": level, "refunded": level == amount}
            self.builder.event("charge.refunded", t, scope, refunded)
        if levels:
            self.expected.add(*scope, currency, "refunded", max(levels))
        if draw(st.booleans()):
            self.dispute(n, scope, currency, amount, charge_id, t)

    def dispute(
        self, n: int, scope: Scope, currency: str, amount: int, charge_id: str, t: int
    ) -> None:
        """A dispute of the whole charge: withdrawn, then open, lost or won (fully or not)."""
        draw, prefix = self.draw, self.prefix
        outcome = draw(st.sampled_from(("won_full", "won_partial", "lost", "open")))
        dispute_id = f"dp_{prefix}{n}"
        withdrawal = {
            "id": f"txn_{prefix}dw{n}",
            "object": "balance_transaction",
            "amount": -amount,
            "fee": DISPUTE_FEE,
            "net": -amount - DISPUTE_FEE,
            "currency": currency,
            "type": "adjustment",
            "reporting_category": "dispute",
        }
        dispute = {
            "id": dispute_id,
            "object": "dispute",
            "amount": amount,
            "currency": currency,
            "charge": charge_id,
            "payment_intent": None,
            "reason": "fraudulent",
            "created": t,
            "evidence_details": {"due_by": t + 86_400},
        }
        for event_type, status, bts in (
            ("charge.dispute.created", "needs_response", []),
            ("charge.dispute.funds_withdrawn", "needs_response", [withdrawal]),
            ("charge.dispute.updated", "under_review", [withdrawal]),
        ):
            t += draw(self.step)
            self.builder.event(
                event_type, t, scope, {**dispute, "status": status, "balance_transactions": bts}
            )
        status, reinstated, fees = "under_review", 0, DISPUTE_FEE
        if outcome != "open":
            status = "lost" if outcome == "lost" else "won"
            t += draw(self.step)
            closed = {**dispute, "status": status, "balance_transactions": [withdrawal]}
            self.builder.event("charge.dispute.closed", t, scope, closed)
        if outcome.startswith("won"):
            reinstated, fee_back = self.reinstatement(
                n, scope, outcome == "won_full", dispute, withdrawal, t
            )
            fees += fee_back
        self.expected.disputes[dispute_id] = (status, amount, reinstated, fees)
        self.expected.add(*scope, currency, "dispute_withdrawn", amount)
        self.expected.add(*scope, currency, "dispute_reinstated", reinstated)
        self.expected.add(*scope, currency, "dispute_fees", fees)

    def reinstatement(
        self,
        n: int,
        scope: Scope,
        full: bool,
        dispute: dict[str, Any],
        withdrawal: dict[str, Any],
        t: int,
    ) -> tuple[int, int]:
        """A won dispute's funds back (all with the fee, or part without): (amount, fee)."""
        amount = dispute["amount"]
        reinstated = amount if full else self.draw(st.integers(1, amount))
        fee_back = -DISPUTE_FEE if full else 0
        reinstatement = {
            "id": f"txn_{self.prefix}dr{n}",
            "object": "balance_transaction",
            "amount": reinstated,
            "fee": fee_back,
            "net": reinstated - fee_back,
            "currency": dispute["currency"],
            "type": "adjustment",
        }
        t += self.draw(self.step)
        won = {**dispute, "status": "won", "balance_transactions": [withdrawal, reinstatement]}
        self.builder.event("charge.dispute.funds_reinstated", t, scope, won)
        return reinstated, fee_back

    def invoice(self, n: int) -> None:
        """An invoice through one of ``INVOICE_PATHS``."""
        draw, prefix = self.draw, self.prefix
        scope = draw(st.sampled_from(SCOPES))
        currency = draw(st.sampled_from(CURRENCIES))
        amount = draw(st.integers(100, 20_000))
        path = draw(st.sampled_from(INVOICE_PATHS))
        invoice_id = f"in_{prefix}{n}"
        t = START + draw(st.integers(0, 10_000))
        transitions: dict[str, int | None] = dict.fromkeys(INVOICE_TRANSITIONS.values())
        attempts = 0
        previous = None
        for status in path:
            t += draw(self.step)
            event_type = INVOICE_EVENT[status]
            if status == "open" and previous == "open":
                event_type, attempts = "invoice.payment_failed", attempts + 1
            field_name = INVOICE_TRANSITIONS.get(status)
            if field_name and transitions[field_name] is None:
                transitions[field_name] = t
            if status == "paid":
                attempts += 1
            paid = amount if status == "paid" else 0
            invoice = {
                "id": invoice_id,
                "object": "invoice",
                "status": status,
                "currency": currency,
                "customer": f"cus_{prefix}{n}",
                "subscription": f"sub_{prefix}{n}",
                "amount_due": amount,
                "amount_paid": paid,
                "amount_remaining": amount - paid,
                "attempt_count": attempts,
                "due_date": None,
                "created": START,
                "status_transitions": dict(transitions),
                "charge": None,
                "payment_intent": None,
            }
            self.builder.event(event_type, t, scope, invoice)
            previous = status
        self.expected.invoices[invoice_id] = path[-1]

    def payout(self, n: int) -> None:
        """A payout through one of ``PAYOUT_PATHS`` (paid, then maybe failed or canceled)."""
        draw = self.draw
        scope = draw(st.sampled_from(SCOPES))
        currency = draw(st.sampled_from(CURRENCIES))
        amount = draw(st.integers(100, 30_000))
        path = draw(st.sampled_from(PAYOUT_PATHS))
        t = START + draw(st.integers(0, 10_000))
        for status in path:
            t += draw(self.step)
            payout = {
                "id": f"po_{self.prefix}{n}",
                "object": "payout",
                "amount": amount,
                "currency": currency,
                "status": status,
            }
            self.builder.event(f"payout.{PAYOUT_EVENT.get(status, status)}", t, scope, payout)
        if path[-1] == "paid":
            self.expected.add(*scope, currency, "payouts", amount)

    def balances(self) -> None:
        """balance.available events of up to two scopes."""
        draw = self.draw
        for scope in draw(st.lists(st.sampled_from(SCOPES), max_size=2, unique=True)):
            for k in range(draw(st.integers(1, 2))):
                balance = {
                    "object": "balance",
                    "available": [
                        {"amount": draw(st.integers(0, 9999)), "currency": c}
                        for c in ("usd", "jpy")
                    ],
                    "pending": [{"amount": draw(st.integers(0, 9999)), "currency": "usd"}],
                }
                self.builder.event("balance.available", START + 20_000 + k, scope, balance)


@st.composite
def worlds(draw: st.DrawFn, prefix: str = "") -> World:
    stories = _Stories(draw, prefix)
    for n in range(draw(st.integers(1, 3))):  # charges, refunds, disputes
        stories.charge(n)
    for n in range(draw(st.integers(0, 3))):  # invoices through their transitions
        stories.invoice(n)
    for n in range(draw(st.integers(0, 2))):  # payouts: paid, then maybe failed or canceled
        stories.payout(n)
    stories.balances()
    # an event type no projection handles, and a data-free one
    customer = {"id": f"cus_{prefix}x", "object": "customer"}
    stories.builder.event("customer.created", START, SCOPES[0], customer)
    return World(stories.builder.events, stories.expected)


def stored(payloads: list[dict[str, Any]]) -> list[StoredEvent]:
    """Payloads as the store would hand them out (positions in list order)."""
    result = []
    for position, payload in enumerate(payloads, start=1):
        event = event_from_dict(payload)
        result.append(
            StoredEvent(
                position=position,
                event_id=event.event_id,
                type=event.type,
                api_version=event.api_version,
                created=event.created,
                livemode=event.livemode,
                account=event.account,
                object_type=event.object_type,
                object_id=event.object_id,
                received_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                source="import",
                payload=payload,
                kafka_topic=None,
                kafka_partition=None,
                kafka_offset=None,
            )
        )
    return result
