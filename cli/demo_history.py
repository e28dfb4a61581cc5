"""A deterministic, realistic Stripe event history for demos, tests and benchmarks.

``generate(seed, events)`` tells "stories" (a customer pays, a charge is refunded, a subscription's
invoices are paid, fail, become uncollectible or are voided, a dispute is won or lost, a payout
is paid, fails or is canceled, the balance is reported) until about ``events`` distinct events
exist, as Stripe v1 snapshot events of API version 2026-07-29.dahlia. ``DemoHistory.deliveries``
is the order a webhook endpoint would see them in: mostly by ``created``, with neighbours
swapped, some events delayed and about 3% delivered twice (Stripe delivers at least once).

Webhooks carry what Stripe's carry: ``charge.balance_transaction`` is the ``txn_...`` id (Stripe
never expands it in a webhook), refunds and payouts name theirs by id, and disputes embed their
``balance_transactions`` list as Stripe sends it. The balance transactions Stripe would hold for
the history (charges with their fee_details, refunds, dispute withdrawals and reinstatements
with the dispute fee, payouts, their cancellations and failures, and the application fee the
platform takes of each direct charge on the connected account; the US platform's EUR charges
settle in USD with their exchange_rate) are in
``DemoHistory.balance_transactions``, with each automatic payout's members, the objects their
``source`` names and the final Balance per account: the demo serves them with the stand-in
Stripe API (demo/standin.py) to ``balance-sync``. Every transaction's net sums, per account and
currency, to that Balance, and every automatic payout's members (its own transaction aside) sum
to its amount. Automatic payouts pay out available transactions only.

One deliberate departure from Stripe's defaults:

* ``invoice.payments`` (InvoicePayment objects, 2025-03-31.basil and later) is included, as an
  ``expand[]=payments`` would; invoices have no top-level ``charge``, ``payment_intent`` or
  ``subscription``: the subscription is ``invoice.parent.subscription_details.subscription``.

Everything derives from ``random.Random(seed)`` and a fixed clock starting 2026-11-01T00:00:00Z:
the same ``(seed, events)`` gives byte-identical output. Money is integers in minor units
(JPY is zero-decimal: 3000 is 3000 yen). The events are plain dicts; ``deliveries`` holds the
same dict objects as ``events`` (duplicates are copies): treat them as read-only.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "2026-07-29.dahlia"
BASE_TIMESTAMP = 1_793_491_200  # 2026-11-01T00:00:00Z
DAY_S = 86_400
_ID_EPOCH = 1_400_000_000  # ids carry a base62 time part, like Stripe's, relative to this
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B62_PAIRS = tuple(first + second for first in _B62 for second in _B62)  # 3844

DUPLICATE_SHARE = 0.03  # deliveries that repeat an earlier delivery
SWAP_SHARE = 0.02  # neighbours delivered in swapped order
DELAY_SHARE = 0.01  # deliveries held back by a few to a few dozen positions
BALANCE_EVERY = 40  # a balance.available snapshot after about this many other events

DISPUTE_FEE = {"usd": 1500, "eur": 2000, "jpy": 1500}
ZERO_DECIMAL = frozenset({"jpy"})
# Settlement currency: the US platform holds no EUR, so its EUR charges settle in USD at this
# rate (percent: 108 = 1.08), as Stripe converts them; the connected account (DE) holds both.
FX_SETTLEMENT: dict[tuple[str | None, str], tuple[str, int]] = {(None, "eur"): ("usd", 108)}
APPLICATION_FEE_PERCENT = 2  # of each direct charge on the connected account, to the platform
# A payout's balance transactions by type: (sign of the amount, reporting_category, description).
PAYOUT_BTS = {
    "payout": (-1, "payout", "STRIPE PAYOUT"),
    "payout_cancel": (1, "payout_reversal", "STRIPE PAYOUT CANCELED"),
    "payout_failure": (1, "payout_reversal", "STRIPE PAYOUT FAILED"),
}

Json = dict[str, Any]


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
class _Scope:
    """The platform account (account None) or a connected account."""

    account: str | None
    tag: str  # 10 base62 chars every id of this account carries, as Stripe's ids do
    country: str
    currencies: tuple[tuple[str, int], ...]  # (currency, weight)
    customers: list[_Customer] = field(default_factory=list)


@dataclass
class _Customer:
    id: str
    currency: str
    name: str
    email: str
    payment_method: str
    card: tuple[str, str, int, int]  # brand, last4, exp_month, exp_year
    invoice_prefix: str
    invoice_sequence: int = 1


@dataclass
class _Charge:
    id: str
    payment_intent: str
    customer: _Customer
    scope: _Scope
    amount: int
    currency: str
    created: int
    description: str | None
    balance_transaction: Json | None
    status: str = "succeeded"
    amount_refunded: int = 0
    disputed: bool = False
    failure_code: str | None = None
    refunds: int = 0
    application_fee: tuple[str, int] | None = None  # (fee_ id, amount): the platform's cut


@dataclass
class _Entry:
    created: int
    seq: int
    event: Json
    effect: tuple[str, str, int, int] | None  # (kind, currency, amount, available_on)


FIRST_NAMES = ("Ada", "Grace", "Alan", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen")
JP_NAMES = ("山田 太郎", "佐藤 花子", "鈴木 一郎", "高橋 美咲", "田中 健", "伊藤 さくら")
EU_NAMES = ("Zoë Müller", "Émile Dupont", "Jürgen Weiß", "Søren Kjær", "Inès Garcia")
CARDS = (("visa", "4242"), ("mastercard", "4444"), ("amex", "8431"), ("visa", "1881"))
DISPUTE_REASONS = (
    "fraudulent",
    "product_not_received",
    "duplicate",
    "subscription_canceled",
    "product_unacceptable",
    "credit_not_processed",
    "general",
)
EVIDENCE_KEYS = (
    "access_activity_log",
    "billing_address",
    "cancellation_policy",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_communication",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "customer_signature",
    "duplicate_charge_documentation",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "receipt",
    "refund_policy",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "service_documentation",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_documentation",
    "shipping_tracking_number",
    "uncategorized_file",
    "uncategorized_text",
)
PLANS = {
    "usd": ((2000, "Starter"), (4900, "Team"), (9900, "Business")),
    "eur": ((1500, "Starter"), (2900, "Team"), (8900, "Business")),
    "jpy": ((980, "ライト"), (3000, "スタンダード"), (5000, "プロ")),
}


def _processing_fee(amount: int, currency: str) -> int:
    """Stripe's card pricing, roughly: 2.9% + 30c (US), 1.5% + 25c (EEA), 3.6% (Japan)."""
    if currency == "jpy":
        return (amount * 36 + 500) // 1000
    if currency == "eur":
        return (amount * 15 + 500) // 1000 + 25
    return (amount * 29 + 500) // 1000 + 30


def _settled(account: str | None, currency: str, amount: int) -> tuple[str, int, float | None]:
    """(settlement currency, amount in it, exchange_rate or None): a charge, refund or dispute
    of ``amount`` (minor units of ``currency``) as the account's balance transaction holds it."""
    if (account, currency) not in FX_SETTLEMENT:
        return currency, amount, None
    into, rate_percent = FX_SETTLEMENT[(account, currency)]
    magnitude = (abs(amount) * rate_percent + 50) // 100  # both two-decimal: round half up
    return into, magnitude if amount >= 0 else -magnitude, rate_percent / 100


def _midnight_after(timestamp: int, days: int) -> int:
    return (timestamp // DAY_S + days) * DAY_S


class _Builder:
    def __init__(self, seed: int, target: int, base_s: int = BASE_TIMESTAMP) -> None:
        self.base_s = base_s  # the history's first second
        self.rng = random.Random(seed)
        self.target = target
        self.entries: list[_Entry] = []
        self.seq = 0
        self.story_events = 0
        self.used_ids: set[str] = set()
        self.clock = base_s
        self.forced_pairs: list[tuple[str, str]] = []  # (older, newer): deliver newer first
        self.net: dict[tuple[str | None, str], int] = {}  # rough running balance per scope
        self.platform = _Scope(None, self._chars(10), "US", (("usd", 70), ("jpy", 20), ("eur", 10)))
        self.connect = _Scope(
            "acct_1" + self._chars(15), self._chars(10), "DE", (("eur", 70), ("usd", 30))
        )
        self.prices: dict[tuple[str | None, str, int], tuple[str, str]] = {}
        self.pi_created: dict[str, int] = {}
        self.want_invoice_reorder = True  # one invoice.paid delivered before its finalized
        # Ids drawn for balance transactions the webhooks never name (a payout's cancellation):
        # from their own generator, so the rest of the history draws what it always drew.
        self.aux_rng = random.Random(seed * 1_000_003 + 17)
        self.application = "ca_" + self._chars(24, self.aux_rng)  # the platform's Connect app
        self.bts: dict[str | None, list[Json]] = {None: [], self.connect.account: []}
        self.unpaid: dict[tuple[str | None, str], list[Json]] = {}  # not yet in a payout
        self.payout_members: dict[str | None, dict[str, list[str]]] = {
            None: {},
            self.connect.account: {},
        }

    # ---------------------------------------------------------------- ids and small values
    def _chars(self, count: int, rng: random.Random | None = None) -> str:
        """``count`` random base62 chars: one draw of bits, two chars per divmod (fast)."""
        value = (rng or self.rng).getrandbits(6 * count + 16)
        pairs = []
        for _ in range((count + 1) // 2):
            value, pair = divmod(value, 3844)
            pairs.append(_B62_PAIRS[pair])
        return "".join(pairs)[:count]

    def _id(
        self,
        prefix: str,
        scope: _Scope,
        created: int,
        version: str = "1",
        rng: random.Random | None = None,
    ) -> str:
        """prefix + version + 5 chars of time + the account tag + 8 random chars (24 chars)."""
        value = max(created - _ID_EPOCH, 0)
        time_part = ""
        for _ in range(5):
            value, digit = divmod(value, 62)
            time_part = _B62[digit] + time_part
        while True:
            candidate = f"{prefix}{version}{time_part}{scope.tag}{self._chars(8, rng)}"
            if candidate not in self.used_ids:
                self.used_ids.add(candidate)
                return candidate

    def _short_id(self, prefix: str) -> str:
        while True:
            candidate = prefix + self._chars(14)
            if candidate not in self.used_ids:
                self.used_ids.add(candidate)
                return candidate

    def _request(self, api: bool) -> Json:
        if not api:
            return {"id": None, "idempotency_key": None}
        bits = self.rng.getrandbits(128)
        key = f"{bits:032x}"
        idempotency_key = f"{key[:8]}-{key[8:12]}-4{key[13:16]}-a{key[17:20]}-{key[20:]}"
        return {"id": self._short_id("req_"), "idempotency_key": idempotency_key}

    def _currency(self, scope: _Scope) -> str:
        roll = self.rng.randrange(sum(weight for _, weight in scope.currencies))
        for currency, weight in scope.currencies:
            if roll < weight:
                return currency
            roll -= weight
        return scope.currencies[0][0]

    def _amount(self, currency: str) -> int:
        if currency in ZERO_DECIMAL:
            return self.rng.randint(5, 300) * 100  # 500..30000 yen
        return self.rng.randint(5, 400) * 100 + self.rng.choice((0, 0, 0, 50, 99))

    # ---------------------------------------------------------------- emitting
    def _emit(
        self,
        event_type: str,
        obj: Json,
        created: int,
        scope: _Scope,
        *,
        api: bool = False,
        previous: Json | None = None,
        effect: tuple[str, str, int, int] | None = None,
    ) -> Json:
        data: Json = {"object": obj}
        if previous is not None:
            data["previous_attributes"] = previous
        version = "3" if obj["id"][:3] in ("ch_", "pi_", "re_") else "1"
        event = {
            "id": self._id("evt_", scope, created, version),
            "object": "event",
            "account": scope.account,
            "api_version": API_VERSION,
            "created": created,
            "data": data,
            "livemode": False,
            "pending_webhooks": 1 if self.rng.random() < 0.9 else 2,
            "request": self._request(api),
            "type": event_type,
        }
        self.entries.append(_Entry(created, self.seq, event, effect))
        self.seq += 1
        self.story_events += 1
        return event

    # ---------------------------------------------------------------- objects
    def _customer_obj(self, customer: _Customer, scope: _Scope, created: int) -> Json:
        return {
            "id": customer.id,
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": created,
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": None,
            "discount": None,
            "email": customer.email,
            "invoice_prefix": customer.invoice_prefix,
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": customer.payment_method,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": {},
            "name": customer.name,
            "next_invoice_sequence": 1,
            "phone": None,
            "preferred_locales": ["ja"] if customer.currency == "jpy" else ["en"],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }

    def _new_customer(self, scope: _Scope, created: int, currency: str | None = None) -> _Customer:
        currency = currency or self._currency(scope)
        if currency == "jpy":
            name = self.rng.choice(JP_NAMES)
        elif currency == "eur":
            name = self.rng.choice(EU_NAMES)
        else:
            name = f"{self.rng.choice(FIRST_NAMES)} {self.rng.choice(LAST_NAMES)}"
        customer_id = self._short_id("cus_")
        brand, last4 = self.rng.choice(CARDS)
        customer = _Customer(
            id=customer_id,
            currency=currency,
            name=name,
            email=f"{customer_id[4:12].lower()}@example.com",
            payment_method=self._id("pm_", scope, created),
            card=(brand, last4, self.rng.randint(1, 12), self.rng.randint(2027, 2032)),
            invoice_prefix=f"{self.rng.getrandbits(32):08X}",
        )
        scope.customers.append(customer)
        obj = self._customer_obj(customer, scope, created)
        self._emit("customer.created", obj, created, scope, api=True)
        return customer

    def _pick_customer(self, scope: _Scope, created: int, currency: str | None = None) -> _Customer:
        pool = [c for c in scope.customers[-50:] if currency is None or c.currency == currency]
        if pool and self.rng.random() < 0.5:
            return self.rng.choice(pool)
        return self._new_customer(scope, created, currency)

    def _charge_bt(self, charge: _Charge) -> Json:
        currency, gross, rate = _settled(charge.scope.account, charge.currency, charge.amount)
        fee = _processing_fee(gross, currency)
        fee_details: list[Json] = [
            {
                "amount": fee,
                "application": None,
                "currency": currency,
                "description": "Stripe processing fees",
                "type": "stripe_fee",
            }
        ]
        if charge.application_fee is not None:  # a direct charge on the connected account
            fee_details.append(
                {
                    "amount": charge.application_fee[1],
                    "application": self.application,
                    "currency": charge.currency,
                    "description": "Application fee",
                    "type": "application_fee",
                }
            )
        fee = sum(item["amount"] for item in fee_details)
        return {
            "id": self._id("txn_", charge.scope, charge.created, "3"),
            "object": "balance_transaction",
            "amount": gross,
            "available_on": _midnight_after(charge.created, 2),
            "balance_type": "payments",
            "created": charge.created,
            "currency": currency,
            "description": charge.description,
            "exchange_rate": rate,
            "fee": fee,
            "fee_details": fee_details,
            "net": gross - fee,
            "reporting_category": "charge",
            "source": charge.id,
            "status": "pending",
            "type": "charge",
        }

    def _charge_obj(self, charge: _Charge, now: int) -> Json:
        customer = charge.customer
        brand, last4, exp_month, exp_year = customer.card
        succeeded = charge.status == "succeeded"
        # An id, as in every real webhook: the fee is in the balance transaction itself.
        bt = None if charge.balance_transaction is None else charge.balance_transaction["id"]
        return {
            "id": charge.id,
            "object": "charge",
            "amount": charge.amount,
            "amount_captured": charge.amount if succeeded else 0,
            "amount_refunded": charge.amount_refunded,
            "application": self.application if charge.application_fee else None,
            "application_fee": charge.application_fee[0] if charge.application_fee else None,
            "application_fee_amount": charge.application_fee[1] if charge.application_fee else None,
            "balance_transaction": bt,
            "billing_details": {
                "address": {
                    "city": None,
                    "country": None,
                    "line1": None,
                    "line2": None,
                    "postal_code": None,
                    "state": None,
                },
                "email": customer.email,
                "name": customer.name,
                "phone": None,
                "tax_id": None,
            },
            "calculated_statement_descriptor": "STRIPE-LEDGER DEMO",
            "captured": succeeded,
            "created": charge.created,
            "currency": charge.currency,
            "customer": customer.id,
            "description": charge.description,
            "disputed": charge.disputed,
            "failure_balance_transaction": None,
            "failure_code": charge.failure_code,
            "failure_message": "Your card was declined." if charge.failure_code else None,
            "fraud_details": {},
            "livemode": False,
            "metadata": {},
            "on_behalf_of": None,
            "outcome": {
                "advice_code": None,
                "network_advice_code": None,
                "network_decline_code": None,
                "network_status": "approved_by_network" if succeeded else "declined_by_network",
                "reason": None if succeeded else "generic_decline",
                "risk_level": "normal",
                "risk_score": self.rng.randint(5, 60),
                "seller_message": "Payment complete."
                if succeeded
                else "The bank did not return any further details with this decline.",
                "type": "authorized" if succeeded else "issuer_declined",
            },
            "paid": succeeded,
            "payment_intent": charge.payment_intent,
            "payment_method": customer.payment_method,
            "payment_method_details": {
                "card": {
                    "amount_authorized": charge.amount if succeeded else None,
                    "authorization_code": None,
                    "brand": brand,
                    "checks": {
                        "address_line1_check": None,
                        "address_postal_code_check": None,
                        "cvc_check": "pass",
                    },
                    "country": "JP" if charge.currency == "jpy" else "US",
                    "exp_month": exp_month,
                    "exp_year": exp_year,
                    "extended_authorization": {"status": "disabled"},
                    "fingerprint": customer.id[4:20],
                    "funding": "credit",
                    "incremental_authorization": {"status": "unavailable"},
                    "installments": None,
                    "last4": last4,
                    "mandate": None,
                    "multicapture": {"status": "unavailable"},
                    "network": brand,
                    "network_token": {"used": False},
                    "network_transaction_id": None,
                    "overcapture": {
                        "maximum_amount_capturable": charge.amount,
                        "status": "unavailable",
                    },
                    "regulated_status": "unregulated",
                    "three_d_secure": None,
                    "wallet": None,
                },
                "type": "card",
            },
            "radar_options": {},
            "receipt_email": customer.email,
            "receipt_number": None,
            "receipt_url": f"https://pay.stripe.com/receipts/payment/{charge.id[3:]}",
            "refunded": charge.amount_refunded == charge.amount and succeeded,
            "review": None,
            "shipping": None,
            "source": None,
            "source_transfer": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": charge.status,
            "transfer_data": None,
            "transfer_group": None,
        }

    def _payment_intent_obj(
        self,
        pi_id: str,
        customer: _Customer,
        amount: int,
        currency: str,
        created: int,
        status: str,
        latest_charge: str | None,
        description: str | None,
        secret: str,
        error_charge: str | None = None,
    ) -> Json:
        error: Json | None = None
        if error_charge is not None:
            error = {
                "charge": error_charge,
                "code": "card_declined",
                "decline_code": "generic_decline",
                "doc_url": "https://docs.stripe.com/error-codes/card-declined",
                "message": "Your card was declined.",
                "type": "card_error",
            }
        return {
            "id": pi_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": amount if status == "succeeded" else 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": {"allow_redirects": "always", "enabled": True},
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic_async",
            "client_secret": f"{pi_id}_secret_{secret}",
            "confirmation_method": "automatic",
            "created": created,
            "currency": currency,
            "customer": customer.id,
            "description": description,
            "excluded_payment_method_types": None,
            "last_payment_error": error,
            "latest_charge": latest_charge,
            "livemode": False,
            "metadata": {},
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": None
            if status == "requires_payment_method"
            else customer.payment_method,
            "payment_method_configuration_details": None,
            "payment_method_options": {
                "card": {
                    "installments": None,
                    "mandate_options": None,
                    "network": None,
                    "request_three_d_secure": "automatic",
                }
            },
            "payment_method_types": ["card"],
            "processing": None,
            "receipt_email": customer.email,
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "source": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": status,
            "transfer_data": None,
            "transfer_group": None,
        }

    def _refund_obj(
        self,
        refund_id: str,
        charge: _Charge,
        amount: int,
        created: int,
        bt_id: str,
        ref: str | None,
    ) -> Json:
        return {
            "id": refund_id,
            "object": "refund",
            "amount": amount,
            "balance_transaction": bt_id,
            "charge": charge.id,
            "created": created,
            "currency": charge.currency,
            "destination_details": {
                "card": {
                    "reference": ref,
                    "reference_status": "available" if ref else "pending",
                    "reference_type": "acquirer_reference_number",
                    "type": "refund",
                },
                "type": "card",
            },
            "metadata": {},
            "payment_intent": charge.payment_intent,
            "reason": "requested_by_customer",
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }

    # ---------------------------------------------------------------- stories: payments
    def _pay(
        self,
        scope: _Scope,
        customer: _Customer,
        amount: int,
        start: int,
        description: str | None,
        *,
        api: bool = True,
        fail_first: int = 0,
        pi_id: str | None = None,
        secret: str | None = None,
    ) -> tuple[_Charge, int]:
        """payment_intent.created, [charge.failed + payment_intent.payment_failed]*,
        payment_intent.succeeded + charge.succeeded. -> (the charge, its time)."""
        currency = customer.currency
        t = start
        if pi_id is None:
            pi_id = self._id("pi_", scope, t, "3")
            secret = self._chars(25)
            self.pi_created[pi_id] = t
            self._emit(
                "payment_intent.created",
                self._payment_intent_obj(
                    pi_id,
                    customer,
                    amount,
                    currency,
                    t,
                    "requires_payment_method",
                    None,
                    description,
                    secret or "",
                ),
                t,
                scope,
                api=api,
            )
        secret = secret or ""
        pi_at = self.pi_created[pi_id]
        if fail_first:
            t += self.rng.randint(1, 4)
            failed = _Charge(
                self._id("ch_", scope, t, "3"),
                pi_id,
                customer,
                scope,
                amount,
                currency,
                t,
                description,
                None,
                status="failed",
                failure_code="card_declined",
            )
            self._emit("charge.failed", self._charge_obj(failed, t), t, scope, api=api)
            self._emit(
                "payment_intent.payment_failed",
                self._payment_intent_obj(
                    pi_id,
                    customer,
                    amount,
                    currency,
                    pi_at,
                    "requires_payment_method",
                    failed.id,
                    description,
                    secret,
                    error_charge=failed.id,
                ),
                t,
                scope,
                api=api,
            )
            return failed, t
        t += self.rng.randint(1, 4)
        charge = _Charge(
            self._id("ch_", scope, t, "3"),
            pi_id,
            customer,
            scope,
            amount,
            currency,
            t,
            description,
            None,
        )
        if scope is self.connect:  # the platform takes an application fee of each
            fee_id = self._id("fee_", self.platform, t, rng=self.aux_rng)
            charge.application_fee = (fee_id, max(amount * APPLICATION_FEE_PERCENT // 100, 1))
        charge.balance_transaction = self._charge_bt(charge)
        bt = charge.balance_transaction
        self._book(scope, bt)
        self._emit(
            "payment_intent.succeeded",
            self._payment_intent_obj(
                pi_id,
                customer,
                amount,
                currency,
                pi_at,
                "succeeded",
                charge.id,
                description,
                secret,
            ),
            t,
            scope,
            api=api,
        )
        self._emit(
            "charge.succeeded",
            self._charge_obj(charge, t),
            t,
            scope,
            api=api,
            effect=("charge", bt["currency"], bt["net"], bt["available_on"]),
        )
        key = (scope.account, bt["currency"])
        self.net[key] = self.net.get(key, 0) + bt["net"]
        if charge.application_fee is not None:
            self._application_fee(charge, t)
        return charge, t

    def _application_fee(self, charge: _Charge, t: int) -> None:
        """application_fee.created on the platform, and the platform's balance transaction
        (type application_fee, reporting category platform_earning), pending like the charge."""
        assert charge.application_fee is not None
        fee_id, amount = charge.application_fee
        platform = self.platform
        currency, settled, rate = _settled(None, charge.currency, amount)  # the platform's
        bt = self._simple_bt(
            self._id("txn_", platform, t, rng=self.aux_rng),
            platform,
            t,
            currency,
            settled,
            fee_id,
            "application_fee",
            "platform_earning",
            f"Application fee from {charge.scope.account}",
        )
        bt.update(available_on=_midnight_after(t, 2), status="pending", exchange_rate=rate)
        self._book(platform, bt)
        fee = {
            "id": fee_id,
            "object": "application_fee",
            "account": charge.scope.account,
            "amount": amount,
            "amount_refunded": 0,
            "application": self.application,
            "balance_transaction": bt["id"],
            "charge": charge.id,
            "created": t,
            "currency": charge.currency,
            "fee_source": {"charge": charge.id, "type": "charge"},
            "livemode": False,
            "originating_transaction": None,
            "refunded": False,
            "refunds": {
                "object": "list",
                "data": [],
                "has_more": False,
                "total_count": 0,
                "url": f"/v1/application_fees/{fee_id}/refunds",
            },
        }
        effect = ("charge", currency, settled, bt["available_on"])
        self._emit("application_fee.created", fee, t, platform, effect=effect)
        key = (None, currency)
        self.net[key] = self.net.get(key, 0) + settled

    def _refund(self, charge: _Charge, amount: int, start: int) -> None:
        """refund.created + charge.refunded (same second), later refund.updated +
        charge.refund.updated when the acquirer reference number arrives."""
        scope = charge.scope
        t = start
        refund_id = self._id("re_", scope, t, "3")
        bt_id = self._id("txn_", scope, t, "3")
        before = charge.amount_refunded
        charge.amount_refunded += amount
        charge.refunds += 1
        currency, settled, rate = _settled(scope.account, charge.currency, -amount)
        self._emit(
            "refund.created",
            self._refund_obj(refund_id, charge, amount, t, bt_id, None),
            t,
            scope,
            api=True,
            effect=("refund", currency, settled, t),
        )
        previous: Json = {"amount_refunded": before}
        if charge.amount_refunded == charge.amount:
            previous["refunded"] = False
        self._emit(
            "charge.refunded", self._charge_obj(charge, t), t, scope, api=True, previous=previous
        )
        key = (scope.account, currency)
        self.net[key] = self.net.get(key, 0) + settled
        refund_bt = self._simple_bt(
            bt_id, scope, t, currency, settled, refund_id, "refund", "refund", "REFUND FOR CHARGE"
        )
        refund_bt["exchange_rate"] = rate
        self._book(scope, refund_bt)
        later = t + self.rng.randint(DAY_S, 3 * DAY_S)
        ref = "".join(self.rng.choices("0123456789", k=23))
        updated = self._refund_obj(refund_id, charge, amount, t, bt_id, ref)
        previous_ref: Json = {
            "destination_details": {"card": {"reference": None, "reference_status": "pending"}}
        }
        self._emit("refund.updated", updated, later, scope, previous=previous_ref)
        self._emit(
            "charge.refund.updated",
            self._refund_obj(refund_id, charge, amount, t, bt_id, ref),
            later,
            scope,
            previous=previous_ref,
        )

    def _dispute_bt(self, dispute_id: str, charge: _Charge, amount: int, fee: int, t: int) -> Json:
        """``amount`` in the charge's currency, ``fee`` already in the settlement currency."""
        withdrawal = amount < 0
        currency, settled, rate = _settled(charge.scope.account, charge.currency, amount)
        return {
            "id": self._id("txn_", charge.scope, t),
            "object": "balance_transaction",
            "amount": settled,
            "available_on": _midnight_after(t, 2),
            "balance_type": "payments",
            "created": t,
            "currency": currency,
            "description": f"Chargeback {'withdrawal' if withdrawal else 'reversal'} "
            f"for {charge.id}",
            "exchange_rate": rate,
            "fee": fee,
            "fee_details": [
                {
                    "amount": fee,
                    "application": None,
                    "currency": currency,
                    "description": "Dispute fee",
                    "type": "stripe_fee",
                }
            ],
            "net": settled - fee,
            "reporting_category": "dispute" if withdrawal else "dispute_reversal",
            "source": dispute_id,
            "status": "pending",
            "type": "adjustment",
        }

    def _dispute(
        self, charge: _Charge, start: int, outcome: str, reinstate_share: int = 100
    ) -> None:
        """created + funds_withdrawn (same second), updated (evidence), closed won/lost,
        and for a won dispute funds_reinstated (same second as closed)."""
        scope = charge.scope
        t = start
        dispute_id = self._id("dp_", scope, t)
        amount = charge.amount - charge.amount_refunded
        fee = DISPUTE_FEE[_settled(scope.account, charge.currency, 0)[0]]  # in the settled one
        reason = self.rng.choice(DISPUTE_REASONS)
        due_by = _midnight_after(t, 14) - 1
        charge.disputed = True

        def dispute(status: str, bts: list[Json], submissions: int, now: int) -> Json:
            evidence: Json = dict.fromkeys(EVIDENCE_KEYS)
            evidence["enhanced_evidence"] = {}
            if submissions:
                evidence["customer_email_address"] = charge.customer.email
                evidence["customer_name"] = charge.customer.name
                evidence["uncategorized_text"] = "Customer received the goods; see receipt."
            return {
                "id": dispute_id,
                "object": "dispute",
                "amount": amount,
                "balance_transactions": [
                    {**bt, "fee_details": [dict(item) for item in bt["fee_details"]]} for bt in bts
                ],
                "charge": charge.id,
                "created": t,
                "currency": charge.currency,
                "enhanced_eligibility_types": [],
                "evidence": evidence,
                "evidence_details": {
                    "due_by": due_by,
                    "enhanced_eligibility": {},
                    "has_evidence": submissions > 0,
                    "past_due": now > due_by and submissions == 0,
                    "submission_count": submissions,
                },
                "is_charge_refundable": False,
                "livemode": False,
                "metadata": {},
                "payment_intent": charge.payment_intent,
                "payment_method_details": {
                    "card": {
                        "brand": charge.customer.card[0],
                        "case_type": "chargeback",
                        "network_reason_code": "10.4" if reason == "fraudulent" else "13.1",
                    },
                    "type": "card",
                },
                "reason": reason,
                "status": status,
            }

        self._emit("charge.dispute.created", dispute("needs_response", [], 0, t), t, scope)
        withdrawal = self._dispute_bt(dispute_id, charge, -amount, fee, t)
        self._emit(
            "charge.dispute.funds_withdrawn",
            dispute("needs_response", [withdrawal], 0, t),
            t,
            scope,
            effect=("dispute", withdrawal["currency"], withdrawal["net"], t),
        )
        key = (scope.account, withdrawal["currency"])
        self.net[key] = self.net.get(key, 0) + withdrawal["net"]
        self._book(scope, withdrawal)
        t2 = t + self.rng.randint(2 * DAY_S, 10 * DAY_S)
        self._emit(
            "charge.dispute.updated",
            dispute("under_review", [withdrawal], 1, t2),
            t2,
            scope,
            api=True,
            previous={"status": "needs_response", "evidence_details": {"has_evidence": False}},
        )
        t3 = t2 + self.rng.randint(20 * DAY_S, 60 * DAY_S)
        self._emit("charge.dispute.closed", dispute(outcome, [withdrawal], 1, t3), t3, scope)
        if outcome == "won":
            back = amount * reinstate_share // 100
            fee_back = fee * reinstate_share // 100
            reinstatement = self._dispute_bt(dispute_id, charge, back, -fee_back, t3)
            self._emit(
                "charge.dispute.funds_reinstated",
                dispute("won", [withdrawal, reinstatement], 1, t3),
                t3,
                scope,
                effect=("dispute", reinstatement["currency"], reinstatement["net"], t3),
            )
            self.net[key] += reinstatement["net"]
            self._book(scope, reinstatement)

    def _payment_story(
        self,
        scope: _Scope,
        start: int,
        *,
        currency: str | None = None,
        refunds: tuple[int, ...] | None = None,
        dispute: str | None = None,
        reinstate_share: int = 100,
    ) -> _Charge:
        customer = self._pick_customer(scope, start, currency)
        t = start + self.rng.randint(1, 30)
        amount = self._amount(customer.currency)
        description = self.rng.choice((None, f"Order #{self.rng.randint(1000, 99999)}"))
        fail_first = 1 if self.rng.random() < 0.04 else 0
        pi_id: str | None = None
        secret: str | None = None
        if fail_first:
            failed, t = self._pay(scope, customer, amount, t, description, fail_first=1)
            pi_id, secret = failed.payment_intent, self._chars(25)
            t += self.rng.randint(30, 600)
        charge, t = self._pay(scope, customer, amount, t, description, pi_id=pi_id, secret=secret)
        if refunds is None:
            roll = self.rng.random()
            if roll < 0.08:
                refunds = (self.rng.randint(10, 60),)
            elif roll < 0.12:
                refunds = (100,)
            elif roll < 0.13:
                refunds = (40, 60)
            else:
                refunds = ()
        later = t
        for percent in refunds:
            later += self.rng.randint(3600, 5 * DAY_S)
            remaining = charge.amount - charge.amount_refunded
            part = remaining if percent >= 100 else max(charge.amount * percent // 100, 1)
            part = min(part, remaining)
            if charge.currency in ZERO_DECIMAL or part == remaining:
                pass
            else:
                part = max(part - part % 50, 1)
            if part > 0:
                self._refund(charge, part, later)
        if dispute is None and charge.amount_refunded == 0 and self.rng.random() < 0.02:
            dispute = "won" if self.rng.random() < 0.55 else "lost"
        if dispute is not None:
            self._dispute(
                charge, later + self.rng.randint(3 * DAY_S, 30 * DAY_S), dispute, reinstate_share
            )
        return charge

    # ---------------------------------------------------------------- stories: subscriptions
    def _price(self, scope: _Scope, currency: str) -> tuple[int, str, str, str]:
        amount, name = self.rng.choice(PLANS[currency])
        key = (scope.account, currency, amount)
        if key not in self.prices:
            self.prices[key] = (
                self._id("price_", scope, self.base_s),
                "prod_" + self._chars(14),
            )
        price_id, product_id = self.prices[key]
        return amount, name, price_id, product_id

    def _subscription_story(
        self, scope: _Scope, start: int, paths: Sequence[str] | None = None
    ) -> None:
        """customer.subscription.created, then one invoice per month, each along a path:
        paid | retry_paid | uncollectible_paid | void; maybe customer.subscription.deleted."""
        customer = self._pick_customer(scope, start)
        currency = customer.currency
        amount, plan_name, price_id, product_id = self._price(scope, currency)
        t = start + self.rng.randint(1, 20)
        sub_id = self._id("sub_", scope, t)
        item_id = "si_" + self._chars(14)
        send_invoice = self.rng.random() < 0.25
        if paths is None:
            cycles = self.rng.randint(1, 5)
            paths = [
                self.rng.choices(
                    ("paid", "retry_paid", "uncollectible_paid", "void"), (78, 10, 6, 6)
                )[0]
                for _ in range(cycles)
            ]
        sub: Json = {"status": "incomplete", "latest_invoice": None, "period_start": t}

        def sub_obj(now: int) -> Json:
            period_start = sub["period_start"]
            return {
                "id": sub_id,
                "object": "subscription",
                "application": None,
                "application_fee_percent": None,
                "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
                "billing_cycle_anchor": t,
                "billing_cycle_anchor_config": None,
                "billing_mode": {"type": "flexible"},
                "cancel_at": None,
                "cancel_at_period_end": False,
                "canceled_at": now if sub["status"] == "canceled" else None,
                "cancellation_details": {"comment": None, "feedback": None, "reason": None},
                "collection_method": "send_invoice" if send_invoice else "charge_automatically",
                "created": t,
                "currency": currency,
                "customer": customer.id,
                "days_until_due": 30 if send_invoice else None,
                "default_payment_method": customer.payment_method,
                "description": None,
                "discounts": [],
                "ended_at": now if sub["status"] == "canceled" else None,
                "items": {
                    "object": "list",
                    "data": [
                        {
                            "id": item_id,
                            "object": "subscription_item",
                            "created": t,
                            "current_period_end": period_start + 30 * DAY_S,
                            "current_period_start": period_start,
                            "discounts": [],
                            "metadata": {},
                            "price": {
                                "id": price_id,
                                "object": "price",
                                "active": True,
                                "billing_scheme": "per_unit",
                                "currency": currency,
                                "nickname": plan_name,
                                "product": product_id,
                                "recurring": {
                                    "interval": "month",
                                    "interval_count": 1,
                                    "usage_type": "licensed",
                                },
                                "type": "recurring",
                                "unit_amount": amount,
                                "unit_amount_decimal": str(amount),
                            },
                            "quantity": 1,
                            "subscription": sub_id,
                            "tax_rates": [],
                        }
                    ],
                    "has_more": False,
                    "total_count": 1,
                    "url": f"/v1/subscription_items?subscription={sub_id}",
                },
                "latest_invoice": sub["latest_invoice"],
                "livemode": False,
                "metadata": {},
                "on_behalf_of": None,
                "pause_collection": None,
                "start_date": t,
                "status": sub["status"],
                "test_clock": None,
                "trial_end": None,
                "trial_start": None,
            }

        def set_status(status: str, now: int) -> None:
            if sub["status"] == status:
                return
            previous = {"status": sub["status"]}
            sub["status"] = status
            self._emit("customer.subscription.updated", sub_obj(now), now, scope, previous=previous)

        self._emit("customer.subscription.created", sub_obj(t), t, scope, api=True)
        cycle_start = t
        for index, path in enumerate(paths):
            if index == 0 and path in ("uncollectible_paid", "void"):
                path = "retry_paid"  # a first invoice that is never paid leaves no subscription
            sub["period_start"] = cycle_start
            end = self._invoice_cycle(
                scope,
                customer,
                sub_id,
                item_id,
                price_id,
                product_id,
                amount,
                cycle_start,
                first=index == 0,
                path=path,
                send_invoice=send_invoice,
                sub=sub,
                set_status=set_status,
            )
            cycle_start = max(cycle_start + 30 * DAY_S, end + 1)
        if self.rng.random() < 0.3:
            set_status("canceled", cycle_start)
            self._emit("customer.subscription.deleted", sub_obj(cycle_start), cycle_start, scope)

    def _invoice_cycle(
        self,
        scope: _Scope,
        customer: _Customer,
        sub_id: str,
        item_id: str,
        price_id: str,
        product_id: str,
        amount: int,
        start: int,
        *,
        first: bool,
        path: str,
        send_invoice: bool,
        sub: Json,
        set_status: Any,
    ) -> int:
        """One invoice along its path. -> the time of its last event."""
        currency = customer.currency
        created = start
        invoice_id = self._id("in_", scope, created)
        number = f"{customer.invoice_prefix}-{customer.invoice_sequence:04d}"
        customer.invoice_sequence += 1
        line_id = "il_" + self._id("", scope, created)
        inv: Json = {
            "status": "draft",
            "attempt_count": 0,
            "amount_paid": 0,
            "finalized_at": None,
            "paid_at": None,
            "voided_at": None,
            "marked_uncollectible_at": None,
            "next_payment_attempt": None if send_invoice else created + 3600,
            "payments": [],
        }
        due_date = _midnight_after(created, 30) if send_invoice else None
        billing_reason = "subscription_create" if first else "subscription_cycle"

        def invoice_obj(now: int) -> Json:
            finalized = inv["finalized_at"] is not None
            paid = inv["amount_paid"]
            remaining = 0 if inv["status"] == "void" else amount - paid
            return {
                "id": invoice_id,
                "object": "invoice",
                "account_country": scope.country,
                "account_name": "Stripe Ledger Demo",
                "account_tax_ids": None,
                "amount_due": amount,
                "amount_overpaid": 0,
                "amount_paid": paid,
                "amount_remaining": remaining,
                "amount_shipping": 0,
                "application": None,
                "attempt_count": inv["attempt_count"],
                "attempted": inv["attempt_count"] > 0,
                "auto_advance": inv["status"] in ("draft", "open"),
                "automatic_tax": {
                    "disabled_reason": None,
                    "enabled": False,
                    "liability": None,
                    "provider": None,
                    "status": None,
                },
                "automatically_finalizes_at": None if finalized else created + 3600,
                "billing_reason": billing_reason,
                "collection_method": "send_invoice" if send_invoice else "charge_automatically",
                "created": created,
                "currency": currency,
                "custom_fields": None,
                "customer": customer.id,
                "customer_account": None,
                "customer_address": None,
                "customer_email": customer.email,
                "customer_name": customer.name,
                "customer_phone": None,
                "customer_shipping": None,
                "customer_tax_exempt": "none",
                "customer_tax_ids": [],
                "default_payment_method": None,
                "default_source": None,
                "default_tax_rates": [],
                "description": None,
                "discounts": [],
                "due_date": due_date,
                "effective_at": inv["finalized_at"],
                "ending_balance": 0 if finalized else None,
                "footer": None,
                "from_invoice": None,
                "hosted_invoice_url": f"https://invoice.stripe.com/i/{invoice_id[3:]}"
                if finalized
                else None,
                "invoice_pdf": f"https://pay.stripe.com/invoice/{invoice_id[3:]}/pdf"
                if finalized
                else None,
                "issuer": {"type": "self"},
                "last_finalization_error": None,
                "latest_revision": None,
                "lines": {
                    "object": "list",
                    "data": [
                        {
                            "id": line_id,
                            "object": "line_item",
                            "amount": amount,
                            "currency": currency,
                            "description": f"1 × {product_id} (at {amount} / month)",
                            "discount_amounts": [],
                            "discountable": True,
                            "discounts": [],
                            "invoice": invoice_id,
                            "livemode": False,
                            "metadata": {},
                            "parent": {
                                "invoice_item_details": None,
                                "subscription_item_details": {
                                    "invoice_item": None,
                                    "proration": False,
                                    "proration_details": {"credited_items": None},
                                    "subscription": sub_id,
                                    "subscription_item": item_id,
                                },
                                "type": "subscription_item_details",
                            },
                            "period": {"end": start + 30 * DAY_S, "start": start},
                            "pretax_credit_amounts": [],
                            "pricing": {
                                "price_details": {"price": price_id, "product": product_id},
                                "type": "price_details",
                                "unit_amount_decimal": str(amount),
                            },
                            "quantity": 1,
                            "subtotal": amount,
                            "taxes": [],
                        }
                    ],
                    "has_more": False,
                    "total_count": 1,
                    "url": f"/v1/invoices/{invoice_id}/lines",
                },
                "livemode": False,
                "metadata": {},
                "next_payment_attempt": inv["next_payment_attempt"],
                "number": number if finalized else None,
                "on_behalf_of": None,
                "parent": {
                    "quote_details": None,
                    "subscription_details": {"metadata": {}, "subscription": sub_id},
                    "type": "subscription_details",
                },
                "payment_settings": {
                    "default_mandate": None,
                    "payment_method_options": None,
                    "payment_method_types": None,
                },
                "payments": {
                    "object": "list",
                    "data": [
                        dict(
                            p,
                            payment=dict(p["payment"]),
                            status_transitions=dict(p["status_transitions"]),
                        )
                        for p in inv["payments"]
                    ],
                    "has_more": False,
                    "total_count": len(inv["payments"]),
                    "url": f"/v1/invoices/{invoice_id}/payments",
                },
                "period_end": start,
                "period_start": start - 30 * DAY_S if not first else start,
                "post_payment_credit_notes_amount": 0,
                "pre_payment_credit_notes_amount": 0,
                "receipt_number": None,
                "rendering": None,
                "shipping_cost": None,
                "shipping_details": None,
                "starting_balance": 0,
                "statement_descriptor": None,
                "status": inv["status"],
                "status_transitions": {
                    "finalized_at": inv["finalized_at"],
                    "marked_uncollectible_at": inv["marked_uncollectible_at"],
                    "paid_at": inv["paid_at"],
                    "voided_at": inv["voided_at"],
                },
                "subtotal": amount,
                "subtotal_excluding_tax": amount,
                "test_clock": None,
                "total": amount,
                "total_discount_amounts": [],
                "total_excluding_tax": amount,
                "total_pretax_credit_amounts": [],
                "total_taxes": [],
                "webhooks_delivered_at": None if now == created else created,
            }

        self._emit("invoice.created", invoice_obj(created), created, scope, api=first)
        t = created if first else created + 3600
        inv["finalized_at"] = t
        inv["status"] = "open"
        inv["next_payment_attempt"] = None if send_invoice else t
        finalized_event = self._emit("invoice.finalized", invoice_obj(t), t, scope, api=first)
        sub["latest_invoice"] = invoice_id
        description = "Subscription creation" if first else "Subscription update"
        pi_id = self._id("pi_", scope, t, "3")
        secret = self._chars(25)
        self.pi_created[pi_id] = t
        payment: Json = {
            "id": "inpay_" + self._id("", scope, t),
            "object": "invoice_payment",
            "amount_paid": None,
            "amount_requested": amount,
            "created": t,
            "currency": currency,
            "invoice": invoice_id,
            "is_default": True,
            "livemode": False,
            "payment": {"payment_intent": pi_id, "type": "payment_intent"},
            "status": "open",
            "status_transitions": {"canceled_at": None, "paid_at": None},
        }
        inv["payments"] = [payment]
        self._emit(
            "payment_intent.created",
            self._payment_intent_obj(
                pi_id,
                customer,
                amount,
                currency,
                t,
                "requires_payment_method",
                None,
                description,
                secret,
            ),
            t,
            scope,
        )
        if send_invoice:
            t += self.rng.randint(3600, 10 * DAY_S)  # the customer pays on the hosted page
        else:
            t += self.rng.randint(1, 5)

        def fail(attempt_at: int, retry_in: int | None) -> int:
            _, at = self._pay(
                scope,
                customer,
                amount,
                attempt_at,
                description,
                api=False,
                fail_first=1,
                pi_id=pi_id,
                secret=secret,
            )
            inv["attempt_count"] += 1
            inv["next_payment_attempt"] = (
                at + retry_in if retry_in is not None and not send_invoice else None
            )
            self._emit("invoice.payment_failed", invoice_obj(at), at, scope)
            if not first:
                set_status("past_due", at)
            return at

        def pay(attempt_at: int) -> int:
            _, at = self._pay(
                scope,
                customer,
                amount,
                attempt_at,
                description,
                api=False,
                pi_id=pi_id,
                secret=secret,
            )
            inv["attempt_count"] += 1
            inv["amount_paid"] = amount
            inv["paid_at"] = at
            inv["status"] = "paid"
            inv["next_payment_attempt"] = None
            payment["amount_paid"] = amount
            payment["status"] = "paid"
            payment["status_transitions"] = {"canceled_at": None, "paid_at": at}
            paid_event = self._emit("invoice.paid", invoice_obj(at), at, scope)
            self._emit("invoice.payment_succeeded", invoice_obj(at), at, scope)
            set_status("active", at)
            if path == "paid" and first and self.want_invoice_reorder:
                self.want_invoice_reorder = False
                self.forced_pairs.append((finalized_event["id"], paid_event["id"]))
            return at

        if path == "paid":
            return pay(t)
        if path == "retry_paid":
            at = fail(t, 3 * DAY_S)
            return pay(at + 3 * DAY_S)
        if path == "uncollectible_paid":
            at = t
            for attempt in range(3):
                last = attempt == 2
                at = fail(at, None if last else 3 * DAY_S) + (0 if last else 3 * DAY_S)
            at += DAY_S
            inv["status"] = "uncollectible"
            inv["marked_uncollectible_at"] = at
            inv["next_payment_attempt"] = None
            self._emit("invoice.marked_uncollectible", invoice_obj(at), at, scope)
            set_status("unpaid", at)
            return pay(at + self.rng.randint(2 * DAY_S, 20 * DAY_S))
        # void: sometimes after a failed attempt, always by a merchant's API call
        at = t
        if self.rng.random() < 0.5:
            at = fail(t, 3 * DAY_S)
        at += self.rng.randint(3600, 2 * DAY_S)
        inv["status"] = "void"
        inv["voided_at"] = at
        inv["next_payment_attempt"] = None
        payment["status"] = "canceled"
        payment["status_transitions"] = {"canceled_at": at, "paid_at": None}
        self._emit("invoice.voided", invoice_obj(at), at, scope, api=True)
        set_status("active", at)
        return at

    # ---------------------------------------------------------------- balance transactions
    def _book(self, scope: _Scope, bt: Json) -> None:
        """A balance transaction Stripe now holds; all but payouts wait for a payout."""
        self.bts[scope.account].append(bt)
        if bt["type"] != "payout":
            self.unpaid.setdefault((scope.account, bt["currency"]), []).append(bt)

    def _simple_bt(
        self,
        bt_id: str,
        scope: _Scope,
        created: int,
        currency: str,
        amount: int,
        source: str,
        bt_type: str,
        category: str,
        description: str,
    ) -> Json:
        """A fee-less balance transaction, available at once (refunds, payouts, reversals)."""
        return {
            "id": bt_id,
            "object": "balance_transaction",
            "amount": amount,
            "available_on": created,
            "balance_type": "payments",
            "created": created,
            "currency": currency,
            "description": description,
            "exchange_rate": None,
            "fee": 0,
            "fee_details": [],
            "net": amount,
            "reporting_category": category,
            "source": source,
            "status": "available",
            "type": bt_type,
        }

    def _book_payout(
        self,
        scope: _Scope,
        bt_id: str,
        created: int,
        currency: str,
        amount: int,
        payout_id: str,
        bt_type: str,
    ) -> None:
        """A payout's transaction: the payout takes ``amount`` out of the balance when it is
        created; a cancellation or a failure puts it back (reporting_category payout_reversal)."""
        sign, category, description = PAYOUT_BTS[bt_type]
        self._book(
            scope,
            self._simple_bt(
                bt_id,
                scope,
                created,
                currency,
                sign * amount,
                payout_id,
                bt_type,
                category,
                description,
            ),
        )

    def _payout_members(
        self, key: tuple[str | None, str], at: int, share: int, credits_max: int | None = None
    ) -> list[Json]:
        """The oldest available transactions not yet paid out, up to ``share`` percent of
        what is available (or only the ``credits_max`` oldest credits): an automatic payout's
        amount is exactly their nets' sum."""
        ready = [
            bt
            for bt in self.unpaid.get(key, [])
            if bt["available_on"] <= at and bt["created"] <= at
        ]
        # Debits first (a refund is paid out with the next payout), then the oldest credits.
        ready.sort(key=lambda bt: (bt["net"] >= 0, bt["available_on"], bt["created"], bt["id"]))
        if credits_max is not None:
            return [bt for bt in ready if bt["net"] > 0][:credits_max]
        target = sum(bt["net"] for bt in ready) * share // 100
        members: list[Json] = []
        total = 0
        for bt in ready:
            if total >= target and members:
                break
            members.append(bt)
            total += bt["net"]
        return members

    def _take_for_payout(
        self,
        key: tuple[str | None, str],
        at: int,
        minimum: int,
        force: bool,
        share: int | None,
        credits_max: int | None,
    ) -> list[Json] | None:
        """The transactions a payout at ``at`` pays out, taken off the unpaid list; None when
        less than ``minimum`` (1 when forced) is available."""
        everything = self._payout_members(key, at, 100)
        if sum(bt["net"] for bt in everything) < (1 if force else minimum):
            return None
        drawn = self.rng.randint(50, 90)
        members = self._payout_members(key, at, drawn if share is None else share, credits_max)
        if sum(bt["net"] for bt in members) <= 0:
            return None
        taken = {bt["id"] for bt in members}
        self.unpaid[key] = [bt for bt in self.unpaid[key] if bt["id"] not in taken]
        return members

    # ---------------------------------------------------------------- stories: payouts
    def _payout_story(
        self,
        scope: _Scope,
        start: int,
        currency: str,
        ending: str = "paid",
        force: bool = False,
        share: int | None = None,
        credits_max: int | None = None,
    ) -> bool:
        """An automatic payout of ``share`` percent (default: 50 to 90) of the available
        funds, paid, failed after paid, or canceled; False when too little is available."""
        key = (scope.account, currency)
        minimum = 1000  # $10.00, 10.00 EUR or 1000 yen
        paid_out = self._take_for_payout(key, start, minimum, force, share, credits_max)
        if paid_out is None:
            return False
        amount = sum(bt["net"] for bt in paid_out)
        available = self.net.get(key, 0)
        t = start
        payout_id = self._id("po_", scope, t)
        bt_id = self._id("txn_", scope, t)
        self._book_payout(scope, bt_id, t, currency, amount, payout_id, "payout")
        self.payout_members[scope.account][payout_id] = [bt_id, *sorted(b["id"] for b in paid_out)]
        destination = self._id("ba_", scope, self.base_s)
        state: Json = {"status": "pending", "failure": None}

        def payout(now: int) -> Json:
            failed = state["status"] == "failed"
            return {
                "id": payout_id,
                "object": "payout",
                "amount": amount,
                "application_fee": None,
                "application_fee_amount": None,
                "arrival_date": _midnight_after(start, 2),
                "automatic": True,
                "balance_transaction": bt_id,
                "created": start,
                "currency": currency,
                "description": "STRIPE PAYOUT",
                "destination": destination,
                "failure_balance_transaction": state["failure"],
                "failure_code": "account_closed" if failed else None,
                "failure_message": "The bank account has been closed." if failed else None,
                "livemode": False,
                "metadata": {},
                "method": "standard",
                "original_payout": None,
                "payout_method": None,
                "reconciliation_status": "completed"
                if state["status"] in ("paid", "failed")
                else "not_applicable",
                "reversed_by": None,
                "source_type": "card",
                "statement_descriptor": None,
                "status": state["status"],
                "trace_id": {
                    "status": "supported" if state["status"] == "paid" else "pending",
                    "value": None,
                },
                "type": "bank_account",
            }

        self._emit("payout.created", payout(t), t, scope, effect=("payout", currency, -amount, t))
        self.net[key] = available - amount
        if ending == "canceled":
            t += self.rng.randint(60, 3600)
            state["status"] = "canceled"
            cancel_id = self._id("txn_", scope, t, rng=self.aux_rng)
            self._book_payout(scope, cancel_id, t, currency, amount, payout_id, "payout_cancel")
            self._emit(
                "payout.canceled",
                payout(t),
                t,
                scope,
                api=True,
                effect=("payout_back", currency, amount, t),
            )
            self.net[key] += amount
            return True
        t += self.rng.randint(3600, 6 * 3600)
        state["status"] = "in_transit"
        self._emit("payout.updated", payout(t), t, scope, previous={"status": "pending"})
        t = _midnight_after(t, 2) + self.rng.randint(3600, 8 * 3600)
        state["status"] = "paid"
        paid_event = self._emit("payout.paid", payout(t), t, scope)
        if ending == "failed":
            t += self.rng.randint(DAY_S, 3 * DAY_S)
            state["status"] = "failed"
            state["failure"] = self._id("txn_", scope, t)
            self._book_payout(
                scope, state["failure"], t, currency, amount, payout_id, "payout_failure"
            )
            failed_event = self._emit(
                "payout.failed", payout(t), t, scope, effect=("payout_back", currency, amount, t)
            )
            self.net[key] += amount
            self.forced_pairs.append((paid_event["id"], failed_event["id"]))
        return True

    # ---------------------------------------------------------------- the whole history
    def _advance(self) -> int:
        self.clock += self.rng.randint(20, 900)
        return self.clock

    def scripted(self) -> None:
        """The stories every history has, whatever its size."""
        platform, connect = self.platform, self.connect
        self._payment_story(platform, self._advance(), currency="usd", refunds=(30,))
        self._payment_story(platform, self._advance(), currency="usd", refunds=(100,))
        self._payment_story(platform, self._advance(), currency="jpy", refunds=(25,))
        self._payment_story(platform, self._advance(), currency="jpy", refunds=(100,))
        self._subscription_story(
            platform, self._advance(), paths=("paid", "uncollectible_paid", "void", "retry_paid")
        )
        for currency in ("usd", "jpy"):
            for _ in range(3):
                self._payment_story(platform, self._advance(), currency=currency, refunds=())
        self._payment_story(platform, self._advance(), currency="usd", refunds=(), dispute="won")
        self._payment_story(platform, self._advance(), currency="usd", refunds=(), dispute="lost")
        self._payment_story(
            platform, self._advance(), currency="jpy", refunds=(), dispute="won", reinstate_share=60
        )
        self._payment_story(connect, self._advance(), currency="eur", refunds=())
        self._payment_story(connect, self._advance(), currency="eur", refunds=(50,))
        # Automatic payouts pay out available funds only: wait until the charges above are.
        self.clock = _midnight_after(self.clock, 3)
        # The canceled one first: its funds come back at once for the next two.
        self._payout_story(platform, self._advance(), "usd", "canceled", force=True, credits_max=2)
        self.clock += 3600
        self._payout_story(platform, self._advance(), "usd", "failed", force=True, credits_max=2)
        self._payout_story(platform, self._advance(), "usd", "paid", force=True, share=100)
        self._payout_story(platform, self._advance(), "jpy", "paid", force=True)
        self._payout_story(connect, self._advance(), "eur", "paid", force=True)

    def random_story(self) -> None:
        scope = self.connect if self.rng.random() < 0.12 else self.platform
        start = self._advance()
        roll = self.rng.random()
        if roll < 0.04:
            currency = self._currency(scope)
            ending = self.rng.choices(("paid", "failed", "canceled"), (90, 4, 6))[0]
            if self._payout_story(scope, start, currency, ending):
                return
        if roll < 0.07:
            self._new_customer(scope, start)
        elif roll < 0.25:
            self._subscription_story(scope, start)
        else:
            self._payment_story(scope, start)

    def build(self) -> DemoHistory:
        story_target = max(self.target - self.target // (BALANCE_EVERY + 1), 1)
        self.scripted()
        while self.story_events < story_target:
            self.random_story()
        self.entries.sort(key=lambda entry: (entry.created, entry.seq))
        events = self._with_balances()
        deliveries = self._deliveries(events)
        history = DemoHistory(seed=0, events=events, deliveries=deliveries)
        self._api_state(history, events[-1]["created"] if events else self.base_s)
        return history

    def _api_state(self, history: DemoHistory, end: int) -> None:
        """What Stripe's API holds at ``end``: the transactions (pending until available_on),
        the final Balance per account, and the last state of each object they name."""
        for account, bts in self.bts.items():
            listed = []
            available: dict[str, int] = {}
            pending: dict[str, int] = {}
            for bt in sorted(bts, key=lambda item: (item["created"], item["id"])):
                done = bt["available_on"] <= end
                listed.append({**bt, "status": "available" if done else "pending"})
                funds = available if done else pending
                funds[bt["currency"]] = funds.get(bt["currency"], 0) + bt["net"]
            history.balance_transactions[account] = listed
            currencies = sorted(set(available) | set(pending))
            for currency in currencies:
                available.setdefault(currency, 0)
                pending.setdefault(currency, 0)
            history.balances[account] = {
                "object": "balance",
                "available": [
                    {"amount": available[c], "currency": c, "source_types": {"card": available[c]}}
                    for c in currencies
                ],
                "livemode": False,
                "pending": [
                    {"amount": pending[c], "currency": c, "source_types": {"card": pending[c]}}
                    for c in currencies
                ],
            }
        history.payout_members = {k: dict(v) for k, v in self.payout_members.items()}
        named = {bt["source"] for bts in self.bts.values() for bt in bts}
        for event in history.events:  # by created: the last one is the final state
            obj = event["data"]["object"]
            if obj.get("id") in named:
                history.sources[obj["id"]] = obj

    def _with_balances(self) -> list[Json]:
        """The events by created, with a balance.available snapshot now and then and one per
        account at the end, computed from the story so far: a charge's net is pending until its
        available_on, refunds, dispute transactions and payouts move available funds at once."""
        events: list[Json] = []
        available: dict[str | None, dict[str, int]] = {None: {}, self.connect.account: {}}
        pending: dict[str | None, list[tuple[int, str, int]]] = {None: [], self.connect.account: []}
        since = 0
        for entry in self.entries:
            events.append(entry.event)
            account = entry.event["account"]
            if entry.effect is not None:
                kind, currency, amount, available_on = entry.effect
                if kind == "charge":
                    pending[account].append((available_on, currency, amount))
                else:
                    funds = available[account]
                    funds[currency] = funds.get(currency, 0) + amount
            since += 1
            if since >= BALANCE_EVERY and self.rng.random() < 0.25:
                since = 0
                events.append(self._balance_event(account, entry.created, available, pending))
        end = self.entries[-1].created + 60 if self.entries else self.base_s
        for account in (None, self.connect.account):
            if available[account] or pending[account]:
                events.append(self._balance_event(account, end, available, pending))
        return events

    def _balance_event(
        self,
        account: str | None,
        now: int,
        available: dict[str | None, dict[str, int]],
        pending: dict[str | None, list[tuple[int, str, int]]],
    ) -> Json:
        funds = available[account]
        still: list[tuple[int, str, int]] = []
        for item in pending[account]:
            if item[0] <= now:
                funds[item[1]] = funds.get(item[1], 0) + item[2]
            else:
                still.append(item)
        pending[account] = still
        waiting: dict[str, int] = {}
        for _, currency, amount in still:
            waiting[currency] = waiting.get(currency, 0) + amount
        currencies = sorted(set(funds) | set(waiting))
        shown_available: dict[str, int] = {}
        shown_pending: dict[str, int] = {}
        for currency in currencies:
            # Payouts here may spend funds that are still pending: show the same total without
            # a negative available amount (Stripe would not have paid them out).
            total = funds.get(currency, 0) + waiting.get(currency, 0)
            shown_available[currency] = max(min(funds.get(currency, 0), total), 0)
            shown_pending[currency] = total - shown_available[currency]
        balance: Json = {
            "object": "balance",
            "available": [
                {
                    "amount": shown_available[c],
                    "currency": c,
                    "source_types": {"card": shown_available[c]},
                }
                for c in currencies
            ],
            "connect_reserved": [{"amount": 0, "currency": c} for c in currencies],
            "livemode": False,
            "pending": [
                {
                    "amount": shown_pending[c],
                    "currency": c,
                    "source_types": {"card": shown_pending[c]},
                }
                for c in currencies
            ],
            "refund_and_dispute_prefunding": {
                "available": [{"amount": 0, "currency": c} for c in currencies],
                "pending": [{"amount": 0, "currency": c} for c in currencies],
            },
        }
        scope = self.platform if account is None else self.connect
        return {
            "id": self._id("evt_", scope, now),
            "object": "event",
            "account": account,
            "api_version": API_VERSION,
            "created": now,
            "data": {"object": balance},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": "balance.available",
        }

    def _deliveries(self, events: list[Json]) -> list[Json]:
        """By created, then: neighbours swapped, some delayed, ~3% delivered again later, and
        the forced pairs (a payout's failed before its paid, ...) delivered newest first."""
        rng = self.rng
        keys: list[float] = [float(index) for index in range(len(events))]
        index = 0
        while index < len(events) - 1:
            if rng.random() < SWAP_SHARE:
                keys[index], keys[index + 1] = keys[index + 1], keys[index]
                index += 2
                continue
            if rng.random() < DELAY_SHARE:
                keys[index] += rng.randint(2, 40) + 0.5
            index += 1
        forced = {event_id for pair in self.forced_pairs for event_id in pair}
        where = {event["id"]: i for i, event in enumerate(events) if event["id"] in forced}
        for older, newer in self.forced_pairs:
            older_key = keys[where[older]]
            if keys[where[newer]] > older_key:
                keys[where[newer]] = older_key - 0.125  # delivered right before the older one
        order: list[tuple[float, int, Json]] = [
            (key, position, event)
            for position, (key, event) in enumerate(zip(keys, events, strict=True))
        ]
        extra = len(events)
        for position, event in enumerate(events):
            if rng.random() < DUPLICATE_SHARE and event["id"] not in forced:
                copy = json.loads(json.dumps(event))
                order.append((position + rng.randint(1, 200) + 0.25, extra, copy))
                extra += 1
        order.sort(key=lambda item: (item[0], item[1]))
        deliveries = [item[2] for item in order]
        return deliveries


def generate(seed: int = 7, events: int = 400, base_s: int = BASE_TIMESTAMP) -> DemoHistory:
    """A history of about ``events`` distinct events (at least the ~150 of the scripted stories),
    starting at ``base_s`` (the same seed and base give the same history)."""
    # Hundreds of thousands of small dicts, none of them in a cycle: without this the cyclic
    # collector rescans the growing heap again and again and 100k events take 3x as long.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        history = _Builder(seed, max(int(events), 1), base_s).build()
    finally:
        if was_enabled:
            gc.enable()
    history.seed = seed
    return history


def generate_before(now_s: int, seed: int = 7, events: int = 400) -> DemoHistory:
    """The same history moved back by whole days, if need be, so that none of it is after
    ``now_s``: a demo shows a past, never a future (same seed and day, same history)."""
    history = generate(seed, events)
    last_s = history.events[-1]["created"] if history.events else BASE_TIMESTAMP
    if last_s <= now_s:
        return history
    days = -(-(last_s - now_s) // 86_400)  # ceiling: whole days keep the daily reports aligned
    return generate(seed, events, BASE_TIMESTAMP - days * 86_400)


def encode(event: Json) -> bytes:
    """Compact JSON bytes, UTF-8 (names may be Japanese or accented), as Stripe sends them."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def iter_payloads(seed: int = 7, events: int = 400) -> Iterator[bytes]:
    """The request bodies of the deliveries, in delivery order (duplicates included)."""
    for event in generate(seed, events).deliveries:
        yield encode(event)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cli.demo_history",
        description="Write a deterministic demo Stripe event history as JSON lines.",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--events", type=int, default=400, help="about this many distinct events")
    parser.add_argument("--out", help="JSON lines file (default: stdout); '-' for stdout")
    parser.add_argument(
        "--distinct", action="store_true", help="the distinct events by created, not deliveries"
    )
    args = parser.parse_args(argv)
    history = generate(args.seed, args.events)
    rows = history.events if args.distinct else history.deliveries
    if args.out and args.out != "-":
        with open(args.out, "wb") as handle:
            for event in rows:
                handle.write(encode(event) + b"\n")
    else:
        out = sys.stdout.buffer
        for event in rows:
            out.write(encode(event) + b"\n")
    print(json.dumps(history.summary(), ensure_ascii=False), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
