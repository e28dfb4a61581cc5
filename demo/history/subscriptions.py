"""Subscription stories: customer.subscription.created, one invoice a month along its path
(invoices.py), status changes (past_due, unpaid, active), maybe customer.subscription.deleted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from demo.history.customers import pick_customer
from demo.history.ids import DAY_S, Json
from demo.history.invoices import InvoiceCycle
from demo.history.model import Customer, Scope
from demo.history.world import World

PLANS = {
    "usd": ((2000, "Starter"), (4900, "Team"), (9900, "Business")),
    "eur": ((1500, "Starter"), (2900, "Team"), (8900, "Business")),
    "jpy": ((980, "ライト"), (3000, "スタンダード"), (5000, "プロ")),
}
PERIOD_S = 30 * DAY_S  # a month, as the demo counts it
CYCLES_MAX = 5  # invoices of a subscription with drawn paths
PATHS = ("paid", "retry_paid", "uncollectible_paid", "void")
PATH_WEIGHTS = (78, 10, 6, 6)
SEND_INVOICE_SHARE = 0.25  # subscriptions paid on the hosted invoice page, not charged
CANCEL_SHARE = 0.3
PRODUCT_ID_CHARS = 14


@dataclass
class Plan:
    amount: int  # per month, minor units
    name: str
    price_id: str
    product_id: str


def plan(world: World, scope: Scope, currency: str) -> Plan:
    """One of the currency's plans; its price and product ids are the account's, made once."""
    amount, name = world.rng.choice(PLANS[currency])
    key = (scope.account, currency, amount)
    if key not in world.prices:
        world.prices[key] = (
            world.ids.id("price_", scope, world.base_s),
            "prod_" + world.ids.chars(PRODUCT_ID_CHARS),
        )
    price_id, product_id = world.prices[key]
    return Plan(amount, name, price_id, product_id)


@dataclass
class Subscription:
    """One subscription as it goes: what its snapshots share, and its status now."""

    world: World
    scope: Scope
    customer: Customer
    plan: Plan
    id: str
    item_id: str
    created: int
    send_invoice: bool
    period_start: int
    status: str = "incomplete"
    latest_invoice: str | None = None

    def set_status(self, status: str, now: int) -> None:
        """customer.subscription.updated, when the status changes."""
        if self.status == status:
            return
        previous = {"status": self.status}
        self.status = status
        obj = self.obj(now)
        self.world.emit("customer.subscription.updated", obj, now, self.scope, previous=previous)

    def obj(self, now: int) -> Json:
        customer = self.customer
        canceled = self.status == "canceled"
        return {
            "id": self.id,
            "object": "subscription",
            "application": None,
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": self.created,
            "billing_cycle_anchor_config": None,
            "billing_mode": {"type": "flexible"},
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": now if canceled else None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "send_invoice" if self.send_invoice else "charge_automatically",
            "created": self.created,
            "currency": customer.currency,
            "customer": customer.id,
            "days_until_due": 30 if self.send_invoice else None,
            "default_payment_method": customer.payment_method,
            "description": None,
            "discounts": [],
            "ended_at": now if canceled else None,
            "items": {
                "object": "list",
                "data": [self._item_obj()],
                "has_more": False,
                "total_count": 1,
                "url": f"/v1/subscription_items?subscription={self.id}",
            },
            "latest_invoice": self.latest_invoice,
            "livemode": False,
            "metadata": {},
            "on_behalf_of": None,
            "pause_collection": None,
            "start_date": self.created,
            "status": self.status,
            "test_clock": None,
            "trial_end": None,
            "trial_start": None,
        }

    def _item_obj(self) -> Json:
        plan = self.plan
        return {
            "id": self.item_id,
            "object": "subscription_item",
            "created": self.created,
            "current_period_end": self.period_start + PERIOD_S,
            "current_period_start": self.period_start,
            "discounts": [],
            "metadata": {},
            "price": {
                "id": plan.price_id,
                "object": "price",
                "active": True,
                "billing_scheme": "per_unit",
                "currency": self.customer.currency,
                "nickname": plan.name,
                "product": plan.product_id,
                "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
                "type": "recurring",
                "unit_amount": plan.amount,
                "unit_amount_decimal": str(plan.amount),
            },
            "quantity": 1,
            "subscription": self.id,
            "tax_rates": [],
        }


def subscription_story(
    world: World, scope: Scope, start: int, paths: Sequence[str] | None = None
) -> None:
    """customer.subscription.created, then one invoice per month, each along a path:
    paid | retry_paid | uncollectible_paid | void; maybe customer.subscription.deleted."""
    rng = world.rng
    customer = pick_customer(world, scope, start)
    chosen = plan(world, scope, customer.currency)
    t = start + rng.randint(1, 20)
    sub_id = world.ids.id("sub_", scope, t)
    item_id = "si_" + world.ids.chars(14)
    send_invoice = rng.random() < SEND_INVOICE_SHARE
    if paths is None:
        cycles = rng.randint(1, CYCLES_MAX)
        paths = [rng.choices(PATHS, PATH_WEIGHTS)[0] for _ in range(cycles)]
    sub = Subscription(world, scope, customer, chosen, sub_id, item_id, t, send_invoice, t)
    world.emit("customer.subscription.created", sub.obj(t), t, scope, api=True)
    cycle_start = t
    for index, path in enumerate(paths):
        if index == 0 and path in ("uncollectible_paid", "void"):
            path = "retry_paid"  # a first invoice that is never paid leaves no subscription
        sub.period_start = cycle_start
        end = InvoiceCycle(world, sub, cycle_start, first=index == 0, path=path).run()
        cycle_start = max(cycle_start + PERIOD_S, end + 1)
    if rng.random() < CANCEL_SHARE:
        sub.set_status("canceled", cycle_start)
        world.emit("customer.subscription.deleted", sub.obj(cycle_start), cycle_start, scope)
