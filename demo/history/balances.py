"""Balances of a demo history: the balance.available snapshots among the events, and what
Stripe's API holds at the end (the transactions, the final Balance, the objects they name)."""

from __future__ import annotations

from demo.history.ids import API_VERSION, Json
from demo.history.model import DemoHistory
from demo.history.world import World

BALANCE_EVERY = 40  # a balance.available snapshot after about this many other events
BALANCE_SHARE = 0.25  # of the events past BALANCE_EVERY, those followed by a snapshot
FINAL_SNAPSHOT_AFTER_S = 60  # the last snapshots, after the last event

Pending = list[tuple[int, str, int]]  # (available_on, currency, amount)


def with_balances(world: World) -> list[Json]:
    """The events by created, with a balance.available snapshot now and then and one per
    account at the end, computed from the story so far: a charge's net is pending until its
    available_on, refunds, dispute transactions and payouts move available funds at once."""
    events: list[Json] = []
    available: dict[str | None, dict[str, int]] = {None: {}, world.connect.account: {}}
    pending: dict[str | None, Pending] = {None: [], world.connect.account: []}
    since = 0
    for entry in world.entries:
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
        if since >= BALANCE_EVERY and world.rng.random() < BALANCE_SHARE:
            since = 0
            events.append(_balance_event(world, account, entry.created, available, pending))
    if world.entries:
        end = world.entries[-1].created + FINAL_SNAPSHOT_AFTER_S
    else:
        end = world.base_s
    for account in (None, world.connect.account):
        if available[account] or pending[account]:
            events.append(_balance_event(world, account, end, available, pending))
    return events


def _balance_event(
    world: World,
    account: str | None,
    now: int,
    available: dict[str | None, dict[str, int]],
    pending: dict[str | None, Pending],
) -> Json:
    """balance.available at ``now``: what became available since is moved out of pending."""
    funds = available[account]
    still: Pending = []
    for item in pending[account]:
        if item[0] <= now:
            funds[item[1]] = funds.get(item[1], 0) + item[2]
        else:
            still.append(item)
    pending[account] = still
    waiting: dict[str, int] = {}
    for _, currency, amount in still:
        waiting[currency] = waiting.get(currency, 0) + amount
    return {
        "id": world.ids.id("evt_", world.scope_of(account), now),
        "object": "event",
        "account": account,
        "api_version": API_VERSION,
        "created": now,
        "data": {"object": _balance_obj(funds, waiting)},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "balance.available",
    }


def _balance_obj(funds: dict[str, int], waiting: dict[str, int]) -> Json:
    currencies = sorted(set(funds) | set(waiting))
    shown_available: dict[str, int] = {}
    shown_pending: dict[str, int] = {}
    for currency in currencies:
        # Payouts here may spend funds that are still pending: show the same total without
        # a negative available amount (Stripe would not have paid them out).
        total = funds.get(currency, 0) + waiting.get(currency, 0)
        shown_available[currency] = max(min(funds.get(currency, 0), total), 0)
        shown_pending[currency] = total - shown_available[currency]
    return {
        "object": "balance",
        "available": _amounts(shown_available, currencies),
        "connect_reserved": _zeros(currencies),
        "livemode": False,
        "pending": _amounts(shown_pending, currencies),
        "refund_and_dispute_prefunding": {
            "available": _zeros(currencies),
            "pending": _zeros(currencies),
        },
    }


def _zeros(currencies: list[str]) -> list[Json]:
    return [{"amount": 0, "currency": c} for c in currencies]


def _amounts(amounts: dict[str, int], currencies: list[str]) -> list[Json]:
    """A Balance's list of amounts per currency, all from cards."""
    return [
        {"amount": amounts[c], "currency": c, "source_types": {"card": amounts[c]}}
        for c in currencies
    ]


def api_state(world: World, history: DemoHistory, end: int) -> None:
    """What Stripe's API holds at ``end``: the transactions (pending until available_on),
    the final Balance per account, and the last state of each object they name."""
    for account, bts in world.bts.items():
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
            "available": _amounts(available, currencies),
            "livemode": False,
            "pending": _amounts(pending, currencies),
        }
    history.payout_members = {k: dict(v) for k, v in world.payout_members.items()}
    named = {bt["source"] for bts in world.bts.values() for bt in bts}
    for event in history.events:  # by created: the last one is the final state
        obj = event["data"]["object"]
        if obj.get("id") in named:
            history.sources[obj["id"]] = obj
