"""The demo history generator: deterministic, valid Stripe events, and the stories it promises."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from typing import Any

import pytest

from demo.history import API_VERSION, DemoHistory, encode, generate, iter_payloads
from demo.standin import from_demo
from ledger.envelope import event_from_dict, parse_event
from tests.conftest import STRIPE_FIXTURES

Json = dict[str, Any]
STRIPE_ID = re.compile(r"^[a-z_]+_[0-9A-Za-z]{14,}$")
MONEY_KEYS = {
    "amount",
    "amount_captured",
    "amount_refunded",
    "amount_due",
    "amount_paid",
    "amount_remaining",
    "amount_requested",
    "fee",
    "net",
    "subtotal",
    "total",
}


@pytest.fixture(scope="module")
def history() -> DemoHistory:
    return generate(seed=7, events=400)


def _objects(history: DemoHistory, object_type: str) -> dict[str, list[Json]]:
    """object id -> its events, in the history's (created) order."""
    found: dict[str, list[Json]] = defaultdict(list)
    for event in history.events:
        obj = event["data"]["object"]
        if obj.get("object") == object_type:
            found[obj["id"]].append(event)
    return found


def _bt(history: DemoHistory, account: str | None, txn_id: str) -> Json:
    [bt] = [bt for bt in history.balance_transactions[account] if bt["id"] == txn_id]
    return bt


def _walk(value: Any, path: str = "$") -> Any:
    """Yield (path, key, value) for every dict entry and list item in a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield path, key, item
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield path, str(index), item
            yield from _walk(item, f"{path}[{index}]")


def test_same_seed_gives_byte_identical_output() -> None:
    first = [encode(event) for event in generate(seed=7, events=400).deliveries]
    second = [encode(event) for event in generate(seed=7, events=400).deliveries]
    assert first == second
    assert list(iter_payloads(7, 400)) == first


def test_different_seeds_give_different_histories() -> None:
    seven = {event["id"] for event in generate(seed=7, events=400).events}
    eight = {event["id"] for event in generate(seed=8, events=400).events}
    assert not seven & eight


def test_every_event_is_a_stripe_event(history: DemoHistory) -> None:
    for event in history.events:
        parsed = event_from_dict(event)
        assert parsed.api_version == API_VERSION
        assert parsed.livemode is False
        assert parsed.object_type is not None
        if parsed.object_type == "balance":  # Stripe's Balance object has no id
            assert parsed.object_id is None
        else:
            assert parsed.object_id is not None and STRIPE_ID.match(parsed.object_id)
        assert event["object"] == "event"
        assert STRIPE_ID.match(event["id"]) and event["id"].startswith("evt_")
        assert set(event["request"]) == {"id", "idempotency_key"}
        assert isinstance(event["pending_webhooks"], int)
        assert event["data"]["object"]["object"] == parsed.object_type


def test_every_delivery_parses_from_its_bytes(history: DemoHistory) -> None:
    for raw in iter_payloads(7, 400):
        event = parse_event(raw)
        assert event.payload == json.loads(raw)
        assert 300 < len(raw) < 10_000


def test_no_floats_anywhere_and_money_is_integers(history: DemoHistory) -> None:
    money_seen = 0
    for event in history.deliveries:
        for path, key, value in _walk(event):
            # A balance transaction's exchange_rate is the one decimal Stripe sends (a dispute
            # embeds its transactions); money never is.
            if key != "exchange_rate":
                assert not isinstance(value, float), f"{event['type']} {path}.{key} is a float"
            if key in MONEY_KEYS and value is not None:
                assert type(value) is int, f"{event['type']} {path}.{key} = {value!r}"
                money_seen += 1
    assert money_seen > 1000


def test_ids_are_unique_across_distinct_events(history: DemoHistory) -> None:
    ids = [event["id"] for event in history.events]
    assert len(ids) == len(set(ids))
    big = generate(seed=3, events=5000)
    big_ids = [event["id"] for event in big.events]
    assert len(big_ids) == len(set(big_ids))


def test_events_are_sorted_by_created_and_start_at_the_fixed_clock(history: DemoHistory) -> None:
    created = [event["created"] for event in history.events]
    assert created == sorted(created)
    assert created[0] >= 1_793_491_200  # 2026-11-01T00:00:00Z


@pytest.mark.parametrize("size", [2000, 20_000])
def test_events_scales_the_history(size: int) -> None:
    scaled = generate(seed=11, events=size)
    assert 0.9 * size <= len(scaled.events) <= 1.1 * size
    assert len(scaled.deliveries) > len(scaled.events)


def test_customers_subscriptions_and_payments(history: DemoHistory) -> None:
    types = Counter(event["type"] for event in history.events)
    for event_type in (
        "customer.created",
        "customer.subscription.created",
        "payment_intent.created",
        "payment_intent.succeeded",
        "charge.succeeded",
        "balance.available",
    ):
        assert types[event_type] > 0, event_type
    for charge_events in _objects(history, "charge").values():
        for event in charge_events:
            charge = event["data"]["object"]
            if charge["status"] != "succeeded":
                continue
            assert charge["captured"] is True and charge["amount_captured"] == charge["amount"]
            # An id, never expanded, as in every real webhook; the transaction is in the API.
            assert isinstance(charge["balance_transaction"], str)
            bt = _bt(history, event["account"], charge["balance_transaction"])
            assert bt["object"] == "balance_transaction" and bt["id"].startswith("txn_")
            assert bt["source"] == charge["id"] and bt["type"] == "charge"
            if bt["exchange_rate"] is None:
                assert (bt["currency"], bt["amount"]) == (charge["currency"], charge["amount"])
            else:  # settled in another currency, as Stripe converts it
                assert bt["currency"] != charge["currency"]
                assert bt["amount"] == round(charge["amount"] * bt["exchange_rate"])
            assert bt["fee"] == sum(item["amount"] for item in bt["fee_details"]) > 0
            assert bt["fee_details"][0]["type"] == "stripe_fee"
            assert bt["net"] == bt["amount"] - bt["fee"]


def test_payment_intent_events_come_in_stripe_order(history: DemoHistory) -> None:
    for intent_events in _objects(history, "payment_intent").values():
        types = [event["type"] for event in intent_events]
        assert types[0] == "payment_intent.created"
        if "payment_intent.succeeded" in types:
            assert types[-1] == "payment_intent.succeeded"
            charge_id = intent_events[-1]["data"]["object"]["latest_charge"]
            assert charge_id.startswith("ch_")


def test_partial_and_full_refunds(history: DemoHistory) -> None:
    refunded = [e["data"]["object"] for e in history.events if e["type"] == "charge.refunded"]
    partial = [c for c in refunded if 0 < c["amount_refunded"] < c["amount"]]
    full = [c for c in refunded if c["amount_refunded"] == c["amount"]]
    assert partial and all(c["refunded"] is False for c in partial)
    assert full and all(c["refunded"] is True for c in full)
    refunds = _objects(history, "refund")
    by_charge = defaultdict(set)
    for refund_events in refunds.values():
        for event in refund_events:
            by_charge[event["data"]["object"]["charge"]].add(event["type"])
    for charge in partial + full:
        assert {"refund.created", "charge.refund.updated"} <= by_charge[charge["id"]]


def _invoice_paths(history: DemoHistory) -> list[list[tuple[str, str]]]:
    return [
        [(event["type"], event["data"]["object"]["status"]) for event in invoice_events]
        for invoice_events in _objects(history, "invoice").values()
    ]


def test_invoice_draft_open_paid(history: DemoHistory) -> None:
    assert [
        ("invoice.created", "draft"),
        ("invoice.finalized", "open"),
        ("invoice.paid", "paid"),
        ("invoice.payment_succeeded", "paid"),
    ] in _invoice_paths(history)
    for invoice_events in _objects(history, "invoice").values():
        for event in invoice_events:
            invoice = event["data"]["object"]
            assert "subscription" not in invoice
            assert "charge" not in invoice and "payment_intent" not in invoice
            assert invoice["parent"]["type"] == "subscription_details"
            assert invoice["parent"]["subscription_details"]["subscription"].startswith("sub_")
            if invoice["status"] != "paid":
                continue
            assert invoice["amount_paid"] == invoice["amount_due"] > 0
            assert invoice["amount_remaining"] == 0
            transitions = invoice["status_transitions"]
            assert transitions["finalized_at"] <= transitions["paid_at"] == event["created"]
            payments = invoice["payments"]["data"]
            assert [p["object"] for p in payments] == ["invoice_payment"]
            assert payments[0]["status"] == "paid"
            assert payments[0]["amount_paid"] == invoice["amount_paid"]
            assert payments[0]["payment"]["payment_intent"].startswith("pi_")


def test_invoice_failed_uncollectible_then_paid(history: DemoHistory) -> None:
    found = 0
    for invoice_events in _objects(history, "invoice").values():
        types = [event["type"] for event in invoice_events]
        if "invoice.marked_uncollectible" not in types:
            continue
        found += 1
        failed = [e for e in invoice_events if e["type"] == "invoice.payment_failed"]
        attempts = [e["data"]["object"]["attempt_count"] for e in failed]
        assert attempts == sorted(set(attempts)) and attempts[0] == 1 and len(attempts) >= 2
        assert all(e["data"]["object"]["status"] == "open" for e in failed)
        marked = invoice_events[types.index("invoice.marked_uncollectible")]["data"]["object"]
        assert marked["status"] == "uncollectible"
        assert marked["status_transitions"]["marked_uncollectible_at"] is not None
        assert types.index("invoice.marked_uncollectible") < types.index("invoice.paid")
        paid = invoice_events[types.index("invoice.paid")]["data"]["object"]
        assert paid["status"] == "paid" and paid["attempt_count"] > attempts[-1]
    assert found


def test_invoice_open_void(history: DemoHistory) -> None:
    voided = [e["data"]["object"] for e in history.events if e["type"] == "invoice.voided"]
    assert voided
    for invoice in voided:
        assert invoice["status"] == "void"
        assert invoice["status_transitions"]["voided_at"] is not None
        assert invoice["status_transitions"]["paid_at"] is None
        assert invoice["amount_paid"] == 0


def test_invoice_statuses_follow_stripes_transitions(history: DemoHistory) -> None:
    machines = json.loads((STRIPE_FIXTURES / "state_machines.json").read_text())
    allowed = {(t["from"], t["to"]) for t in machines["invoice"]["transitions"]}
    for path in _invoice_paths(history):
        statuses = [status for _, status in path]
        assert statuses[0] == "draft"
        for before, after in zip(statuses, statuses[1:], strict=False):
            assert before == after or (before, after) in allowed, path


def _disputes(history: DemoHistory) -> dict[str, list[Json]]:
    return _objects(history, "dispute")


def test_won_and_lost_disputes_move_funds(history: DemoHistory) -> None:
    outcomes = Counter()
    for dispute_events in _disputes(history).values():
        types = [event["type"] for event in dispute_events]
        assert types[:2] == ["charge.dispute.created", "charge.dispute.funds_withdrawn"]
        created = dispute_events[0]["data"]["object"]
        assert created["status"] == "needs_response" and created["balance_transactions"] == []
        assert isinstance(created["evidence_details"]["due_by"], int)
        assert created["charge"].startswith("ch_") and created["payment_intent"].startswith("pi_")
        withdrawal = dispute_events[1]["data"]["object"]["balance_transactions"][0]
        amount = created["amount"]
        assert withdrawal["object"] == "balance_transaction"
        assert (withdrawal["type"], withdrawal["reporting_category"]) == ("adjustment", "dispute")
        assert withdrawal["amount"] == -amount
        assert withdrawal["fee"] == 1500 and withdrawal["net"] == -(amount + 1500)
        assert "charge.dispute.updated" in types
        closed = dispute_events[types.index("charge.dispute.closed")]["data"]["object"]
        outcomes[closed["status"]] += 1
        if closed["status"] == "won":
            reinstated = dispute_events[types.index("charge.dispute.funds_reinstated")]
            bts = reinstated["data"]["object"]["balance_transactions"]
            assert bts[0] == withdrawal
            assert 0 < bts[1]["amount"] <= amount and bts[1]["fee"] < 0
            assert bts[1]["net"] == bts[1]["amount"] - bts[1]["fee"]
        else:
            assert closed["status"] == "lost"
            assert "charge.dispute.funds_reinstated" not in types
    assert outcomes["won"] >= 2 and outcomes["lost"] >= 1


def test_a_full_and_a_partial_reinstatement(history: DemoHistory) -> None:
    shares = set()
    for event in history.events:
        if event["type"] == "charge.dispute.funds_reinstated":
            dispute = event["data"]["object"]
            back = dispute["balance_transactions"][1]
            shares.add(
                "full" if (back["amount"], back["fee"]) == (dispute["amount"], -1500) else "partial"
            )
    assert shares == {"full", "partial"}


def test_payouts_paid_failed_after_paid_and_canceled(history: DemoHistory) -> None:
    paths = {
        payout_id: [(e["type"], e["data"]["object"]["status"]) for e in payout_events]
        for payout_id, payout_events in _objects(history, "payout").items()
    }
    assert any(path[-1] == ("payout.paid", "paid") for path in paths.values())
    assert any(
        path[-2:] == [("payout.paid", "paid"), ("payout.failed", "failed")]
        for path in paths.values()
    )
    assert any(path[-1] == ("payout.canceled", "canceled") for path in paths.values())
    assert all(path[0] == ("payout.created", "pending") for path in paths.values())


def test_jpy_is_zero_decimal(history: DemoHistory) -> None:
    charges = [
        e["data"]["object"]
        for e in history.events
        if e["type"] == "charge.succeeded" and e["data"]["object"]["currency"] == "jpy"
    ]
    assert charges
    for charge in charges:
        assert 500 <= charge["amount"] <= 30_000  # yen, not "cents of yen"
        bt = _bt(history, None, charge["balance_transaction"])
        assert bt["fee"] == (charge["amount"] * 36 + 500) // 1000
    currencies = {e["data"]["object"].get("currency") for e in history.events}
    assert {"usd", "jpy"} <= currencies


def test_one_connect_account_and_the_platform(history: DemoHistory) -> None:
    accounts = Counter(event["account"] for event in history.events)
    connected = [account for account in accounts if account is not None]
    assert len(connected) == 1 and connected[0].startswith("acct_")
    assert accounts[None] > accounts[connected[0]] > 0


def test_same_second_pair_for_one_object(history: DemoHistory) -> None:
    seconds = Counter(
        (event["data"]["object"].get("id"), event["created"]) for event in history.events
    )
    pairs = [key for key, count in seconds.items() if count >= 2 and key[0] is not None]
    assert any(object_id.startswith("in_") for object_id, _ in pairs)
    assert any(object_id.startswith("dp_") for object_id, _ in pairs)


def test_deliveries_have_duplicates_and_every_event(history: DemoHistory) -> None:
    delivered = Counter(event["id"] for event in history.deliveries)
    assert set(delivered) == {event["id"] for event in history.events}
    duplicates = sum(count - 1 for count in delivered.values())
    assert 0.01 * len(history.events) <= duplicates <= 0.06 * len(history.events)
    by_id = {event["id"]: encode(event) for event in history.events}
    for event in history.deliveries:
        assert encode(event) == by_id[event["id"]]  # a redelivery is the same event


def test_deliveries_are_mostly_but_not_always_in_order(history: DemoHistory) -> None:
    first_seen: list[Json] = []
    seen: set[str] = set()
    for event in history.deliveries:
        if event["id"] not in seen:
            seen.add(event["id"])
            first_seen.append(event)
    backwards = sum(
        1
        for before, after in zip(first_seen, first_seen[1:], strict=False)
        if after["created"] < before["created"]
    )
    assert 0 < backwards < 0.1 * len(first_seen)


def test_a_pair_for_one_object_is_delivered_newest_first(history: DemoHistory) -> None:
    position = {}
    for index, event in enumerate(history.deliveries):
        position.setdefault(event["id"], index)
    reversed_pairs = []
    for object_events in _objects(history, "payout").values():
        for older in object_events:
            for newer in object_events:
                if (
                    newer["created"] > older["created"]
                    and position[newer["id"]] < position[older["id"]]
                ):
                    reversed_pairs.append((older["type"], newer["type"]))
    assert ("payout.paid", "payout.failed") in reversed_pairs


def test_summary_counts_per_type(history: DemoHistory) -> None:
    summary = history.summary()
    assert summary["events"] == len(history.events)
    assert summary["deliveries"] == len(history.deliveries)
    assert summary["duplicate_deliveries"] == len(history.deliveries) - len(history.events)
    assert summary["out_of_order_deliveries"] > 0
    assert sum(summary["types"].values()) == len(history.events)
    assert summary["types"]["invoice.voided"] == sum(
        1 for event in history.events if event["type"] == "invoice.voided"
    )


def test_the_last_balance_snapshot_matches_the_money_in_the_story(history: DemoHistory) -> None:
    expected: Counter[tuple[str | None, str]] = Counter()
    dispute_txns: set[str] = set()
    for event in history.events:
        obj, key = event["data"]["object"], event["account"]
        # Charges, refunds and application fees count in the currency they settle in.
        if event["type"] in ("charge.succeeded", "refund.created", "application_fee.created"):
            bt = _bt(history, key, obj["balance_transaction"])
            expected[key, bt["currency"]] += bt["net"]
        elif event["type"].startswith("charge.dispute."):
            for bt in obj["balance_transactions"]:
                if bt["id"] not in dispute_txns:
                    dispute_txns.add(bt["id"])
                    expected[key, bt["currency"]] += bt["net"]
        elif event["type"] == "payout.created":
            expected[key, obj["currency"]] -= obj["amount"]
        elif event["type"] in ("payout.failed", "payout.canceled"):
            expected[key, obj["currency"]] += obj["amount"]
    last: dict[str | None, Json] = {}
    for event in history.events:
        if event["type"] == "balance.available":
            last[event["account"]] = event["data"]["object"]
    reported: Counter[tuple[str | None, str]] = Counter()
    for account, balance in last.items():
        for item in balance["available"] + balance["pending"]:
            reported[account, item["currency"]] += item["amount"]
            assert item["amount"] >= 0 or item in balance["pending"]
    nonzero = {key: value for key, value in reported.items() if value}
    assert nonzero == {key: value for key, value in expected.items() if value}
    assert {currency for _, currency in nonzero} >= {"usd", "jpy", "eur"}


# -- the balance transactions Stripe would hold (served by the stand-in to balance-sync) ------


def _per_scope_currency(history: DemoHistory) -> tuple[Counter[Any], Counter[Any]]:
    nets: Counter[tuple[str | None, str]] = Counter()
    for account, bts in history.balance_transactions.items():
        for bt in bts:
            nets[account, bt["currency"]] += bt["net"]
    balances: Counter[tuple[str | None, str]] = Counter()
    for account, balance in history.balances.items():
        assert balance["object"] == "balance" and balance["livemode"] is False
        for item in balance["available"] + balance["pending"]:
            balances[account, item["currency"]] += item["amount"]
    return nets, balances


@pytest.mark.parametrize("seed, size", [(7, 400), (3, 3000)])
def test_every_transactions_net_sums_to_the_final_balance(seed: int, size: int) -> None:
    history = generate(seed=seed, events=size)
    nets, balances = _per_scope_currency(history)
    assert nets == balances
    assert {currency for _, currency in nets} >= {"usd", "jpy", "eur"}
    assert set(history.balance_transactions) == {None, *{e["account"] for e in history.events}}
    for bts in history.balance_transactions.values():
        for bt in bts:
            assert bt["net"] == bt["amount"] - bt["fee"]
            assert bt["fee"] == sum(item["amount"] for item in bt["fee_details"])
            assert isinstance(bt["source"], str) and bt["source"] in history.sources
            assert bt["status"] in ("available", "pending")
        assert len({bt["id"] for bt in bts}) == len(bts)
    types = Counter(bt["type"] for bts in history.balance_transactions.values() for bt in bts)
    for bt_type in (
        "charge",
        "refund",
        "adjustment",
        "payout",
        "payout_cancel",
        "payout_failure",
        "application_fee",
    ):
        assert types[bt_type] > 0, bt_type


@pytest.mark.parametrize("seed, size", [(7, 400), (3, 3000)])
def test_every_automatic_payouts_transactions_sum_to_its_amount(seed: int, size: int) -> None:
    history = generate(seed=seed, events=size)
    paid_out: set[str] = set()
    for account, members in history.payout_members.items():
        by_id = {bt["id"]: bt for bt in history.balance_transactions[account]}
        for payout_id, txn_ids in members.items():
            payout = history.sources[payout_id]
            assert payout["object"] == "payout" and payout["automatic"] is True
            [own] = [by_id[t] for t in txn_ids if by_id[t]["type"] == "payout"]
            assert own["id"] == payout["balance_transaction"] and own["net"] == -payout["amount"]
            others = [by_id[t] for t in txn_ids if t != own["id"]]
            assert sum(bt["net"] for bt in others) == payout["amount"] > 0
            # Automatic payouts pay out available funds, each transaction at most once.
            assert all(bt["available_on"] <= payout["created"] for bt in others)
            assert not paid_out & set(txn_ids)
            paid_out.update(txn_ids)
    assert sum(len(members) for members in history.payout_members.values()) >= 4


def test_disputes_keep_their_embedded_balance_transactions(history: DemoHistory) -> None:
    for event in history.events:
        obj = event["data"]["object"]
        if obj.get("object") == "dispute":
            for bt in obj["balance_transactions"]:
                assert bt["object"] == "balance_transaction"  # as Stripe sends them
                assert _bt(history, event["account"], bt["id"])["net"] == bt["net"]
        elif obj.get("object") in ("charge", "refund", "payout"):
            assert not isinstance(obj.get("balance_transaction"), dict)


def test_connected_charges_pay_the_platform_an_application_fee(history: DemoHistory) -> None:
    """A direct charge on the connected account: its fee_details carry the application fee, and
    the platform holds an application_fee transaction of that amount (platform_earning)."""
    fees = {
        e["data"]["object"]["id"]: e
        for e in history.events
        if e["type"] == "application_fee.created"
    }
    connected = [
        e["data"]["object"]
        for e in history.events
        if e["type"] == "charge.succeeded" and e["account"] is not None
    ]
    assert connected and len(fees) == len(connected)
    platform = {bt["source"]: bt for bt in history.balance_transactions[None]}
    for charge in connected:
        fee_event = fees[charge["application_fee"]]
        assert fee_event["account"] is None  # the platform's event
        fee = fee_event["data"]["object"]
        assert (fee["charge"], fee["amount"]) == (charge["id"], charge["application_fee_amount"])
        bt = _bt(history, fee["account"], charge["balance_transaction"])
        [item] = [i for i in bt["fee_details"] if i["type"] == "application_fee"]
        assert item["amount"] == fee["amount"] and bt["net"] == bt["amount"] - bt["fee"]
        earning = platform[fee["id"]]
        assert (earning["type"], earning["reporting_category"]) == (
            "application_fee",
            "platform_earning",
        )
        rate = earning["exchange_rate"] or 1  # a EUR fee settles in the platform's USD
        assert earning["net"] == round(fee["amount"] * rate)
        assert earning["id"] == fee["balance_transaction"]


def test_the_platforms_eur_charges_settle_in_usd() -> None:
    """Settlement currency: the US platform holds no EUR; its EUR charges, their refunds and
    disputes, and the application fees of EUR charges, become USD balance transactions with the
    exchange_rate, so the platform's balance has no EUR in it."""
    history = generate(seed=3, events=3000)
    platform = history.balance_transactions[None]
    assert {bt["currency"] for bt in platform} == {"usd", "jpy"}
    converted = [bt for bt in platform if bt["exchange_rate"] is not None]
    assert {bt["type"] for bt in converted} >= {"charge", "refund", "application_fee"}
    assert all(bt["currency"] == "usd" and bt["exchange_rate"] == 1.08 for bt in converted)
    eur_charges = [
        e for e in history.events
        if e["type"] == "charge.succeeded" and e["account"] is None
        and e["data"]["object"]["currency"] == "eur"
    ]  # fmt: skip
    assert eur_charges  # still presented to the customer in EUR
    assert {c["currency"] for c in history.balances[None]["available"]} == {"usd", "jpy"}


def test_the_demo_history_is_never_dated_after_now() -> None:
    from demo.history import BASE_TIMESTAMP, generate_before

    ahead = generate(seed=7, events=400)
    last = ahead.events[-1]["created"]
    assert last > BASE_TIMESTAMP
    assert generate_before(last + 1, seed=7, events=400).events == ahead.events  # already past
    now = BASE_TIMESTAMP + 3_600  # an hour into the history's first day
    moved = generate_before(now, seed=7, events=400)
    assert moved.events[-1]["created"] <= now
    assert moved.events[0]["created"] < ahead.events[0]["created"]
    assert (ahead.events[0]["created"] - moved.events[0]["created"]) % 86_400 == 0  # whole days
    assert len(moved.events) == len(ahead.events)


# ---------------------------------------------------------------- pinned output
# SHA-256 digests of everything the generator hands out, computed on the code before it was
# split by story (issue #14): a refactor of the generator must leave every byte as it was. A
# deliberate change of the history updates these digests in the same commit, saying why.
PINNED_DIGESTS = {
    (7, 400): {
        "deliveries": "26324f6ebf8b8449d575796f96a059b06108274c6afd8f749d53bd38611c5634",
        "events": "9018749f96f1875fba679da1a7c403dbcf6e2bcedf6bd8afe9731f361133144b",
        "balance_transactions": "37298a28e445b8148b5e12dccb83646aaa3d5be58233ede118410a5259e7d291",
        "payout_members": "1ee56cde2987078cf38a3eacd076dd606d7c43d4cc253fa3bd7de7c7e7bd53c8",
        "balances": "72c3e99436277ea59918fa619a0c7d09102f00d61ba95791a1c0560f20b259a5",
        "sources": "889be3189ec0a0c38ba0d4e1301438aae69e1d38abf2688d4eca0639637e1c17",
        "standin": "9b81883ca7038e6cfb11df516b0a63a2ee2e846278ae4ef0bf4abddf97930dfa",
        "summary": "f239bfa010d925a2e666f311292263e2e2b7978e28a36dd8c443141d739ed229",
    },
    (3, 5_000): {
        "deliveries": "66a319254319180cd9786f05323adc1c73263bff8a4f2d7f3ff8b513069a9805",
        "events": "834d6a9d8aaa5643c7a94ed02a548413abccf31d60a519737ebbbd74500de0f7",
        "balance_transactions": "18661ecc933391eb616cb5b9a1e0f6bc19ae2dc5b976db9d295b1ef308fb0031",
        "payout_members": "2803c4fb05a3eab2dbd646f79afdf32f497cb9820e8bdcf60451f4a954c035e9",
        "balances": "d49ed559c7127828292d5489f05f0af5d2240e72c1130706e519cf6db3352fd2",
        "sources": "a68c89b71631e5f756477ab81c1a6b918b644f383956b1470bd138b74a5dacb3",
        "standin": "30fea12e4aa0fa0492f79fed8d5dc186de2c78bbfab949ee24e624bf35684e3b",
        "summary": "6909e794d4c3ca95ebf8bf0649ce3e1b1b4e62a2cfe45db87f02ce351efd4186",
    },
    (11, 20_000): {
        "deliveries": "cba30c055b024cef22fe0983e321dfacfd05d41eb8d5b2396295447107a0a388",
        "events": "bdc948f358e6b294dc713ce31ce4c9ca70cdaccc0d79382b6d1f975cf1bd6f9f",
        "balance_transactions": "83170d6468798eb5d29ba63c12c8ede72f3374117a6e50993132ad941c3b1807",
        "payout_members": "3f598d2587773229c7448f87d1c5b8bd169c43516a2150e67e9241da4496cdb7",
        "balances": "90633258973be4c74289664d1fcad8d31a96cd458ae923a11a0cdbd79b44a9d2",
        "sources": "96ed2643e7083890a8cb10f7563b9e0432dd1b98dc311e9d2f74d1aa5f7bd6c1",
        "standin": "5a6de4095d8ab367df30546cd52bd631c5448fea6122389829cc1b67801c770d",
        "summary": "72759553832b28053714a7d955246399b8fe706d2108fb719d4c7de9c440c222",
    },
}
PINNED_BEFORE_DIGEST = "91596bd1db901793638d1cb21f421eb6707d9e80e9bf15219cd4f2ce2b06dba7"


def _digest(chunks: Any) -> str:
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk)
        hasher.update(b"\n")
    return hasher.hexdigest()


def _canonical(value: Any) -> bytes:
    """JSON bytes with the keys in the generator's order (an order change is a change too)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _digests(history: DemoHistory) -> dict[str, str]:
    """One digest per output: the deliveries byte for byte in order, the distinct events in
    order, and the API state the stand-in serves (balance transactions, payout members, final
    Balances, source objects, and the stand-in's own data built from them)."""
    return {
        "deliveries": _digest(encode(event) for event in history.deliveries),
        "events": _digest(encode(event) for event in history.events),
        "balance_transactions": _digest(
            _canonical([account, bts]) for account, bts in history.balance_transactions.items()
        ),
        "payout_members": _canonical_digest(history.payout_members),
        "balances": _canonical_digest(history.balances),
        "sources": _digest(_canonical([key, obj]) for key, obj in history.sources.items()),
        "standin": _canonical_digest(from_demo(history).to_json()),
        "summary": _canonical_digest(history.summary()),
    }


def _canonical_digest(value: Any) -> str:
    return _digest([_canonical(value)])


@pytest.mark.parametrize(("seed", "size"), sorted(PINNED_DIGESTS))
def test_the_generators_output_is_pinned(seed: int, size: int) -> None:
    history = generate(seed=seed, events=size)
    assert _digests(history) == PINNED_DIGESTS[(seed, size)]


def test_the_large_pinned_history_tells_every_story() -> None:
    """The largest pinned history exercises every story, so the pin covers every builder."""
    types = generate(seed=11, events=20_000).summary()["types"]
    for event_type in (
        "application_fee.created",
        "balance.available",
        "charge.dispute.funds_reinstated",
        "charge.failed",
        "charge.refund.updated",
        "customer.subscription.deleted",
        "invoice.marked_uncollectible",
        "invoice.voided",
        "payout.canceled",
        "payout.failed",
        "refund.created",
    ):
        assert types.get(event_type, 0) > 0, event_type


def test_the_history_moved_before_now_is_pinned() -> None:
    from demo.history import BASE_TIMESTAMP, generate_before

    moved = generate_before(BASE_TIMESTAMP + 3_600, seed=5, events=1_000)
    assert _digest(encode(event) for event in moved.deliveries) == PINNED_BEFORE_DIGEST
