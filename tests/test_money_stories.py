"""Small money histories, each checked against the figure Stripe's documentation gives for it.

Each story is written first as that figure (with the page that gives it), then run through the
store and the projections on both databases: events alone (what webhooks carry: balance
transactions as ids), then with the balance transactions balance-sync would record. The journal
must give Stripe's figure either way where the events carry the amounts, and exactly Stripe's
figures (fees included) once the balance transactions are known; never a movement twice.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from ledger import balance_facts
from ledger.database import create_engine, migrate
from ledger.envelope import event_from_dict
from ledger.store import Incoming, open_event_store, utc_now
from projections import rebuild, registry, verify, worker
from reports import views
from reports.query import run_report
from reports.read_side import prepare_read_side
from tests.conftest import fresh_postgres

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86_400
_ids = itertools.count(1)


def event(
    kind: str,
    obj: dict[str, Any],
    created: int,
    *,
    account: str | None = None,
    livemode: bool = False,
    api_version: str | None = "2026-07-29.dahlia",
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": f"evt_{next(_ids):06d}_{kind}",
        "object": "event",
        "type": kind,
        "api_version": api_version,
        "created": created,
        "livemode": livemode,
        "data": {"object": {**obj, "livemode": livemode}},
    }
    if account:
        payload["account"] = account
    return payload


def bt_fact(
    bt: dict[str, Any],
    fetched_at: int,
    *,
    payout: str | None = None,
    account: str | None = None,
    livemode: bool = False,
) -> dict[str, Any]:
    """A balance transaction as balance-sync records it (docs/BALANCE_SYNC.md)."""
    fact = balance_facts.bt_fact(
        bt, automatic_payout_id=payout, fetched_s=fetched_at, livemode=livemode,
        account=account, api_version=None,
    )  # fmt: skip
    return fact.payload


def txn(
    txn_id: str,
    amount: int,
    category: str,
    source: Any,
    created: int,
    *,
    fee: int = 0,
    currency: str = "usd",
    status: str = "available",
    kind: str | None = None,
    fee_type: str = "stripe_fee",
    exchange_rate: float | None = None,
) -> dict[str, Any]:
    return {
        "id": txn_id,
        "object": "balance_transaction",
        "amount": amount,
        "available_on": created + 2 * DAY,
        "created": created,
        "currency": currency,
        "description": None,
        "exchange_rate": exchange_rate,
        "fee": fee,
        "fee_details": [{"amount": fee, "currency": currency, "type": fee_type,
                         "application": None, "description": "Stripe processing fees"}]
        if fee else [],
        "net": amount - fee,
        "reporting_category": category,
        "source": source,
        "status": status,
        "type": kind or category,
    }  # fmt: skip


def charge(
    charge_id: str,
    amount: int,
    created: int,
    *,
    currency: str = "usd",
    captured: int | None = None,
    refunded: int = 0,
    bt: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    captured_amount = amount if captured is None else captured
    return {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": captured_amount,
        "amount_refunded": refunded,
        "balance_transaction": bt,
        "captured": captured_amount > 0,
        "created": created,
        "currency": currency,
        "paid": True,
        "refunded": refunded == amount,
        "status": "succeeded",
        **extra,
    }


def refund(refund_id: str, charge_id: str, amount: int, created: int, status: str,
           bt: str | None = None, currency: str = "usd") -> dict[str, Any]:  # fmt: skip
    return {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": bt,
        "charge": charge_id,
        "created": created,
        "currency": currency,
        "status": status,
    }


def payout(payout_id: str, amount: int, created: int, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": payout_id,
        "object": "payout",
        "amount": amount,
        "arrival_date": created + 2 * DAY,
        "automatic": True,
        "balance_transaction": f"txn_{payout_id}",
        "created": created,
        "currency": "usd",
        "status": status,
        **extra,
    }


@pytest.fixture
def ledger(database_url: str) -> Iterator[Any]:
    engine = create_engine(database_url)
    migrate(engine)
    prepare_read_side(engine)
    store = open_event_store(engine)

    def run(payloads: list[dict[str, Any]]) -> dict[tuple[str | None, bool, str], dict[str, int]]:
        store.append([Incoming(event_from_dict(p), "import", utc_now()) for p in payloads])
        worker.run(store, until_idle_s=0)
        return balances(engine)

    run.engine = engine  # type: ignore[attr-defined]
    yield run
    engine.dispose()


def balances(engine: sa.Engine) -> dict[tuple[str | None, bool, str], dict[str, int]]:
    """(account, livemode, currency) -> ledger account -> balance, plus 'stripe': the Stripe
    balance the journal holds (pending + available)."""
    out: dict[tuple[str | None, bool, str], dict[str, int]] = {}
    with engine.connect() as connection:
        for row in connection.exec_driver_sql(
            "SELECT account, livemode, currency, ledger_account, amount FROM proj_balances"
        ):
            scope = out.setdefault((row[0], bool(row[1]), row[2]), {"stripe": 0})
            scope[row[3]] = int(row[4])
            if row[3] in ("stripe_pending", "stripe_available"):
                scope["stripe"] += int(row[4])
    return out


def usd(figures: dict[tuple[str | None, bool, str], dict[str, int]]) -> dict[str, int]:
    return figures.get((None, False, "usd"), {"stripe": 0})


# -- fees: real webhooks carry balance_transaction as an id --------------------------------


def test_fee_appears_once_the_balance_transaction_is_synced(ledger: Any) -> None:
    # https://stripe.com/pricing: US cards 2.9% + 30c; a $100.00 charge pays $3.20, nets $96.80.
    ch = charge("ch_fee", 10_000, T0, bt="txn_fee")
    events_only = usd(ledger([event("charge.succeeded", ch, T0)]))
    assert (events_only["revenue"], events_only["stripe"]) == (-10_000, 10_000)
    assert "processing_fees" not in events_only  # no webhook says the fee
    bt = txn("txn_fee", 10_000, "charge", "ch_fee", T0, fee=320)
    synced = usd(ledger([bt_fact(bt, T0 + 60), bt_fact(bt, T0 + 60)]))  # twice: once
    assert (synced["revenue"], synced["processing_fees"], synced["stripe"]) == (
        -10_000,
        320,
        9_680,
    )
    assert synced.get("stripe_pending", 0) == 0 and synced["stripe_available"] == 9_680


# -- partial captures and released authorizations ------------------------------------------


@pytest.mark.parametrize(
    ("api_version", "amount_refunded"),
    [("2024-06-20", 400), ("2025-03-31.basil", 0)],  # before basil it counted the release
)
def test_a_partial_capture_books_the_captured_amount(
    ledger: Any, api_version: str, amount_refunded: int
) -> None:
    # https://docs.stripe.com/reports/reporting-categories (partial-capture reversals) and
    # https://docs.stripe.com/changelog/basil: authorized 10.00, captured 6.00 -> 6.00 moved.
    ch = charge("ch_pc", 1_000, T0, captured=600, refunded=amount_refunded)
    figures = usd(ledger([event("charge.captured", ch, T0 + 10, api_version=api_version)]))
    assert (figures["revenue"], figures.get("refunds", 0), figures["stripe"]) == (-600, 0, 600)
    # the balance transactions: the full authorization, then the uncaptured part reversed
    bts = [
        txn("txn_pc1", 1_000, "charge", "ch_pc", T0 + 10, fee=47),
        txn("txn_pc2", -400, "partial_capture_reversal", "ch_pc", T0 + 10, kind="adjustment"),
    ]
    synced = usd(ledger([bt_fact(bt, T0 + 99) for bt in bts]))
    assert (synced["revenue"], synced["processing_fees"], synced["stripe"]) == (-600, 47, 553)


def test_an_authorization_released_without_capture_moves_no_money(ledger: Any) -> None:
    # An uncaptured charge that is canceled or expires never touched the balance (before basil
    # Stripe reported amount_refunded = amount and refunded = true for it).
    ch = charge("ch_auth", 5_000, T0, captured=0, refunded=5_000, status="succeeded")
    figures = ledger(
        [
            event("charge.succeeded", {**ch, "amount_refunded": 0}, T0, api_version="2024-06-20"),
            event("charge.expired", ch, T0 + 7 * DAY, api_version="2024-06-20"),
        ]
    )
    assert usd(figures).get("refunds", 0) == 0 and usd(figures)["stripe"] == 0


def test_a_2012_charge_without_captured_books_its_amount(ledger: Any) -> None:
    old = {"id": "ch_2012", "object": "charge", "amount": 2_500, "currency": "usd",
           "paid": True, "refunded": False, "amount_refunded": 0, "created": T0}  # fmt: skip
    figures = usd(ledger([event("charge.succeeded", old, T0, api_version="2012-09-24")]))
    assert (figures["revenue"], figures["stripe"]) == (-2_500, 2_500)


# -- refunds ---------------------------------------------------------------------------------


def test_a_failed_refund_returns_the_money(ledger: Any) -> None:
    # https://docs.stripe.com/refunds#failed-refunds: a failed refund's amount returns to the
    # balance (a refund_failure balance transaction).
    ch = charge("ch_rf", 2_000, T0, bt="txn_rf_c")
    stories = [
        event("charge.succeeded", ch, T0),
        event("refund.created", refund("re_rf", "ch_rf", 500, T0 + DAY, "pending"), T0 + DAY),
        event("charge.refunded", {**ch, "amount_refunded": 500}, T0 + DAY),
    ]
    after_refund = usd(ledger(stories))
    assert (after_refund["refunds"], after_refund["stripe"]) == (500, 1_500)
    failed = refund("re_rf", "ch_rf", 500, T0 + DAY, "failed")
    after_failure = usd(
        ledger(
            [
                event("refund.failed", failed, T0 + 3 * DAY),
                event("charge.refund.updated", failed, T0 + 3 * DAY),
                event("charge.updated", {**ch, "amount_refunded": 0}, T0 + 3 * DAY),
            ]
        )
    )
    assert (after_failure.get("refunds", 0), after_failure["stripe"]) == (0, 2_000)
    with ledger.engine.connect() as connection:
        posted = dict(
            connection.exec_driver_sql(
                "SELECT kind, posted_at FROM proj_journal_entries WHERE source_id = 're_rf'"
            ).all()
        )
    assert posted == {"refund": T0 + DAY, "refund_failure": T0 + 3 * DAY}  # when money moved


def test_refund_balance_transactions_replace_the_estimates(ledger: Any) -> None:
    ch = charge("ch_r2", 3_000, T0, bt="txn_r2")
    ledger([
        event("charge.succeeded", ch, T0),
        event("charge.refunded", {**ch, "amount_refunded": 1_000}, T0 + DAY),  # no refund list
    ])  # fmt: skip
    re_obj = refund("re_r2", "ch_r2", 1_000, T0 + DAY, "succeeded", bt="txn_r2r")
    bts = [
        txn("txn_r2", 3_000, "charge", "ch_r2", T0, fee=117),
        txn("txn_r2r", -1_000, "refund", re_obj, T0 + DAY),  # source expanded, as synced
    ]
    figures = usd(ledger([bt_fact(bt, T0 + 2 * DAY) for bt in bts]))
    assert (figures["refunds"], figures["processing_fees"], figures["stripe"]) == (
        1_000,
        117,
        1_883,
    )


# -- disputes --------------------------------------------------------------------------------


def test_dispute_lost_and_won_with_fees(ledger: Any) -> None:
    # https://docs.stripe.com/disputes/how-disputes-work: the disputed amount and a $15.00
    # dispute fee are withdrawn; winning returns both.
    ch = charge("ch_dp", 1_000, T0)
    dispute = {"id": "dp_1", "object": "dispute", "amount": 1_000, "currency": "usd",
               "charge": "ch_dp", "status": "needs_response", "created": T0 + DAY,
               "balance_transactions": []}  # fmt: skip
    withdrawn = usd(
        ledger(
            [
                event("charge.succeeded", ch, T0),
                event("charge.dispute.created", dispute, T0 + DAY),
                event("charge.dispute.funds_withdrawn", dispute, T0 + DAY),  # no embedded txn
            ]
        )  # fmt: skip
    )
    assert (withdrawn["dispute_losses"], withdrawn["stripe"]) == (1_000, 0)  # fee unknown yet
    withdrawal = txn("txn_dw", -1_000, "dispute", "dp_1", T0 + DAY, fee=1_500, kind="adjustment")
    synced = usd(ledger([bt_fact(withdrawal, T0 + 2 * DAY)]))
    assert (synced["dispute_losses"], synced["dispute_fees"], synced["stripe"]) == (
        1_000,
        1_500,
        -1_500,
    )
    reinstated = txn("txn_dr", 1_000, "dispute_reversal", "dp_1", T0 + 9 * DAY, fee=-1_500,
                     kind="adjustment")  # fmt: skip
    won = {**dispute, "status": "won", "balance_transactions": [withdrawal, reinstated]}
    after = usd(ledger([event("charge.dispute.funds_reinstated", won, T0 + 9 * DAY)]))
    assert (after.get("dispute_losses", 0), after.get("dispute_fees", 0), after["stripe"]) == (
        0,
        0,
        1_000,
    )


# -- payouts ---------------------------------------------------------------------------------


def test_a_payout_leaves_the_balance_when_created_and_reconciles(ledger: Any) -> None:
    # https://docs.stripe.com/payouts: the payout's amount is deducted from the balance when it
    # is created; a payout that fails after being paid comes back to the balance.
    ch = charge("ch_po", 10_000, T0, bt="txn_po_c")
    snapshot = {"object": "balance", "available": [{"amount": 2_000, "currency": "usd"}],
                "pending": [{"amount": 0, "currency": "usd"}]}  # fmt: skip
    created = usd(
        ledger(
            [
                event("charge.succeeded", ch, T0),
                event("payout.created", payout("po_1", 8_000, T0 + DAY, "pending"), T0 + DAY),
                event("balance.available", snapshot, T0 + DAY + 1),
            ]
        )  # fmt: skip
    )
    assert (created["stripe"], created["payouts_in_transit"]) == (2_000, 8_000)
    _, rows = run_report(ledger.engine, "balances")
    assert [row[-1] for row in rows] == [0]  # drift 0 while the payout is in transit
    paid_payout = payout("po_1", 8_000, T0 + DAY, "paid")
    paid = usd(ledger([event("payout.paid", paid_payout, T0 + 3 * DAY)]))
    assert (paid["bank"], paid.get("payouts_in_transit", 0)) == (8_000, 0)
    failed = usd(
        ledger([event("payout.failed", payout("po_1", 8_000, T0 + DAY, "failed"), T0 + 5 * DAY)])
    )
    assert (failed.get("bank", 0), failed["stripe"]) == (0, 10_000)
    bts = [
        txn("txn_po_c", 10_000, "charge", "ch_po", T0, fee=320),
        txn("txn_po_1", -8_000, "payout", "po_1", T0 + DAY),
        txn("txn_po_f", 8_000, "payout_reversal", "po_1", T0 + 5 * DAY, kind="payout_failure"),
    ]
    facts = [bt_fact(bts[0], T0 + 6 * DAY, payout="po_1"), bt_fact(bts[1], T0 + 6 * DAY),
             bt_fact(bts[2], T0 + 6 * DAY)]  # fmt: skip
    synced = usd(ledger(facts))
    assert (synced["stripe"], synced.get("bank", 0), synced.get("payouts_in_transit", 0)) == (
        9_680,
        0,
        0,
    )
    columns, rows = run_report(ledger.engine, "payout_reconciliation")
    (row,) = [dict(zip(columns, r, strict=True)) for r in rows]
    assert (row["bt_count"], row["bt_net"], row["reconciled"]) == (1, 9_680, 0)  # 9,680 != 8,000


def test_an_automatic_payout_reconciles_with_what_it_paid_out(ledger: Any) -> None:
    bts = [
        txn("txn_a1", 5_000, "charge", "ch_a1", T0, fee=175),
        txn("txn_a2", 3_000, "charge", "ch_a2", T0, fee=117),
        txn("txn_a3", -7_708, "payout", "po_a", T0 + 2 * DAY),
    ]
    ledger([
        event("payout.paid", payout("po_a", 7_708, T0 + 2 * DAY, "paid"), T0 + 4 * DAY),
        *(bt_fact(bt, T0 + 5 * DAY, payout="po_a") for bt in bts),
    ])  # fmt: skip
    columns, rows = run_report(ledger.engine, "payout-reconciliation")
    (row,) = [dict(zip(columns, r, strict=True)) for r in rows]
    paid_out = (row["bt_count"], row["bt_gross"], row["bt_fee"], row["bt_net"])
    assert paid_out == (2, 8_000, 292, 7_708)
    assert row["reconciled"] == 1
    columns, rows = run_report(ledger.engine, "balance-summary")
    (summary,) = [dict(zip(columns, r, strict=True)) for r in rows]
    assert (summary["activity_net"], summary["payouts"], summary["ending_balance"]) == (
        7_708,
        -7_708,
        0,
    )


# -- Connect ---------------------------------------------------------------------------------


def test_application_fees_and_transfers_move_the_platform_balance(ledger: Any) -> None:
    # https://docs.stripe.com/connect/destination-charges: the platform is charged 100.00,
    # transfers 90.00 to the connected account and keeps the rest; a reversal returns funds.
    fee = {"id": "fee_1", "object": "application_fee", "amount": 1_000, "currency": "usd",
           "amount_refunded": 0, "created": T0, "balance_transaction": "txn_fee1",
           "refunds": {"object": "list", "data": []}}  # fmt: skip
    transfer = {"id": "tr_1", "object": "transfer", "amount": 9_000, "currency": "usd",
                "amount_reversed": 0, "created": T0, "balance_transaction": "txn_tr1",
                "reversals": {"object": "list", "data": []}}  # fmt: skip
    figures = usd(
        ledger(
            [
                event("application_fee.created", fee, T0),
                event("transfer.created", transfer, T0),
                event("charge.succeeded", charge("ch_dest", 10_000, T0), T0),
            ]
        )  # fmt: skip
    )
    assert figures["stripe"] == 10_000 - 9_000 + 1_000
    reversal = {"id": "trr_1", "object": "transfer_reversal", "amount": 4_000, "currency": "usd",
                "transfer": "tr_1", "created": T0 + DAY}  # fmt: skip
    reversed_ = {**transfer, "amount_reversed": 4_000,
                 "reversals": {"object": "list", "data": [reversal]}}  # fmt: skip
    refunded = {**fee, "amount_refunded": 300}
    figures = usd(
        ledger(
            [
                event("transfer.reversed", reversed_, T0 + DAY),
                event("application_fee.refunded", refunded, T0 + DAY),
            ]
        )  # fmt: skip
    )
    assert figures["stripe"] == 10_000 - 9_000 + 4_000 + 1_000 - 300
    assert figures["connect_transfers"] == 5_000


def test_a_connected_account_and_live_mode_stay_apart(ledger: Any) -> None:
    figures = ledger([
        event("charge.succeeded", charge("ch_c1", 700, T0), T0, account="acct_1"),
        event("charge.succeeded", charge("ch_c2", 900, T0), T0, livemode=True),
    ])  # fmt: skip
    assert figures[("acct_1", False, "usd")]["stripe"] == 700
    assert figures[(None, True, "usd")]["stripe"] == 900
    assert (None, False, "usd") not in figures


# -- currencies ------------------------------------------------------------------------------


def test_a_charge_settled_in_another_currency_posts_in_the_settlement_currency(
    ledger: Any,
) -> None:
    # https://docs.stripe.com/currencies/conversions: a 10.00 EUR charge settled as 11.00 USD
    # (exchange_rate 1.1) is USD in the balance; the ledger keeps the rate.
    ch = charge("ch_fx", 1_000, T0, currency="eur", bt="txn_fx")
    events_only = ledger([event("charge.succeeded", ch, T0)])
    assert events_only[(None, False, "eur")]["stripe"] == 1_000  # all the event knows
    bt = txn("txn_fx", 1_100, "charge", "ch_fx", T0, fee=62, exchange_rate=1.1)
    synced = ledger([bt_fact(bt, T0 + 60)])
    assert (None, False, "eur") not in synced  # no balance in a currency Stripe holds none of
    assert synced[(None, False, "usd")]["stripe"] == 1_038
    with ledger.engine.connect() as connection:
        rate = connection.exec_driver_sql(
            "SELECT exchange_rate FROM proj_journal_entries WHERE balance_transaction_id = 'txn_fx'"
        ).scalar()
    assert rate == "1.1"


@pytest.mark.parametrize(("currency", "shown"), [("jpy", "5,000 JPY"), ("kwd", "5.000 KWD")])
def test_zero_and_three_decimal_currencies(ledger: Any, currency: str, shown: str) -> None:
    ledger([event("charge.succeeded", charge("ch_cur", 5_000 if currency == "jpy" else 5_000,
                                             T0, currency=currency), T0)])  # fmt: skip
    from reports import render

    table = render.render(*run_report(ledger.engine, "balances"), "table")
    assert shown in table


# -- the opening balance ---------------------------------------------------------------------


def test_drift_counts_from_the_opening_balance(ledger: Any) -> None:
    opening = {"id": "opening_platform_test", "object": "event", "type": "ledger.opening_balance",
               "api_version": None, "created": T0 + 10 * DAY, "livemode": False,
               "data": {"object": {"object": "opening_balance", "id": "opening",
                                   "as_of": T0 + 5 * DAY,
                                   "balances": [{"currency": "usd", "amount": 50_000}]}},
               }  # fmt: skip
    snapshot = {"object": "balance", "available": [{"amount": 50_700, "currency": "usd"}],
                "pending": []}  # fmt: skip
    ledger([
        event("charge.succeeded", charge("ch_before", 3_000, T0), T0),  # inside the opening
        opening,
        bt_fact(txn("txn_after", 700, "charge", "ch_after", T0 + 6 * DAY), T0 + 7 * DAY),
        event("balance.available", snapshot, T0 + 7 * DAY),
    ])  # fmt: skip
    columns, rows = run_report(ledger.engine, "balances")
    (row,) = [dict(zip(columns, r, strict=True)) for r in rows]
    assert row["drift"] == 0
    columns, rows = run_report(ledger.engine, "balance-summary")
    (summary,) = [dict(zip(columns, r, strict=True)) for r in rows]
    assert (summary["starting_balance"], summary["ending_balance"]) == (50_000, 50_700)


# -- order does not matter -------------------------------------------------------------------


def _story() -> list[dict[str, Any]]:
    ch = charge("ch_o", 4_000, T0, bt="txn_o")
    re_obj = refund("re_o", "ch_o", 1_500, T0 + DAY, "succeeded", bt="txn_or")
    return [
        event("charge.succeeded", ch, T0),
        event("charge.refunded", {**ch, "amount_refunded": 1_500}, T0 + DAY),
        event("refund.created", re_obj, T0 + DAY),
        event("payout.created", payout("po_o", 2_354, T0 + 2 * DAY, "pending"), T0 + 2 * DAY),
        event("payout.paid", payout("po_o", 2_354, T0 + 2 * DAY, "paid"), T0 + 4 * DAY),
        bt_fact(txn("txn_o", 4_000, "charge", "ch_o", T0, fee=146, status="pending"), T0 + 60),
        bt_fact(txn("txn_o", 4_000, "charge", "ch_o", T0, fee=146), T0 + 3 * DAY, payout="po_o"),
        bt_fact(txn("txn_or", -1_500, "refund", re_obj, T0 + DAY), T0 + 3 * DAY, payout="po_o"),
        bt_fact(txn("txn_po_o", -2_354, "payout", "po_o", T0 + 2 * DAY), T0 + 3 * DAY),
    ]


def _report_rows(engine: sa.Engine) -> dict[str, Any]:
    names = ("balances", "balance_summary", "balance_categories", "balance_itemized",
             "payout_reconciliation", "trial_balance", "journal")  # fmt: skip
    return {name: sorted(map(repr, run_report(engine, name)[1])) for name in names}


def test_any_interleaving_of_events_and_balance_transactions_gives_identical_reports(
    database_url: str, request: pytest.FixtureRequest
) -> None:
    story = _story()
    results = []
    for seed in range(4):
        rnd = random.Random(seed)
        stream = story + [rnd.choice(story) for _ in range(3)]  # with duplicates
        rnd.shuffle(stream)
        if database_url.startswith("sqlite"):
            results.append(_in_fresh_store(f"{database_url}.{seed}", stream, rnd))
        else:
            admin = request.getfixturevalue("postgres_admin_url")
            with fresh_postgres(admin) as url:
                results.append(_in_fresh_store(url, stream, rnd))
    assert all(result == results[0] for result in results[1:])
    (reconciliation,) = results[0]["payout_reconciliation"]
    assert reconciliation.endswith(", 1)")  # the payout reconciles, whatever the order


def _in_fresh_store(url: str, stream: list[dict[str, Any]], rnd: random.Random) -> dict[str, Any]:
    engine = create_engine(url)
    migrate(engine)
    prepare_read_side(engine)
    store = open_event_store(engine)
    while stream:  # any split into batches, projected as they come
        cut = rnd.randint(1, len(stream))
        batch, stream = stream[:cut], stream[cut:]
        store.append([Incoming(event_from_dict(p), "import", utc_now()) for p in batch])
        worker.run(store, until_idle_s=0)
    rows = _report_rows(engine)
    rebuild.rebuild(store, hooks=(views.drop_views, views.create_views))
    assert _report_rows(engine) == rows  # a rebuild from the store gives the same reports
    engine.dispose()
    return rows


def test_tables_of_an_older_journal_ask_for_a_rebuild(database_url: str) -> None:
    engine = create_engine(database_url)
    migrate(engine)
    store = open_event_store(engine)
    worker.run(store, until_idle_s=0)  # registers generation 1
    with engine.begin() as connection:  # what an older stripe-ledger left: another column set
        cascade = " CASCADE" if engine.dialect.name == "postgresql" else ""  # and its views
        connection.exec_driver_sql(f"ALTER TABLE journal_entries_g1 DROP COLUMN estimated{cascade}")
    with pytest.raises(registry.ProjectionOutdated, match="stripe-ledger rebuild journal"):
        worker.run(store, until_idle_s=0)
    rebuild.rebuild(store, ["journal"], hooks=(views.drop_views, views.create_views))
    worker.run(store, until_idle_s=0)  # rebuilt: current again
    engine.dispose()


def test_verify_judges_drift_at_a_balance_sync_snapshot(ledger: Any) -> None:
    def snapshot(available: int, fetched_at: int) -> dict[str, Any]:
        body = {"object": "balance", "available": [{"amount": available, "currency": "usd"}],
                "pending": [{"amount": 0, "currency": "usd"}], "livemode": False}  # fmt: skip
        return {"id": f"bal_{fetched_at}", "object": "event", "type": "ledger.balance",
                "api_version": None, "created": fetched_at, "livemode": False,
                "data": {"object": body}}  # fmt: skip

    bt = txn("txn_v", 10_000, "charge", "ch_v", T0, fee=320)
    ledger([bt_fact(bt, T0 + 60), snapshot(9_681, T0 + 61)])  # Stripe says 1 cent more
    store = open_event_store(ledger.engine)
    checks, lines = verify.verify(store, "0")
    failed = [check for check in checks if not check.ok]
    assert [check.name for check in failed] == ["drift within tolerance (balance-sync snapshots)"]
    assert "drift 0.01 USD exceeds the tolerance 0.00 USD" in failed[0].failures[0]
    assert any("drift 0.01 USD" in line for line in lines)  # major units, with the currency
    checks, _ = verify.verify(store, "0.01")
    assert all(check.ok for check in checks)
    ledger([snapshot(9_680, T0 + 62)])
    checks, _ = verify.verify(store, "0")
    assert all(check.ok for check in checks)
