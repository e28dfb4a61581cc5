"""The values a demo history is built of: the history itself and the builder's records of the
accounts, customers, charges and timed events it tells stories about."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from demo.history.ids import Json

# An event's effect on the account's balance, for the balance.available snapshots:
# (kind, currency, amount in minor units, available_on in unix s).
Effect = tuple[str, str, int, int]
ScopeCurrency = tuple[str | None, str]  # (account or None for the platform, currency)


@dataclass
class DemoHistory:
    seed: int
    events: list[Json]  # distinct events, by created
    deliveries: list[Json]  # delivery order: some out of order, some twice
    # What Stripe's API would answer at the end of the history, per account (None = platform),
    # all in test mode: balance transactions (``source`` an id), by created...
    balance_transactions: dict[str | None, list[Json]] = field(default_factory=dict)
    # ... each automatic payout's members (its own transaction included, as Stripe lists it),
    payout_members: dict[str | None, dict[str, list[str]]] = field(default_factory=dict)
    balances: dict[str | None, Json] = field(default_factory=dict)  # the final Balance
    sources: dict[str, Json] = field(default_factory=dict)  # id -> its object's final state

    def summary(self) -> dict[str, Any]:
        """Counts: distinct events, deliveries, duplicates, out-of-order deliveries, per type."""
        seen: set[str] = set()
        duplicates = 0
        out_of_order = 0
        newest_created = 0
        for event in self.deliveries:
            if event["id"] in seen:
                duplicates += 1
                continue
            seen.add(event["id"])
            if event["created"] < newest_created:
                out_of_order += 1
            newest_created = max(newest_created, event["created"])
        return {
            "seed": self.seed,
            "events": len(self.events),
            "deliveries": len(self.deliveries),
            "duplicate_deliveries": duplicates,
            "out_of_order_deliveries": out_of_order,
            "types": dict(sorted(Counter(event["type"] for event in self.events).items())),
        }


@dataclass
class Scope:
    """The platform account (account None) or a connected account."""

    account: str | None
    tag: str  # 10 base62 chars every id of this account carries, as Stripe's ids do
    country: str
    currencies: tuple[tuple[str, int], ...]  # (currency, weight)
    customers: list[Customer] = field(default_factory=list)


@dataclass
class Customer:
    id: str
    currency: str
    name: str
    email: str
    payment_method: str
    card: tuple[str, str, int, int]  # brand, last4, exp_month, exp_year
    invoice_prefix: str
    invoice_sequence: int = 1


@dataclass
class Charge:
    id: str
    payment_intent: str
    customer: Customer
    scope: Scope
    amount: int
    currency: str
    created: int
    description: str | None
    balance_transaction: Json | None
    status: str = "succeeded"
    amount_refunded: int = 0
    disputed: bool = False
    failure_code: str | None = None
    application_fee: tuple[str, int] | None = None  # (fee_ id, amount): the platform's cut


@dataclass
class Entry:
    created: int
    seq: int
    event: Json
    effect: Effect | None
