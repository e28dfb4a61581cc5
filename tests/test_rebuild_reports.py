"""Rebuild, reports and verify, on SQLite and PostgreSQL, over a demo history."""

from __future__ import annotations

import dataclasses
import gc
import json
import threading
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from demo.history import generate
from ledger.database import WRITE, create_engine, migrate
from ledger.envelope import event_from_dict
from ledger.store import EventStore, Incoming, open_event_store, utc_now
from projections import (
    base,
    journal,
    rebuild,
    rebuild_leases,
    registry,
    state_cache,
    verify,
    worker,
)
from reports import render, views
from reports.money import format_amount
from reports.query import UnknownReport, run_report
from reports.read_side import prepare_read_side

REPORT_COLUMNS = {
    "projection_failures": ["projection", "position", "event_id", "error", "failed_at_ms"],
    "balances": [
        "account", "livemode", "currency", "captured", "refunded", "dispute_withdrawn",
        "dispute_reinstated", "dispute_fees", "fees", "payouts", "ledger_balance",
        "stripe_available", "stripe_pending", "drift",
    ],
    "invoices": [
        "invoice_id", "account", "livemode", "customer", "subscription", "status", "currency",
        "amount_due", "amount_paid", "amount_remaining", "attempt_count", "due_date",
        "finalized_at", "paid_at", "voided_at", "marked_uncollectible_at",
    ],
    "disputes": [
        "dispute_id", "account", "livemode", "charge", "payment_intent", "status", "reason",
        "currency", "amount", "funds_withdrawn", "funds_reinstated", "dispute_fees",
        "evidence_due_by", "created", "closed_at",
    ],
    "invoice_aging": ["account", "livemode", "currency", "bucket", "invoices", "amount_remaining"],
    "open_disputes": [
        "dispute_id", "account", "livemode", "charge", "status", "reason", "currency", "amount",
        "evidence_due_by", "hours_left",
    ],
    "daily_volume": ["account", "livemode", "currency", "day", "captured", "refunded"],
    "balance_itemized": [
        "account", "livemode", "currency", "balance_transaction_id", "created_utc",
        "available_on_utc", "gross", "fee", "net", "reporting_category", "source_id",
        "description", "automatic_payout_id", "status", "type", "exchange_rate",
    ],
    "balance_categories": [
        "account", "livemode", "currency", "reporting_category", "count", "gross", "fee", "net",
    ],
    "balance_summary": [
        "account", "livemode", "currency", "starting_balance", "activity_gross", "activity_fee",
        "activity_net", "payouts", "ending_balance",
    ],
    "opening_balances": ["account", "livemode", "currency", "as_of", "amount"],
    "payout_reconciliation": [
        "account", "livemode", "currency", "payout_id", "amount", "arrival_date", "status",
        "automatic", "bt_count", "bt_gross", "bt_fee", "bt_net", "reconciled",
    ],
    "journal": [
        "account", "livemode", "currency", "posted_at", "entry_id", "kind", "ledger_account",
        "amount", "balance_transaction_id", "source_id", "automatic_payout_id", "object_type",
        "object_id", "estimated",
    ],
    "trial_balance": [
        "account", "livemode", "currency", "ledger_account", "debits", "credits", "balance",
    ],
    "events": [
        "position", "event_id", "account", "livemode", "type", "created", "object_type",
        "object_id", "source",
    ],
    "invoice_history": ["invoice_id", "account", "livemode", "status", "reached_at"],
    "store_position": ["position", "event_id", "created", "received_at"],
    "projection_checkpoints": [
        "projection", "live_generation", "checkpoint", "lag_positions", "shards",
    ],
    "dead_letters": ["id", "topic", "partition", "offset", "error", "received_at"],
    "consumer_offsets": ["topic", "partition", "next_offset", "updated_at"],
}  # fmt: skip
HOOKS = (views.drop_views, views.create_views)


def _load(store: EventStore, deliveries: list[dict[str, Any]]) -> None:
    now = utc_now()
    for start in range(0, len(deliveries), 500):
        chunk = deliveries[start : start + 500]
        store.append([Incoming(event_from_dict(e), "import", now) for e in chunk])


@pytest.fixture
def store(database_url: str) -> EventStore:
    engine = create_engine(database_url)
    migrate(engine)
    prepare_read_side(engine)
    store = open_event_store(engine)
    _load(store, generate(seed=11, events=600).deliveries)
    worker.run(store, until_idle_s=0)
    return store


def _dumps(store: EventStore) -> dict[str, Any]:
    with store.engine.connect() as connection:
        out = {}
        for projection in registry.get():
            row = registry.state(connection, projection.name)
            out[projection.name] = projection.dump(connection, int(row.live_generation))
        return out


def test_report_views_have_their_documented_columns(store: EventStore) -> None:
    assert sorted(views.report_names()) == sorted(REPORT_COLUMNS)
    for name, columns in REPORT_COLUMNS.items():
        got, _rows = run_report(store.engine, name)
        assert got == columns, name


def test_balances_follow_the_journal_and_drift_is_measured_at_the_snapshot(
    store: EventStore,
) -> None:
    columns, rows = run_report(store.engine, "balances")
    assert rows, "the demo history moves money"
    sql = (
        "SELECT NULLIF(p.account_key, ''), p.livemode, p.currency, SUM(p.amount) "
        "FROM proj_journal_postings p JOIN proj_journal_entries e ON e.entry_id = p.entry_id "
        "AND e.account_key = p.account_key AND e.livemode = p.livemode "
        "WHERE p.ledger_account IN ('stripe_pending', 'stripe_available') {extra} "
        "GROUP BY p.account_key, p.livemode, p.currency"
    )
    with store.engine.connect() as connection:
        lifetime = {
            (r[0], bool(r[1]), r[2]): int(r[3])
            for r in connection.exec_driver_sql(sql.format(extra=""))
        }
        snapshots = {
            (r[0] or None, bool(r[1]), r[2]): int(r[3])
            for r in connection.exec_driver_sql(
                "SELECT account_key, livemode, currency, as_of FROM proj_stripe_balances"
            )
        }
        moves = connection.exec_driver_sql(
            "SELECT NULLIF(p.account_key, ''), p.livemode, p.currency, e.posted_at, p.amount "
            "FROM proj_journal_postings p JOIN proj_journal_entries e ON e.entry_id = p.entry_id "
            "AND e.account_key = p.account_key AND e.livemode = p.livemode "
            "WHERE p.ledger_account IN ('stripe_pending', 'stripe_available')"
        ).all()
    for row in rows:
        r = dict(zip(columns, row, strict=True))
        for column in REPORT_COLUMNS["balances"][3:11]:
            assert isinstance(r[column], int), (column, r[column])
        for column in ("dispute_withdrawn", "dispute_fees", "fees", "payouts"):
            assert r[column] >= 0, column
        key = (r["account"], bool(r["livemode"]), r["currency"])
        assert r["ledger_balance"] == lifetime.get(key, 0)
        if r["stripe_available"] is None:
            assert r["drift"] is None
        else:
            as_of = snapshots[key]
            at_snapshot = sum(
                m[4] for m in moves if (m[0], bool(m[1]), m[2]) == key and (m[3] or 0) <= as_of
            )
            assert r["drift"] == r["stripe_available"] + r["stripe_pending"] - at_snapshot
    currencies = {row[2] for row in rows}
    assert {"usd", "jpy"} <= currencies


def test_report_rows_come_in_one_order_whatever_the_plan(store: EventStore) -> None:
    """Rows equal in a report's leading keys (daily_volume's days of one currency) come back
    ordered by the columns that follow, not in the order a hash aggregate left them: CI saw
    the same rows in another order after a rebuild."""
    rebuild.rebuild(store, hooks=HOOKS)
    engine = store.engine
    if engine.dialect.name == "postgresql":  # a plan that groups by hashing, as CI's did
        engine = sa.create_engine(engine.url, connect_args={"options": "-c enable_sort=off"})
    columns, rows = run_report(engine, "daily_volume")
    at = {name: columns.index(name) for name in ("account", "livemode", "currency", "day")}
    keys = [
        (row[at["livemode"]], row[at["account"]] or "", row[at["currency"]], row[at["day"]])
        for row in rows
    ]
    assert len(keys) > 10 and keys == sorted(keys), keys[:20]
    for name in REPORT_COLUMNS:  # any report, whatever the plan: the same rows, same order
        assert run_report(engine, name) == run_report(store.engine, name), name
    if engine is not store.engine:
        engine.dispose()


def test_report_filters_and_formats(store: EventStore) -> None:
    columns, rows = run_report(store.engine, "invoices", livemode=False)
    assert rows and all(not row[2] for row in rows)
    _, connect_rows = run_report(store.engine, "balances", account="platform")
    assert connect_rows and all(row[0] is None for row in connect_rows)
    parsed = json.loads(render.render(columns, rows, "json"))
    assert parsed[0].keys() == set(columns)
    paid = [item for item in parsed if item["status"] == "paid"]
    assert paid and isinstance(paid[0]["amount_paid"], int)
    assert paid[0]["paid_at"].endswith("Z") and "T" in paid[0]["paid_at"]
    csv_text = render.render(columns, rows, "csv")
    assert csv_text.splitlines()[0] == ",".join(columns)
    assert len(csv_text.splitlines()) == len(rows) + 1
    table = render.render(*run_report(store.engine, "balances"), "table")
    assert " JPY" in table and " USD" in table and "platform" in table
    with pytest.raises(UnknownReport, match="available: .*balances"):
        run_report(store.engine, "nope")


def test_money_is_formatted_by_the_currency_exponent() -> None:
    assert format_amount(123456, "usd") == "1,234.56 USD"
    assert format_amount(-5, "eur") == "-0.05 EUR"
    assert format_amount(3000, "jpy") == "3,000 JPY"
    assert format_amount(5120, "kwd") == "5.120 KWD"
    with pytest.raises(AssertionError):
        format_amount(1.5, "usd")  # type: ignore[arg-type]


def test_rebuilt_rows_equal_the_incrementally_built_rows(store: EventStore) -> None:
    before = _dumps(store)
    reports_before = {name: run_report(store.engine, name) for name in REPORT_COLUMNS}
    results = rebuild.rebuild(store, hooks=HOOKS)
    assert [r.new_generation for r in results] == [2, 2, 2]
    assert _dumps(store) == before
    for name in ("balances", "invoices", "disputes", "daily_volume"):
        assert run_report(store.engine, name) == reports_before[name]
    with store.engine.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
    assert "invoices_g2" in tables and "invoices_g1" not in tables


@pytest.mark.parametrize(("batch_events", "states_cached"), [(20, 3), (1, 1), (7, 50)])
def test_a_rebuild_whose_state_cache_forgets_gives_the_same_rows(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, batch_events: int, states_cached: int
) -> None:
    """Many batches and a small cache: states are folded from the cache, forgotten, and read
    back from the new generation, while the batch before is still being written (its states
    held in the cache whatever its bound); the rows are those of the incremental fold."""
    monkeypatch.setattr(rebuild, "REBUILD_BATCH_EVENTS_MAX", batch_events)
    monkeypatch.setattr(rebuild, "REBUILD_STATES_CACHED_MAX", states_cached)
    before = _dumps(store)
    results = rebuild.rebuild(store, hooks=HOOKS)
    assert [r.new_generation for r in results] == [2, 2, 2]
    assert _dumps(store) == before


def test_a_rebuild_reads_back_only_the_states_its_cache_forgot(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new generation starts empty: an object the cache never saw is not in its table, so
    the rebuild reads back only objects it wrote and then forgot (fails when, once the cache
    has forgotten one object, every object it lacks is read)."""
    monkeypatch.setattr(rebuild, "REBUILD_BATCH_EVENTS_MAX", 20)
    monkeypatch.setattr(rebuild, "REBUILD_STATES_CACHED_MAX", 5)
    held: set[Any] = set()
    read: list[Any] = []
    hold, load_states = state_cache.StateCache.hold, base.load_states

    def spy_hold(cache: state_cache.StateCache, states: dict[Any, Any]) -> None:
        held.update(states)  # every state a batch writes is held first
        hold(cache, states)

    def spy_load(connection: sa.Connection, table: sa.Table, keys: Any) -> Any:
        read.extend(keys)
        return load_states(connection, table, keys)

    monkeypatch.setattr(state_cache.StateCache, "hold", spy_hold)
    monkeypatch.setattr(base, "load_states", spy_load)
    before = _dumps(store)
    rebuild.rebuild(store, hooks=HOOKS)
    assert _dumps(store) == before
    assert read, "a cache of 5 states forgets some of this history's objects"
    assert set(read) <= held
    assert len(read) < len(held)  # the new objects of each batch were not read


def test_a_rebuild_whose_lease_is_taken_over_stops_and_leaves_the_live_rows(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch renews the leases of every projection it folds, in one statement; one lease
    taken over (it expired, another rebuild took it) stops the rebuild with RebuildBusy, its
    batch not replayed, the live generations untouched."""
    monkeypatch.setattr(rebuild, "REBUILD_BATCH_EVENTS_MAX", 20)
    replayed = _spy_on_the_event_by_event_way(monkeypatch)
    before = _dumps(store)

    def take_over(done: int, total: int) -> None:
        with store.engine.begin() as connection:
            connection.execute(
                sa.update(rebuild_leases.leases)
                .where(rebuild_leases.leases.c.name == "invoices")
                .values(holder="another-rebuild")
            )

    with pytest.raises(rebuild_leases.RebuildBusy, match="'invoices'.* was lost"):
        rebuild.rebuild(store, hooks=HOOKS, on_progress=take_over)
    assert replayed == []
    assert _dumps(store) == before
    with store.engine.connect() as connection:
        live = {int(registry.state(connection, p.name).live_generation) for p in registry.get()}
    assert live == {1}


def test_a_rebuild_pass_collects_every_so_many_batches_and_restores_the_collector(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """During a pass the collector's automatic passes are off (payload trees have no cycles
    to find) and a full collection runs every COLLECT_EVERY_BATCHES batches; after it the
    collector is as it was, on or off."""
    monkeypatch.setattr(rebuild, "REBUILD_BATCH_EVENTS_MAX", 20)
    monkeypatch.setattr(rebuild, "COLLECT_EVERY_BATCHES", 3)
    enabled_during: list[bool] = []
    full_collections: list[int] = []

    def on_collect(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2 and not gc.isenabled():
            full_collections.append(1)  # not an automatic one: those are off

    gc.callbacks.append(on_collect)
    try:
        rebuild.rebuild(
            store, hooks=HOOKS, on_progress=lambda *_: enabled_during.append(gc.isenabled())
        )
        batches = len(enabled_during)
        assert batches >= 6 and not any(enabled_during)
        assert len(full_collections) >= batches // 3
        assert gc.isenabled()
        gc.disable()
        rebuild.rebuild(store, hooks=HOOKS)
        assert not gc.isenabled()  # off stays off
    finally:
        gc.enable()
        gc.callbacks.remove(on_collect)


def test_a_rebuild_derives_the_journal_entries_it_wrote_and_the_worker_reads_them(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new generation holds only what this rebuild's rules wrote: an object's stored entries
    are what its stored state implies, so the rebuild derives them rather than reading them
    back; the live worker, over rows older rules may have written, reads them. Same rows."""
    monkeypatch.setattr(rebuild, "REBUILD_BATCH_EVENTS_MAX", 20)
    reads: list[int] = []
    stored_entries = journal._stored_entries  # noqa: SLF001 - spied on

    def spy(connection: sa.Connection, tables: Any, keys: Any) -> Any:
        reads.append(len(keys))
        return stored_entries(connection, tables, keys)

    monkeypatch.setattr(journal, "_stored_entries", spy)
    before = _dumps(store)
    rebuild.rebuild(store, hooks=HOOKS)
    assert _dumps(store) == before
    assert reads == []
    _load(store, generate(seed=21, events=200).deliveries)
    worker.run(store, until_idle_s=0)
    assert reads, "the live worker reads the stored entries of the objects it changes"


def _failures(store: EventStore) -> set[tuple[str, str]]:
    """(projection, event id) of the live generations' failures."""
    with store.engine.connect() as connection:
        live = {
            p.name: int(registry.state(connection, p.name).live_generation) for p in registry.get()
        }
        rows = connection.execute(sa.select(registry.projection_failures)).all()
    return {(row.name, row.event_id) for row in rows if live[row.name] == row.generation}


def _spy_on_the_event_by_event_way(monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """The events of each batch the rebuild sends through ``_apply_chunk`` (event by event)."""
    replayed: list[list[Any]] = []
    apply_chunk = rebuild._apply_chunk  # noqa: SLF001 - spied on

    def spy(engine: sa.Engine, projections: Any, batch: Any, *args: Any) -> Any:
        replayed.append(list(batch[0]))
        return apply_chunk(engine, projections, batch, *args)

    monkeypatch.setattr(rebuild, "_apply_chunk", spy)
    return replayed


def test_a_batch_whose_write_fails_is_folded_again_event_by_event(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild writes batch N on a second thread while it plans N+1. An amount past int64
    (stored before the decoder was total: tests/test_poison_numbers.py) plans fine and fails
    in the database's write: that batch, and the one planned on its states, are folded again
    event by event; the rows and the recorded failure are those of the incremental fold."""
    monkeypatch.setattr(rebuild, "REBUILD_BATCH_EVENTS_MAX", 20)  # many batches in flight
    charge = next(
        d for d in generate(seed=5, events=200).deliveries if d["type"] == "charge.succeeded"
    )
    poison = json.loads(json.dumps(charge))
    poison["id"] = "evt_poison_amount"
    poison["data"]["object"].update(id="ch_poison_amount", amount=2**64, amount_captured=2**64)
    event = dataclasses.replace(
        event_from_dict(charge), event_id=poison["id"], object_id="ch_poison_amount",
        payload=poison,
    )  # fmt: skip
    store.append([Incoming(event, "import", utc_now())])
    poison_position = store.head_position()
    _load(store, generate(seed=14, events=100).deliveries)  # batches after it
    worker.run(store, until_idle_s=0)
    before, failed_before = _dumps(store), _failures(store)
    assert ("journal", "evt_poison_amount") in failed_before
    replayed = _spy_on_the_event_by_event_way(monkeypatch)
    results = rebuild.rebuild(store, hooks=HOOKS)
    assert [r.new_generation for r in results] == [2, 2, 2]
    assert _dumps(store) == before
    assert _failures(store) == failed_before
    # the failed batch, then the one planned on its states meanwhile: no other
    first, second = ([event.position for event in batch] for batch in replayed)
    assert len(replayed) == 2 and poison_position in first, replayed
    assert second[0] == store.read(first[-1], 1)[0].position, replayed
    journal = next(r for r in results if r.name == "journal")
    assert journal.counts.failed == 1


def test_a_batch_whose_plan_raises_is_folded_event_by_event_and_the_rest_stay_pipelined(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fold that raises on one event while planning (a shape it does not expect: injected
    here, real snapshots refuse and count instead) sends only that batch the event-by-event
    way; the rows and the recorded failure are those of the incremental fold."""
    invoices = registry.PROJECTIONS["invoices"]
    snapshot = invoices.snapshot
    deliveries = generate(seed=11, events=600).deliveries
    bad = [d["id"] for d in deliveries if d["type"].startswith("invoice.")][7]

    def raising(event: Any, payload: Any, counts: Any) -> Any:
        if event.event_id == bad:
            raise ValueError("a shape this fold does not expect")
        return snapshot(event, payload, counts)

    monkeypatch.setattr(invoices, "snapshot", raising)
    monkeypatch.setattr(rebuild, "REBUILD_BATCH_EVENTS_MAX", 20)
    engine = create_engine(database_url)
    migrate(engine)
    prepare_read_side(engine)
    store = open_event_store(engine)
    _load(store, deliveries)
    worker.run(store, until_idle_s=0)
    before, failed_before = _dumps(store), _failures(store)
    assert failed_before == {("invoices", bad)}
    replayed = _spy_on_the_event_by_event_way(monkeypatch)
    rebuild.rebuild(store, hooks=HOOKS)
    assert _dumps(store) == before and _failures(store) == failed_before
    assert len(replayed) == 1 and bad in [event.event_id for event in replayed[0]], replayed


def test_a_reader_during_a_rebuild_sees_the_whole_state_never_half(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rebuild, "REBUILD_BATCH_EVENTS_MAX", 40)  # many batches: many chances
    full = run_report(store.engine, "balances")
    invoices = len(run_report(store.engine, "invoices")[1])
    seen: list[bool] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.append(run_report(store.engine, "balances") == full)
            seen.append(len(run_report(store.engine, "invoices")[1]) == invoices)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        rebuild.rebuild(store, hooks=HOOKS)
    finally:
        done.set()
        reader.join(timeout=60)
    assert len(seen) > 2 and all(seen)


def test_an_interrupted_rebuild_leaves_the_live_projection_and_can_run_again(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rebuild, "REBUILD_BATCH_EVENTS_MAX", 50)
    before = _dumps(store)
    stop = threading.Event()
    calls = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        stop.set()  # interrupt after the first batch

    assert rebuild.rebuild_one(store, registry.PROJECTIONS["invoices"], hooks=HOOKS,
                               on_progress=progress, stop=stop) is None  # fmt: skip
    assert calls and _dumps(store) == before
    with store.engine.connect() as connection:
        assert registry.state(connection, "invoices").live_generation == 1
    result = rebuild.rebuild_one(store, registry.PROJECTIONS["invoices"], hooks=HOOKS)
    assert result is not None and result.new_generation == 2
    assert _dumps(store) == before


def test_two_rebuilds_of_one_projection_are_excluded(store: EventStore) -> None:
    rebuild_leases.acquire_lease(store.engine, "journal", "someone-else:1:1")
    with pytest.raises(rebuild_leases.RebuildBusy, match="already running"):
        rebuild.rebuild_one(store, registry.PROJECTIONS["journal"], hooks=HOOKS)
    rebuild_leases.release_lease(store.engine, "journal", "someone-else:1:1")
    assert rebuild.rebuild_one(store, registry.PROJECTIONS["journal"], hooks=HOOKS) is not None


def test_a_worker_running_during_a_rebuild_corrupts_nothing(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rebuild, "REBUILD_BATCH_EVENTS_MAX", 50)
    stop = threading.Event()
    background = threading.Thread(
        target=worker.run, kwargs={"store": store, "stop": stop, "poll_interval_s": 0.01}
    )
    background.start()
    try:
        # More events arrive while both run.
        _load(store, generate(seed=12, events=300).deliveries)
        rebuild.rebuild(store, hooks=HOOKS)
        _load(store, generate(seed=13, events=200).deliveries)
        head = store.head_position()
        deadline = threading.Event()
        for _ in range(600):
            with store.engine.connect() as connection:
                positions = [registry.state(connection, p.name).position for p in registry.get()]
            if min(positions) >= head:
                break
            deadline.wait(0.1)
    finally:
        stop.set()
        background.join(timeout=60)
    checks, _drift = verify.verify(store)
    assert all(check.ok for check in checks), [c for c in checks if not c.ok]


def test_verify_passes_then_catches_a_tampered_posting(store: EventStore) -> None:
    checks, drift = verify.verify(store)
    assert [c.ok for c in checks] == [True] * 9, checks  # incl. every stored event projected
    assert drift and any("drift" in line for line in drift)
    with store.engine.connect().execution_options(**WRITE) as connection, connection.begin():
        connection.exec_driver_sql(
            "UPDATE journal_postings_g1 SET amount = amount + 1 "
            "WHERE entry_id = (SELECT MIN(entry_id) FROM journal_postings_g1)"
        )
    checks, _ = verify.verify(store)
    failed = {c.name for c in checks if not c.ok}
    assert "journal entries balance" in failed
    assert "balances = sum of postings" in failed
    assert "journal = fresh fold of the store" in failed


def test_the_reporting_role_reads_reports_and_nothing_else(postgres_url: str) -> None:
    """A person's login in the ledger_reporting role, as docs/REPORTS.md tells how to make."""
    engine = create_engine(postgres_url)
    migrate(engine)
    prepare_read_side(engine)
    analyst = f"analyst_{uuid.uuid4().hex[:8]}"
    with engine.connect() as connection, connection.begin():
        connection.exec_driver_sql(
            f"CREATE ROLE {analyst} LOGIN PASSWORD 'pw' IN ROLE ledger_reporting"
        )
    url = sa.make_url(postgres_url).set(username=analyst, password="pw")
    reader = sa.create_engine(url)
    try:
        with reader.connect() as connection:
            for name in REPORT_COLUMNS:
                connection.exec_driver_sql(f"SELECT * FROM report_{name}").all()
        for statement in (
            "SELECT * FROM events",
            "SELECT * FROM proj_invoices",
            "SELECT * FROM invoices_g1",
            "INSERT INTO dead_letters (raw, error, received_at) VALUES ('x', 'x', now())",
            "DELETE FROM report_invoices",
        ):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                with reader.connect() as connection, connection.begin():
                    connection.exec_driver_sql(statement)
    finally:
        reader.dispose()
        with engine.connect() as connection, connection.begin():
            connection.exec_driver_sql(f"DROP ROLE {analyst}")
        engine.dispose()


def test_the_rebuild_and_verify_commands(store: EventStore) -> None:
    from tests.support.kafka_util import cli_env, run_cli

    env = cli_env(store.engine.url.render_as_string(hide_password=False))
    done = run_cli(["rebuild"], env, timeout_s=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out = done.stdout.decode()
    for name in ("journal", "invoices", "disputes"):
        assert f"{name}: rebuilt {store.count()} events into generation 2 (was 1)" in out, out
    progress = [line for line in done.stderr.splitlines() if b'"event": "progress"' in line]
    assert progress and b'"task": "rebuild journal, invoices, disputes"' in progress[-1]
    assert run_cli(["rebuild", "nope"], env).returncode == 2
    assert run_cli(["verify"], env).returncode == 0
    with store.engine.connect().execution_options(**WRITE) as connection, connection.begin():
        connection.exec_driver_sql("DELETE FROM invoice_status_history_g2")
    failed = run_cli(["verify"], env)
    assert failed.returncode == 1
    assert b"[FAIL] invoices = fresh fold of the store" in failed.stdout
