"""Payout stories: an automatic payout of available balance transactions (its members sum to
its amount), paid, failed after paid, or canceled, each with its own balance transactions."""

from __future__ import annotations

from dataclasses import dataclass

from demo.history.ids import DAY_S, Json, midnight_after
from demo.history.model import Scope, ScopeCurrency
from demo.history.money import simple_bt
from demo.history.world import World

# A payout's balance transactions by type: (sign of the amount, reporting_category, description).
PAYOUT_BTS = {
    "payout": (-1, "payout", "STRIPE PAYOUT"),
    "payout_cancel": (1, "payout_reversal", "STRIPE PAYOUT CANCELED"),
    "payout_failure": (1, "payout_reversal", "STRIPE PAYOUT FAILED"),
}
PAYOUT_AMOUNT_MIN = 1000  # $10.00, 10.00 EUR or 1000 yen: less available, no payout
SHARE_PERCENT_MIN = 50  # of the available funds an unforced payout pays out
SHARE_PERCENT_MAX = 90
ARRIVAL_DAYS = 2


@dataclass
class Payout:
    """One payout as it goes: what its snapshots share, and its status now."""

    id: str
    amount: int
    currency: str
    created: int
    balance_transaction: str
    destination: str
    status: str = "pending"
    failure_balance_transaction: str | None = None


def payout_obj(payout: Payout) -> Json:
    failed = payout.status == "failed"
    settled = payout.status in ("paid", "failed")
    return {
        "id": payout.id,
        "object": "payout",
        "amount": payout.amount,
        "application_fee": None,
        "application_fee_amount": None,
        "arrival_date": midnight_after(payout.created, ARRIVAL_DAYS),
        "automatic": True,
        "balance_transaction": payout.balance_transaction,
        "created": payout.created,
        "currency": payout.currency,
        "description": "STRIPE PAYOUT",
        "destination": payout.destination,
        "failure_balance_transaction": payout.failure_balance_transaction,
        "failure_code": "account_closed" if failed else None,
        "failure_message": "The bank account has been closed." if failed else None,
        "livemode": False,
        "metadata": {},
        "method": "standard",
        "original_payout": None,
        "payout_method": None,
        "reconciliation_status": "completed" if settled else "not_applicable",
        "reversed_by": None,
        "source_type": "card",
        "statement_descriptor": None,
        "status": payout.status,
        "trace_id": {
            "status": "supported" if payout.status == "paid" else "pending",
            "value": None,
        },
        "type": "bank_account",
    }


def book_payout(
    world: World, scope: Scope, bt_id: str, created: int, payout: Payout, bt_type: str
) -> None:
    """A payout's transaction: the payout takes its amount out of the balance when it is
    created; a cancellation or a failure puts it back (reporting_category payout_reversal)."""
    sign, category, description = PAYOUT_BTS[bt_type]
    amount = sign * payout.amount
    bt = simple_bt(
        bt_id, created, payout.currency, amount, payout.id, bt_type, category, description
    )
    world.book(scope, bt)


def _members(
    world: World, key: ScopeCurrency, at: int, share: int, credits_max: int | None = None
) -> list[Json]:
    """The oldest available transactions not yet paid out, up to ``share`` percent of
    what is available (or only the ``credits_max`` oldest credits): an automatic payout's
    amount is exactly their nets' sum."""
    ready = [
        bt for bt in world.unpaid.get(key, []) if bt["available_on"] <= at and bt["created"] <= at
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


def _take(
    world: World,
    key: ScopeCurrency,
    at: int,
    force: bool,
    share: int | None,
    credits_max: int | None,
) -> list[Json] | None:
    """The transactions a payout at ``at`` pays out, taken off the unpaid list; None when
    less than ``PAYOUT_AMOUNT_MIN`` (1 when forced) is available."""
    everything = _members(world, key, at, 100)
    if sum(bt["net"] for bt in everything) < (1 if force else PAYOUT_AMOUNT_MIN):
        return None
    drawn = world.rng.randint(SHARE_PERCENT_MIN, SHARE_PERCENT_MAX)
    members = _members(world, key, at, drawn if share is None else share, credits_max)
    if sum(bt["net"] for bt in members) <= 0:
        return None
    taken = {bt["id"] for bt in members}
    world.unpaid[key] = [bt for bt in world.unpaid[key] if bt["id"] not in taken]
    return members


def payout_story(
    world: World,
    scope: Scope,
    start: int,
    currency: str,
    ending: str = "paid",
    force: bool = False,
    share: int | None = None,
    credits_max: int | None = None,
) -> bool:
    """An automatic payout of ``share`` percent (default: 50 to 90) of the available
    funds, paid, failed after paid, or canceled; False when too little is available."""
    paid_out = _take(world, (scope.account, currency), start, force, share, credits_max)
    if paid_out is None:
        return False
    ids = world.ids
    payout_id = ids.id("po_", scope, start)
    bt_id = ids.id("txn_", scope, start)
    amount = sum(bt["net"] for bt in paid_out)
    payout = Payout(payout_id, amount, currency, start, bt_id, "")
    book_payout(world, scope, bt_id, start, payout, "payout")
    world.payout_members[scope.account][payout_id] = [bt_id, *sorted(b["id"] for b in paid_out)]
    payout.destination = ids.id("ba_", scope, world.base_s)
    effect = ("payout", currency, -amount, start)
    world.emit("payout.created", payout_obj(payout), start, scope, effect=effect)
    if ending == "canceled":
        _cancel(world, scope, payout, start + world.rng.randint(60, 3600))
        return True
    t = start + world.rng.randint(3600, 6 * 3600)
    payout.status = "in_transit"
    world.emit("payout.updated", payout_obj(payout), t, scope, previous={"status": "pending"})
    t = midnight_after(t, ARRIVAL_DAYS) + world.rng.randint(3600, 8 * 3600)
    payout.status = "paid"
    paid_event = world.emit("payout.paid", payout_obj(payout), t, scope)
    if ending == "failed":
        t += world.rng.randint(DAY_S, 3 * DAY_S)
        failed_id = _fail(world, scope, payout, t)
        world.forced_pairs.append((paid_event["id"], failed_id))  # failed delivered first
    return True


def _cancel(world: World, scope: Scope, payout: Payout, t: int) -> None:
    """payout.canceled by an API call: the funds come back at once."""
    payout.status = "canceled"
    cancel_id = world.ids.id("txn_", scope, t, rng=world.aux_rng)
    book_payout(world, scope, cancel_id, t, payout, "payout_cancel")
    effect = ("payout_back", payout.currency, payout.amount, t)
    world.emit("payout.canceled", payout_obj(payout), t, scope, api=True, effect=effect)


def _fail(world: World, scope: Scope, payout: Payout, t: int) -> str:
    """payout.failed after it was paid (the bank account is closed). -> the event's id."""
    payout.status = "failed"
    payout.failure_balance_transaction = world.ids.id("txn_", scope, t)
    book_payout(world, scope, payout.failure_balance_transaction, t, payout, "payout_failure")
    effect = ("payout_back", payout.currency, payout.amount, t)
    return str(world.emit("payout.failed", payout_obj(payout), t, scope, effect=effect)["id"])
