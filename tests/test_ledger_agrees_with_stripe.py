"""Issue 13's "done when", on both databases: a generated history of 10,000 events, its webhooks
naming balance transactions by id, then every balance transaction Stripe would hold for it
served by the stand-in API and fetched by balance-sync. Afterwards every currency's drift is 0,
every automatic payout reconciles, and the balance summary's ending balance equals the sum of
the nets minus the payouts, computed here from what the stand-in served.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
import sqlalchemy as sa

from demo.history import generate
from demo.standin import Standin, from_demo
from ledger.balance_sync import balance_sync
from ledger.database import create_engine, migrate
from ledger.envelope import event_from_dict
from ledger.store import EventStore, Incoming, open_event_store, utc_now
from ledger.stripe_api import StripeApi
from projections import verify, worker
from reports.query import run_report
from reports.read_side import prepare_read_side
from tests.test_backfill import Waits

EVENTS = 10_000
PAYOUT_CATEGORIES = ("payout", "payout_reversal")
APPEND_EVENTS_MAX = 1_000  # deliveries per append


def _synced_history(
    database_url: str, *, seed: int, events: int
) -> tuple[Any, sa.Engine, EventStore]:
    """A generated history's webhooks in a fresh store, every balance transaction the stand-in
    serves for it fetched by balance-sync, and the projections caught up."""
    history = generate(seed=seed, events=events)
    engine = create_engine(database_url)
    migrate(engine)
    prepare_read_side(engine)
    store = open_event_store(engine)
    for start in range(0, len(history.deliveries), APPEND_EVENTS_MAX):
        chunk = history.deliveries[start : start + APPEND_EVENTS_MAX]
        store.append([Incoming(event_from_dict(e), "webhook", utc_now()) for e in chunk])
    with Standin(from_demo(history)) as base:
        api = StripeApi("sk_test_" + "x" * 24, base=base, wait=Waits())
        balance_sync(
            api,
            store,
            accounts=[None, *(a for a in history.balance_transactions if a)],
            since_s=history.events[0]["created"],
            clock=lambda: history.events[-1]["created"],
        )
    worker.run(store, until_idle_s=0)
    return history, engine, store


@pytest.mark.slow
def test_a_synced_history_agrees_with_stripe_to_the_cent(database_url: str) -> None:
    history, engine, store = _synced_history(database_url, seed=13, events=EVENTS)
    assert len(history.events) >= 9_900

    columns, rows = run_report(engine, "balances")
    balances = [dict(zip(columns, row, strict=True)) for row in rows]
    assert balances and all(row["drift"] == 0 for row in balances), balances

    columns, rows = run_report(engine, "payout_reconciliation")
    payouts = [dict(zip(columns, row, strict=True)) for row in rows]
    automatic = [p for p in payouts if p["automatic"] and p["status"] != "canceled"]
    assert automatic and all(p["reconciled"] == 1 for p in automatic), automatic

    expected: dict[tuple[str | None, str], int] = defaultdict(int)
    for account, bts in history.balance_transactions.items():
        for bt in bts:
            expected[(account, bt["currency"])] += bt["net"]  # payouts' nets are negative
    columns, rows = run_report(engine, "balance_summary")
    summary = {(r[0], r[2]): dict(zip(columns, r, strict=True)) for r in rows}
    assert {key: row["ending_balance"] for key, row in summary.items()} == dict(expected)
    for row in summary.values():
        assert (
            row["ending_balance"] == row["starting_balance"] + row["activity_net"] + row["payouts"]
        )
        assert row["payouts"] <= 0  # money out
    assert any(row["payouts"] < 0 for row in summary.values())

    checks, _drift = verify.verify(store, "0")
    assert all(check.ok for check in checks), [c for c in checks if not c.ok]
    engine.dispose()


def test_the_categories_sum_to_the_summary(database_url: str) -> None:
    """A small history: per scope, the categories' nets are the summary's activity + payouts."""
    _history, engine, _store = _synced_history(database_url, seed=2, events=600)
    _, categories = run_report(engine, "balance_categories")
    nets: dict[tuple[str | None, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for account, _livemode, currency, category, _count, _gross, _fee, net in categories:
        part = "payouts" if category in PAYOUT_CATEGORIES else "activity_net"
        nets[(account, currency)][part] += int(net)
    columns, rows = run_report(engine, "balance_summary")
    for row in rows:
        r = dict(zip(columns, row, strict=True))
        key = (r["account"], r["currency"])
        assert (r["activity_net"], r["payouts"]) == (
            nets[key]["activity_net"],
            nets[key]["payouts"],
        )
    engine.dispose()
