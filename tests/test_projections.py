"""Projections: a deterministic function of the SET of stored events, on SQLite and PostgreSQL."""

from __future__ import annotations

import argparse
import itertools
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import project_cmd
from ledger.database import WRITE, create_engine, migrate
from ledger.envelope import EnvelopeError, event_from_dict
from ledger.settings import Settings
from ledger.store import EventStore, Incoming, open_event_store, utc_now
from projections import registry, worker
from projections.base import Counts, table_name, upcast_all
from projections.upcast import upcast
from tests.conftest import STRIPE_FIXTURES
from tests.support.projection_world import TOTALS, World, stored, worlds

STRIPE = STRIPE_FIXTURES
GENERATIONS = itertools.count(100)  # fresh table generations per hypothesis example
PROPERTY = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def project(engine: sa.Engine, batches: list[list[Any]], generation: int) -> dict[str, Counts]:
    """Apply event batches straight into ``generation`` (each batch one transaction)."""
    counts = {name: Counts() for name in registry.PROJECTIONS}
    with engine.connect().execution_options(**WRITE) as connection:
        with connection.begin():
            for projection in registry.PROJECTIONS.values():
                projection.create_tables(connection, generation)
        for batch in batches:
            with connection.begin():
                for name, projection in registry.PROJECTIONS.items():
                    counts[name].add(projection.apply(connection, batch, generation))
    return counts


def dump(engine: sa.Engine, generation: int) -> dict[str, Any]:
    with engine.connect() as connection:
        return {
            name: projection.dump(connection, generation)
            for name, projection in registry.PROJECTIONS.items()
        }


def report(engine: sa.Engine, generation: int) -> dict[tuple[str, bool, str], dict[str, int]]:
    """The per (account, livemode, currency) figures the report needs, by simple SQL."""
    postings = table_name("journal_postings", generation)
    sql = f"""
        SELECT account_key, livemode, currency,
          SUM(CASE WHEN kind = 'charge' AND ledger_account = 'revenue' THEN -amount ELSE 0 END),
          SUM(CASE WHEN kind = 'refund' AND ledger_account = 'refunds' THEN amount ELSE 0 END),
          SUM(CASE WHEN kind = 'dispute' AND ledger_account = 'dispute_losses'
                   THEN amount ELSE 0 END),
          SUM(CASE WHEN kind = 'dispute_reversal' AND ledger_account = 'dispute_losses'
                   THEN -amount ELSE 0 END),
          SUM(CASE WHEN ledger_account = 'dispute_fees' THEN amount ELSE 0 END),
          SUM(CASE WHEN ledger_account = 'processing_fees' THEN amount ELSE 0 END),
          SUM(CASE WHEN ledger_account = 'bank' THEN amount ELSE 0 END)
        FROM {postings} GROUP BY account_key, livemode, currency
    """
    with engine.connect() as connection:
        return {
            (row[0], bool(row[1]), row[2]): dict(
                zip(TOTALS, (int(v) for v in row[3:]), strict=True)
            )
            for row in connection.execute(sa.text(sql))
        }


def shuffled_with_duplicates(events: list[Any], rnd: random.Random) -> list[list[Any]]:
    stream = events + [rnd.choice(events) for _ in range(rnd.randint(0, len(events)))]
    rnd.shuffle(stream)
    cuts = sorted(rnd.sample(range(1, len(stream)), k=min(len(stream) - 1, rnd.randint(0, 4))))
    return [stream[a:b] for a, b in itertools.pairwise([0, *cuts, len(stream)])]


def assert_books_balance(engine: sa.Engine, generation: int) -> None:
    postings, balances = (
        table_name("journal_postings", generation),
        table_name("balances", generation),
    )
    with engine.connect() as connection:
        unbalanced = connection.execute(
            sa.text(
                f"SELECT entry_id, currency, SUM(amount) FROM {postings} "
                "GROUP BY entry_id, account_key, livemode, currency HAVING SUM(amount) <> 0"
            )
        ).all()
        assert unbalanced == []
        currencies = connection.execute(
            sa.text(
                f"SELECT entry_id FROM {postings} GROUP BY entry_id, account_key, livemode "
                "HAVING COUNT(DISTINCT currency) > 1"
            )
        ).all()
        assert currencies == []
        summed = {
            tuple(row[:4]): int(row[4])
            for row in connection.execute(
                sa.text(
                    "SELECT account_key, livemode, currency, ledger_account, SUM(amount) "
                    f"FROM {postings} GROUP BY account_key, livemode, currency, ledger_account "
                    "HAVING SUM(amount) <> 0"
                )
            )
        }
        kept = {
            tuple(row[:4]): int(row[4])
            for row in connection.execute(
                sa.text(
                    "SELECT account_key, livemode, currency, ledger_account, amount "
                    f"FROM {balances}"
                )
            )
        }
        assert kept == summed


# -- the property: any order, any duplicates, any batching -> identical rows ------------------


@PROPERTY
@given(world=worlds(), seed=st.integers(0, 2**32 - 1))
def test_any_permutation_with_duplicates_gives_identical_rows(
    engine: sa.Engine, world: World, seed: int
) -> None:
    events = stored(world.events)
    in_order, permuted = next(GENERATIONS), next(GENERATIONS)
    project(engine, [events], in_order)
    project(engine, shuffled_with_duplicates(events, random.Random(seed)), permuted)

    assert dump(engine, permuted) == dump(engine, in_order)
    for generation in (in_order, permuted):
        assert_books_balance(engine, generation)

    # ... and the rows are the RIGHT ones, not merely the same ones
    figures = report(engine, permuted)
    expected = {
        key: totals for key, totals in world.expected.totals.items() if any(totals.values())
    }
    assert {key: value for key, value in figures.items() if any(value.values())} == expected
    rows = dump(engine, permuted)
    invoices = {row["invoice_id"]: row["status"] for row in rows["invoices"]["invoices"]}
    assert invoices == world.expected.invoices
    disputes = {
        row["dispute_id"]: (
            row["status"],
            row["funds_withdrawn"],
            row["funds_reinstated"],
            row["dispute_fees"],
        )
        for row in rows["disputes"]["disputes"]
    }
    assert disputes == world.expected.disputes
    history = rows["invoices"]["invoice_status_history"]
    assert len({(r["invoice_id"], r["status"]) for r in history}) == len(history)


@PROPERTY
@given(world=worlds(), seed=st.integers(0, 2**32 - 1))
def test_merge_folds_are_idempotent_under_replay(
    engine: sa.Engine, world: World, seed: int
) -> None:
    """Projecting the same events again (a replay) changes nothing."""
    events = stored(world.events)
    generation = next(GENERATIONS)
    project(engine, [events], generation)
    before = dump(engine, generation)
    project(engine, shuffled_with_duplicates(events, random.Random(seed)), generation)
    assert dump(engine, generation) == before


# -- same-second events, newest delivered first ------------------------------------------------


def _event(
    event_id: str, event_type: str, created: int, obj: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "livemode": False,
        "type": event_type,
        "data": {"object": obj},
        **extra,
    }


def test_same_second_events_delivered_newest_first_end_in_the_right_state(
    engine: sa.Engine,
) -> None:
    invoice = {
        "id": "in_same",
        "object": "invoice",
        "currency": "usd",
        "customer": "cus_1",
        "amount_due": 500,
        "amount_remaining": 500,
        "amount_paid": 0,
        "attempt_count": 0,
        "status_transitions": {"finalized_at": 1000},
    }
    charge = {
        "id": "ch_same",
        "object": "charge",
        "currency": "jpy",
        "status": "succeeded",
        "amount": 3000,
        "amount_captured": 3000,
    }
    payout = {"id": "po_same", "object": "payout", "currency": "usd", "amount": 700}
    newest_first = [  # 'z' ids sort first on purpose: the id is the last tie-break only
        _event(
            "evt_a_paid",
            "invoice.paid",
            1000,
            {
                **invoice,
                "status": "paid",
                "amount_paid": 500,
                "amount_remaining": 0,
                "attempt_count": 1,
                "status_transitions": {"finalized_at": 1000, "paid_at": 1000},
            },
        ),
        _event("evt_z_finalized", "invoice.finalized", 1000, {**invoice, "status": "open"}),
        _event("evt_a_refund2", "charge.refunded", 2000, {**charge, "amount_refunded": 3000}),
        _event("evt_z_refund1", "charge.refunded", 2000, {**charge, "amount_refunded": 1000}),
        _event("evt_a_failed", "payout.failed", 3000, {**payout, "status": "failed"}),
        _event("evt_z_paid", "payout.paid", 3000, {**payout, "status": "paid"}),
    ]
    generation = next(GENERATIONS)
    project(engine, [stored(newest_first)], generation)
    rows = dump(engine, generation)
    (row,) = rows["invoices"]["invoices"]
    assert (row["status"], row["amount_paid"], row["amount_remaining"], row["paid_at"]) == (
        "paid",
        500,
        0,
        1000,
    )
    assert {(r["status"], r["reached_at"]) for r in rows["invoices"]["invoice_status_history"]} == {
        ("open", 1000),
        ("paid", 1000),
    }
    figures = report(engine, generation)
    assert figures[("", False, "jpy")]["refunded"] == 3000  # yen stay whole yen
    assert figures[("", False, "usd")]["payouts"] == 0  # paid, then failed: reversed
    postings = {
        (r["entry_id"], r["ledger_account"]): r["amount"]
        for r in rows["journal"]["journal_postings"]
    }
    assert postings[("po_same:paid", "bank")] == 700
    assert postings[("po_same:returned", "bank")] == -700
    assert postings[("po_same:payout", "stripe_available")] == -700  # out at creation
    assert postings[("po_same:failure", "stripe_available")] == 700  # and back
    assert_books_balance(engine, generation)


def test_a_terminal_invoice_never_leaves_it_and_paid_void_ties_are_deterministic(
    engine: sa.Engine,
) -> None:
    base = {"id": "in_t", "object": "invoice", "currency": "eur", "amount_due": 100}
    voided = _event("evt_1", "invoice.voided", 50, {**base, "status": "void"})
    reopened = _event("evt_2", "invoice.updated", 60, {**base, "status": "open"})  # later but lower
    paid = _event("evt_3", "invoice.paid", 50, {**base, "status": "paid", "amount_paid": 100})
    results = set()
    for order in itertools.permutations([voided, reopened, paid]):
        generation = next(GENERATIONS)
        project(engine, [stored(list(order))], generation)
        (row,) = dump(engine, generation)["invoices"]["invoices"]
        results.add((row["status"], row["amount_paid"]))
    assert results == {("paid", 100)}  # same created: rank tie, then event id evt_3 > evt_1


# -- upcasters ------------------------------------------------------------------------------


def test_upcasters_bring_old_payloads_to_the_newest_shape() -> None:
    old_invoice = _event(
        "evt_u",
        "invoice.paid",
        1,
        {
            "id": "in_u",
            "object": "invoice",
            "charge": "ch_u",
            "payment_intent": "pi_u",
            "subscription": "sub_u",
        },
        request="req_u",
    )
    new = upcast(old_invoice, "2017-01-01")
    obj = new["data"]["object"]
    assert new["request"] == {"id": "req_u", "idempotency_key": None}
    assert "charge" not in obj and "payment_intent" not in obj and "subscription" not in obj
    assert obj["payments"]["data"][0]["payment"] == {
        "type": "payment_intent",
        "payment_intent": "pi_u",
    }
    assert obj["parent"]["subscription_details"]["subscription"] == "sub_u"
    assert old_invoice["data"]["object"]["charge"] == "ch_u"  # the stored payload is untouched
    assert upcast(new, None) == new  # idempotent: upcasting the newest shape changes nothing
    basil = _event(
        "evt_b", "invoice.paid", 1, {"id": "in_b", "object": "invoice", "payments": {"data": []}}
    )
    assert upcast(basil, "2025-03-31.basil") == basil


def test_an_old_invoice_projects_its_subscription_through_the_upcaster(engine: sa.Engine) -> None:
    old = _event(
        "evt_o",
        "invoice.created",
        1,
        {
            "id": "in_o",
            "object": "invoice",
            "status": "draft",
            "subscription": "sub_o",
            "currency": "usd",
        },
    )
    old["api_version"] = "2020-08-27"
    generation = next(GENERATIONS)
    project(engine, [stored([old])], generation)
    (row,) = dump(engine, generation)["invoices"]["invoices"]
    assert row["subscription"] == "sub_o"


# -- money: integers only ------------------------------------------------------------------


def test_non_integer_amounts_are_refused_and_counted_never_stored(engine: sa.Engine) -> None:
    charge = {
        "id": "ch_f",
        "object": "charge",
        "currency": "usd",
        "status": "succeeded",
        "amount_captured": 10.5,
        "amount_refunded": 0,
    }
    generation = next(GENERATIONS)
    counts = project(engine, [stored([_event("evt_f", "charge.succeeded", 1, charge)])], generation)
    assert counts["journal"].refused == 1
    assert dump(engine, generation)["journal"]["journal_postings"] == []


def test_unknown_event_types_are_skipped_and_counted(engine: sa.Engine) -> None:
    events = stored([_event("evt_x", "made.up_type", 1, {"id": "x_1", "object": "thing"})])
    counts = project(engine, [events], next(GENERATIONS))
    assert all(c.skipped == 1 and c.applied == 0 for c in counts.values())


# -- every real sample payload --------------------------------------------------------------


def sample_payloads() -> list[tuple[str, Any]]:
    files = sorted((STRIPE / "samples").glob("*.json")) + sorted((STRIPE / "extra").rglob("*.json"))
    found: list[tuple[str, Any]] = []
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        if path.name == "djstripe_fake_events_all.json":
            found.extend((f"{path.name}:{key}", value) for key, value in data.items())
        else:
            found.append((path.name, data))
    return found


def rekeyed(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "id": f"evt_{name}"}  # ids repeat across these files


def test_every_sample_payload_loads_and_projects(engine: sa.Engine) -> None:
    accepted, refused = [], []
    for name, payload in sample_payloads():
        try:
            accepted.append(event_from_dict(rekeyed(name, payload)))
        except EnvelopeError:
            refused.append(name)
    # only the data-only one is refused by the envelope (the v2 thin event is stored, skipped)
    assert sorted(refused) == ["38_charge.refunded__pay-rails.json"]
    assert len(accepted) > 150
    store = open_event_store(engine)
    store.append([Incoming(event, "import", utc_now()) for event in accepted])
    stats = worker.run(store, until_idle_s=0)
    assert set(stats.positions.values()) == {store.head_position()}
    applied = {name: counts.applied for name, counts in stats.per_projection.items()}
    assert all(applied.values()), applied
    for projection_name in registry.PROJECTIONS:
        generation = 1
        for generation_rows in dump(engine, generation)[projection_name].values():
            for row in generation_rows:
                assert not any(isinstance(value, float) for value in row.values()), row


def project_sample(engine: sa.Engine, *names: str) -> tuple[dict[str, Any], dict[str, Counts]]:
    payloads = [rekeyed(n, json.loads((STRIPE / "samples" / n).read_text())) for n in names]
    generation = next(GENERATIONS)
    counts = project(engine, [stored(payloads)], generation)
    return dump(engine, generation), counts


def test_djstripe_funds_withdrawn_sample(engine: sa.Engine) -> None:
    rows, _ = project_sample(engine, "31_charge.dispute.funds_withdrawn__dj-stripe.json")
    (dispute,) = rows["disputes"]["disputes"]
    assert (dispute["funds_withdrawn"], dispute["funds_reinstated"], dispute["dispute_fees"]) == (
        1000,
        0,
        1500,
    )
    assert (dispute["status"], dispute["charge"], dispute["currency"]) == (
        "needs_response",
        "ch_1JHRCWJSZQVUcJYgOCavbxio",
        "usd",
    )
    balances = {r["ledger_account"]: r["amount"] for r in rows["journal"]["balances"]}
    stripe = balances.pop("stripe_pending", 0) + balances.pop("stripe_available", 0)
    assert (balances, stripe) == ({"dispute_losses": 1000, "dispute_fees": 1500}, -2500)


def test_djstripe_full_reinstatement_sample_counts_each_balance_transaction_once(
    engine: sa.Engine,
) -> None:
    rows, _ = project_sample(
        engine,
        "31_charge.dispute.funds_withdrawn__dj-stripe.json",
        "32_charge.dispute.funds_reinstated__dj-stripe.json",
        "34_charge.dispute.closed__dj-stripe.json",
    )
    (dispute,) = rows["disputes"]["disputes"]
    assert dispute["status"] == "won"
    assert dispute["funds_withdrawn"] == 1000  # the withdrawal txn is in 31 and 32: once
    assert dispute["funds_reinstated"] == 1000
    assert dispute["dispute_fees"] == 0  # the fee came back with the reinstatement


def test_djstripe_partial_reinstatement_sample_with_float_amounts_is_refused(
    engine: sa.Engine,
) -> None:
    rows, counts = project_sample(engine, "33_charge.dispute.funds_reinstated__dj-stripe.json")
    assert counts["disputes"].refused == 2  # 900.0 and -1350.0
    assert counts["journal"].refused == 3  # and the net, 2250.0: the journal reads it too
    (dispute,) = rows["disputes"]["disputes"]
    assert (dispute["funds_withdrawn"], dispute["funds_reinstated"], dispute["dispute_fees"]) == (
        1000,
        0,
        1500,
    )


@pytest.mark.parametrize(
    ("sample", "status", "amount_paid"),
    [
        ("13_invoice.created__stripe-ruby-mock.json", "draft", 0),
        ("15_invoice.paid__stripe-ruby-mock.json", "paid", 2000),
        ("16_invoice.payment_failed__stripe-ruby-mock.json", "open", 0),
    ],
)
def test_invoice_samples(engine: sa.Engine, sample: str, status: str, amount_paid: int) -> None:
    rows, _ = project_sample(engine, sample)
    (invoice,) = rows["invoices"]["invoices"]
    assert (invoice["status"], invoice["amount_paid"], invoice["currency"]) == (
        status,
        amount_paid,
        "usd",
    )
    assert status in {row["status"] for row in rows["invoices"]["invoice_status_history"]}


def test_charge_refunded_and_balance_samples(engine: sa.Engine) -> None:
    rows, _ = project_sample(
        engine,
        "04_charge.refunded__stripe-ruby-mock.json",
        "12_balance.available__stripe-ruby-mock.json",
    )
    balances = {r["ledger_account"]: r["amount"] for r in rows["journal"]["balances"]}
    assert balances == {"revenue": -100, "refunds": 100}  # captured 100, refunded 100: net zero
    sample = json.loads(
        (STRIPE / "samples" / "12_balance.available__stripe-ruby-mock.json").read_text()
    )
    obj = sample["data"]["object"]
    expected = {(a["currency"], a["amount"]) for a in obj["available"]}
    assert {(r["currency"], r["available"]) for r in rows["journal"]["stripe_balances"]} == expected


# -- the worker ----------------------------------------------------------------------------


def _append(store: EventStore, payloads: list[dict[str, Any]]) -> None:
    store.append([Incoming(event_from_dict(p), "webhook", utc_now()) for p in payloads])


def _checkpoints(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(sa.select(registry.projection_state)).all()
    return {row.name: row.position for row in rows}


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(world=worlds(prefix="w"))
def test_worker_checkpoints_equal_head_and_rerunning_applies_nothing_twice(
    database_url: str, world: World
) -> None:
    engine = create_engine(database_url)
    migrate(engine)
    store = open_event_store(engine)
    half = len(world.events) // 2
    _append(store, world.events[:half])
    worker.run(store, until_idle_s=0, batch_events_max=3)
    assert _checkpoints(engine) == dict.fromkeys(registry.PROJECTIONS, store.head_position())
    _append(store, world.events)  # the first half again: duplicates, dropped by the store
    first = worker.run(store, until_idle_s=0, batch_events_max=7)
    assert first.events == len(world.events) - half
    assert _checkpoints(engine) == dict.fromkeys(registry.PROJECTIONS, store.head_position())
    live = dump(engine, 1)
    again = worker.run(store, until_idle_s=0)
    assert again.events == 0 and dump(engine, 1) == live
    # a second worker holding a stale checkpoint cannot apply a batch twice
    events = store.read(0, 10)
    journal = registry.PROJECTIONS["journal"]
    stale = worker.apply_batch(engine, journal, events, upcast_all(events), 1, 0)
    assert stale is None
    assert dump(engine, 1) == live
    # the live tables equal a straight fold of the same set of events
    fresh = next(GENERATIONS)
    project(engine, [stored(world.events)], fresh)
    assert dump(engine, fresh) == live
    # the stable views show the live generation
    with engine.connect() as connection:
        count = connection.execute(sa.text("SELECT COUNT(*) FROM proj_invoices")).scalar()
    assert count == len(world.expected.invoices)
    engine.dispose()


def test_project_command_until_idle(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = create_engine(database_url)
    migrate(engine)
    store = open_event_store(engine)
    _append(
        store,
        [
            _event(
                "evt_cli",
                "charge.succeeded",
                1,
                {
                    "id": "ch_cli",
                    "object": "charge",
                    "currency": "usd",
                    "status": "succeeded",
                    "amount_captured": 42,
                },
            )
        ],
    )
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    monkeypatch.setenv("LEDGER_LOG_FORMAT", "json")
    parser = argparse.ArgumentParser()
    project_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["project", "--until-idle", "0"])
    assert args.handler(args, Settings.from_env()) == 0
    assert _checkpoints(engine) == dict.fromkeys(registry.PROJECTIONS, store.head_position())
    with engine.connect() as connection:
        revenue = connection.execute(
            sa.text("SELECT amount FROM proj_balances WHERE ledger_account = 'revenue'")
        ).scalar()
    assert revenue == -42
    engine.dispose()
