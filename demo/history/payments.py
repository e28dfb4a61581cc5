"""Payment stories: a payment intent paid (maybe after a declined attempt), the platform's
application fee of a connected charge, partial and full refunds, now and then a dispute."""

from __future__ import annotations

import dataclasses

from demo.history.customers import pick_customer
from demo.history.disputes import dispute_story
from demo.history.ids import DAY_S, Json, midnight_after
from demo.history.model import Charge, Customer, Scope
from demo.history.money import APPLICATION_FEE_PERCENT, ZERO_DECIMAL, settled, simple_bt
from demo.history.payment_objects import (
    CLIENT_SECRET_CHARS,
    Intent,
    charge_bt,
    charge_obj,
    new_intent,
    payment_intent_obj,
    refund_obj,
)
from demo.history.world import World

FAIL_FIRST_SHARE = 0.04  # payments whose first attempt is declined
DISPUTE_SHARE = 0.02  # payments never refunded that are disputed
DISPUTE_WON_SHARE = 0.55
ARN_DIGITS = 23  # a refund's acquirer reference number


def open_intent(
    world: World,
    scope: Scope,
    customer: Customer,
    amount: int,
    t: int,
    description: str | None,
    *,
    api: bool,
) -> Intent:
    """A new payment intent: payment_intent.created at ``t``."""
    intent = new_intent(world, scope, customer, amount, t, description)
    obj = payment_intent_obj(intent, "requires_payment_method", None)
    world.emit("payment_intent.created", obj, t, scope, api=api)
    return intent


def attempt(
    world: World, scope: Scope, intent: Intent, start: int, *, api: bool = True, fail: bool = False
) -> tuple[Charge, int]:
    """One attempt to pay ``intent`` a few seconds after ``start``: charge.failed +
    payment_intent.payment_failed, or payment_intent.succeeded + charge.succeeded (and the
    platform's application fee of a connected charge). -> (the charge, its time)."""
    t = start + world.rng.randint(1, 4)
    charge = Charge(
        world.ids.id("ch_", scope, t, "3"),
        intent.id,
        intent.customer,
        scope,
        intent.amount,
        intent.currency,
        t,
        intent.description,
        None,
    )
    if fail:
        charge.status, charge.failure_code = "failed", "card_declined"
        world.emit("charge.failed", charge_obj(world, charge), t, scope, api=api)
        failed = payment_intent_obj(intent, "requires_payment_method", charge.id, charge.id)
        world.emit("payment_intent.payment_failed", failed, t, scope, api=api)
        return charge, t
    if scope is world.connect:  # the platform takes an application fee of each
        fee_id = world.ids.id("fee_", world.platform, t, rng=world.aux_rng)
        charge.application_fee = (fee_id, max(intent.amount * APPLICATION_FEE_PERCENT // 100, 1))
    bt = charge.balance_transaction = charge_bt(world, charge)
    world.book(scope, bt)
    succeeded = payment_intent_obj(intent, "succeeded", charge.id)
    world.emit("payment_intent.succeeded", succeeded, t, scope, api=api)
    effect = ("charge", bt["currency"], bt["net"], bt["available_on"])
    world.emit("charge.succeeded", charge_obj(world, charge), t, scope, api=api, effect=effect)
    if charge.application_fee is not None:
        _application_fee(world, charge, t)
    return charge, t


def _application_fee(world: World, charge: Charge, t: int) -> None:
    """application_fee.created on the platform, and the platform's balance transaction
    (type application_fee, reporting category platform_earning), pending like the charge."""
    assert charge.application_fee is not None
    fee_id, amount = charge.application_fee
    platform = world.platform
    currency, amount_settled, rate = settled(None, charge.currency, amount)  # the platform's
    bt = simple_bt(
        world.ids.id("txn_", platform, t, rng=world.aux_rng),
        t,
        currency,
        amount_settled,
        fee_id,
        "application_fee",
        "platform_earning",
        f"Application fee from {charge.scope.account}",
    )
    bt.update(available_on=midnight_after(t, 2), status="pending", exchange_rate=rate)
    world.book(platform, bt)
    fee = {
        "id": fee_id,
        "object": "application_fee",
        "account": charge.scope.account,
        "amount": amount,
        "amount_refunded": 0,
        "application": world.application,
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
    effect = ("charge", currency, amount_settled, bt["available_on"])
    world.emit("application_fee.created", fee, t, platform, effect=effect)


def refund(world: World, charge: Charge, amount: int, t: int) -> None:
    """refund.created + charge.refunded (same second), later refund.updated +
    charge.refund.updated when the acquirer reference number arrives."""
    scope = charge.scope
    refund_id = world.ids.id("re_", scope, t, "3")
    bt_id = world.ids.id("txn_", scope, t, "3")
    before = charge.amount_refunded
    charge.amount_refunded += amount
    currency, amount_settled, rate = settled(scope.account, charge.currency, -amount)
    world.emit(
        "refund.created",
        refund_obj(refund_id, charge, amount, t, bt_id, None),
        t,
        scope,
        api=True,
        effect=("refund", currency, amount_settled, t),
    )
    previous: Json = {"amount_refunded": before}
    if charge.amount_refunded == charge.amount:
        previous["refunded"] = False
    obj = charge_obj(world, charge)
    world.emit("charge.refunded", obj, t, scope, api=True, previous=previous)
    refund_bt = simple_bt(
        bt_id, t, currency, amount_settled, refund_id, "refund", "refund", "REFUND FOR CHARGE"
    )
    refund_bt["exchange_rate"] = rate
    world.book(scope, refund_bt)
    later = t + world.rng.randint(DAY_S, 3 * DAY_S)
    ref = "".join(world.rng.choices("0123456789", k=ARN_DIGITS))
    previous_ref: Json = {
        "destination_details": {"card": {"reference": None, "reference_status": "pending"}}
    }
    for event_type in ("refund.updated", "charge.refund.updated"):
        updated = refund_obj(refund_id, charge, amount, t, bt_id, ref)
        world.emit(event_type, updated, later, scope, previous=previous_ref)


def payment_story(
    world: World,
    scope: Scope,
    start: int,
    *,
    currency: str | None = None,
    refunds: tuple[int, ...] | None = None,
    dispute: str | None = None,
    reinstate_share: int = 100,
) -> Charge:
    """A customer pays (maybe after a declined attempt); then the refunds (percentages of the
    amount; default: drawn) and the dispute ("won", "lost"; default: drawn) asked for."""
    rng = world.rng
    customer = pick_customer(world, scope, start, currency)
    t = start + rng.randint(1, 30)
    amount = world.amount(customer.currency)
    description = rng.choice((None, f"Order #{rng.randint(1000, 99999)}"))
    fail_first = rng.random() < FAIL_FIRST_SHARE
    intent = open_intent(world, scope, customer, amount, t, description, api=True)
    if fail_first:
        _, t = attempt(world, scope, intent, t, fail=True)
        # The retry's snapshots carry a client secret of their own: drawn here, as the
        # history always drew it (the pinned digests of tests/test_demo_history.py).
        intent = dataclasses.replace(intent, secret=world.ids.chars(CLIENT_SECRET_CHARS))
        t += rng.randint(30, 600)
    charge, t = attempt(world, scope, intent, t)
    later = _refunds(world, charge, _refund_plan(world) if refunds is None else refunds, t)
    if dispute is None and charge.amount_refunded == 0 and rng.random() < DISPUTE_SHARE:
        dispute = "won" if rng.random() < DISPUTE_WON_SHARE else "lost"
    if dispute is not None:
        opened = later + rng.randint(3 * DAY_S, 30 * DAY_S)
        dispute_story(world, charge, opened, dispute, reinstate_share)
    return charge


def _refund_plan(world: World) -> tuple[int, ...]:
    """The refunds of a payment, in percent of its amount: mostly none."""
    roll = world.rng.random()
    if roll < 0.08:
        return (world.rng.randint(10, 60),)
    if roll < 0.12:
        return (100,)
    if roll < 0.13:
        return (40, 60)
    return ()


def _refunds(world: World, charge: Charge, percents: tuple[int, ...], t: int) -> int:
    """Refund ``percents`` of the charge, each a few hours to days after the last; a partial
    refund of a two-decimal currency is a multiple of 50. -> the time of the last one."""
    later = t
    for percent in percents:
        later += world.rng.randint(3600, 5 * DAY_S)
        remaining = charge.amount - charge.amount_refunded
        part = remaining if percent >= 100 else max(charge.amount * percent // 100, 1)
        part = min(part, remaining)
        if charge.currency not in ZERO_DECIMAL and part != remaining:
            part = max(part - part % 50, 1)
        if part > 0:
            refund(world, charge, part, later)
    return later
