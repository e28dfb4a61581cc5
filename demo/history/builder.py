"""The thin coordinator: the stories every history tells, then random ones until the history
is long enough; the events sorted, balance snapshots added, delivery order, the API's state."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator

from demo.history.balances import BALANCE_EVERY, api_state, with_balances
from demo.history.customers import new_customer
from demo.history.deliveries import deliveries
from demo.history.ids import BASE_TIMESTAMP, DAY_S, Json, midnight_after
from demo.history.model import DemoHistory
from demo.history.payments import payment_story
from demo.history.payouts import payout_story
from demo.history.subscriptions import subscription_story
from demo.history.world import World

CONNECT_SHARE = 0.12  # random stories told on the connected account
# A random story by a roll in [0, 1): below 0.04 a payout (if enough is available), then up
# to 0.07 a customer who buys nothing yet, up to 0.25 a subscription, the rest payments.
PAYOUT_BELOW = 0.04
NEW_CUSTOMER_BELOW = 0.07
SUBSCRIPTION_BELOW = 0.25
EVENTS_MAX = 10_000_000  # the largest history asked for (the demo command's bound)


def scripted(world: World) -> None:
    """The stories every history has, whatever its size."""
    platform, connect, advance = world.platform, world.connect, world.advance
    payment_story(world, platform, advance(), currency="usd", refunds=(30,))
    payment_story(world, platform, advance(), currency="usd", refunds=(100,))
    payment_story(world, platform, advance(), currency="jpy", refunds=(25,))
    payment_story(world, platform, advance(), currency="jpy", refunds=(100,))
    paths = ("paid", "uncollectible_paid", "void", "retry_paid")
    subscription_story(world, platform, advance(), paths=paths)
    for currency in ("usd", "jpy"):
        for _ in range(3):
            payment_story(world, platform, advance(), currency=currency, refunds=())
    payment_story(world, platform, advance(), currency="usd", refunds=(), dispute="won")
    payment_story(world, platform, advance(), currency="usd", refunds=(), dispute="lost")
    payment_story(
        world, platform, advance(), currency="jpy", refunds=(), dispute="won", reinstate_share=60
    )
    payment_story(world, connect, advance(), currency="eur", refunds=())
    payment_story(world, connect, advance(), currency="eur", refunds=(50,))
    # Automatic payouts pay out available funds only: wait until the charges above are.
    world.clock = midnight_after(world.clock, 3)
    # The canceled one first: its funds come back at once for the next two.
    payout_story(world, platform, advance(), "usd", "canceled", force=True, credits_max=2)
    world.clock += 3600
    payout_story(world, platform, advance(), "usd", "failed", force=True, credits_max=2)
    payout_story(world, platform, advance(), "usd", "paid", force=True, share=100)
    payout_story(world, platform, advance(), "jpy", "paid", force=True)
    payout_story(world, connect, advance(), "eur", "paid", force=True)


def random_story(world: World) -> None:
    rng = world.rng
    scope = world.connect if rng.random() < CONNECT_SHARE else world.platform
    start = world.advance()
    roll = rng.random()
    if roll < PAYOUT_BELOW:
        currency = world.currency(scope)
        ending = rng.choices(("paid", "failed", "canceled"), (90, 4, 6))[0]
        if payout_story(world, scope, start, currency, ending):
            return
    if roll < NEW_CUSTOMER_BELOW:
        new_customer(world, scope, start)
    elif roll < SUBSCRIPTION_BELOW:
        subscription_story(world, scope, start)
    else:
        payment_story(world, scope, start)


def build(seed: int, target: int, base_s: int) -> DemoHistory:
    """The history of ``seed``: about ``target`` events, of which the balance snapshots
    are one in ``BALANCE_EVERY + 1``."""
    world = World(seed, base_s)
    story_target = max(target - target // (BALANCE_EVERY + 1), 1)
    scripted(world)
    while world.story_events < story_target:
        random_story(world)
    world.entries.sort(key=lambda entry: (entry.created, entry.seq))
    events = with_balances(world)
    delivered = deliveries(world.rng, events, world.forced_pairs)
    history = DemoHistory(seed=seed, events=events, deliveries=delivered)
    api_state(world, history, events[-1]["created"] if events else base_s)
    return history


def generate(seed: int = 7, events: int = 400, base_s: int = BASE_TIMESTAMP) -> DemoHistory:
    """A history of about ``events`` distinct events (at least the ~150 of the scripted stories),
    starting at ``base_s`` (the same seed and base give the same history)."""
    target = max(int(events), 1)
    assert target <= EVENTS_MAX, f"at most {EVENTS_MAX} events, not {target}"
    # Hundreds of thousands of small dicts, none of them in a cycle: without this the cyclic
    # collector rescans the growing heap again and again and 100k events take 3x as long.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return build(seed, target, base_s)
    finally:
        if was_enabled:
            gc.enable()


def generate_before(now_s: int, seed: int = 7, events: int = 400) -> DemoHistory:
    """The same history moved back by whole days, if need be, so that none of it is after
    ``now_s``: a demo shows a past, never a future (same seed and day, same history)."""
    history = generate(seed, events)
    last_s = history.events[-1]["created"] if history.events else BASE_TIMESTAMP
    if last_s <= now_s:
        return history
    days = -(-(last_s - now_s) // DAY_S)  # ceiling: whole days keep the daily reports aligned
    return generate(seed, events, BASE_TIMESTAMP - days * DAY_S)


def encode(event: Json) -> bytes:
    """Compact JSON bytes, UTF-8 (names may be Japanese or accented), as Stripe sends them."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def iter_payloads(seed: int = 7, events: int = 400) -> Iterator[bytes]:
    """The request bodies of the deliveries, in delivery order (duplicates included)."""
    for event in generate(seed, events).deliveries:
        yield encode(event)
