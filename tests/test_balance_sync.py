"""balance-sync: against the stand-in Stripe API (demo/standin.py, real HTTP on loopback) for
stories with chosen amounts, and against stripe-mock for the request shapes Stripe accepts.

The stand-in's data are written here as Stripe documents them: a BalanceTransaction's ``net`` is
``amount - fee`` (https://docs.stripe.com/api/balance_transactions/object), a payout's balance
transaction has ``type: payout`` and a negative amount, and ``GET /v1/balance_transactions
?payout=po_...`` lists the transactions an automatic payout paid out, its own included
(https://docs.stripe.com/api/balance_transactions/list#balance_transaction_list-payout).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.standin import Standin, StandinData
from ledger.balance_facts import (
    BALANCE_FACT,
    BALANCE_TRANSACTION_FACT,
    OPENING_BALANCE_FACT,
    bt_fact_id,
    opening_fact_id,
)
from ledger.balance_sync import Cursor, balance_sync, load_cursor
from ledger.database import create_engine, migrate
from ledger.store import EventStore, StoredEvent, open_event_store
from ledger.stripe_api import StripeApi
from tests.support.kafka_util import cli_env
from tests.test_backfill import Waits

CLI = [sys.executable, "-m", "cli.balance_sync_cmd", "balance-sync"]
TEST_KEY = f"sk_test_{uuid.uuid4().hex}"
LIVE_KEY = f"sk_live_{uuid.uuid4().hex}"
NOW_S = int(time.time())  # the CLI windows on the real clock
DAY_S = 86_400
ACCOUNT = "acct_1Standin0000001"


def charge_bt(n: int, created: int, *, amount: int = 1000, tag: str = "") -> Any:
    fee = 59  # 2.9% + 30 of 10.00 USD
    return {
        "id": f"txn_{tag}{n:06d}",
        "object": "balance_transaction",
        "amount": amount,
        "available_on": created + 2 * DAY_S,
        "created": created,
        "currency": "usd",
        "description": f"charge {n}",
        "exchange_rate": None,
        "fee": fee,
        "fee_details": [
            {
                "amount": fee,
                "application": None,
                "currency": "usd",
                "description": "Stripe processing fees",
                "type": "stripe_fee",
            }
        ],
        "net": amount - fee,
        "reporting_category": "charge",
        "source": f"ch_{tag}{n:06d}",
        "status": "available",
        "type": "charge",
    }


def payout_bt(payout_id: str, amount: int, created: int) -> Any:
    return {
        "id": f"txn_{payout_id}",
        "object": "balance_transaction",
        "amount": -amount,
        "available_on": created,
        "created": created,
        "currency": "usd",
        "description": "STRIPE PAYOUT",
        "exchange_rate": None,
        "fee": 0,
        "fee_details": [],
        "net": -amount,
        "reporting_category": "payout",
        "source": payout_id,
        "status": "available",
        "type": "payout",
    }


def story(
    count: int = 250, *, account: str | None = None, livemode: bool = False, start_balance: int = 0
) -> StandinData:
    """``count`` charges a minute apart starting 2 days ago, an automatic payout of the first
    ten, and the Balance those imply on top of ``start_balance`` (held before the range).
    Ids are unique per scope, as Stripe's are across accounts and modes."""
    tag = ("l" if livemode else "") + (account[-1] if account else "")
    data = StandinData()
    scope = data.scope(account, livemode)
    first = NOW_S - 2 * DAY_S
    for n in range(count):
        bt = charge_bt(n, first + 60 * n, tag=tag)
        scope.balance_transactions.append(bt)
        data.objects[bt["source"]] = {"id": bt["source"], "object": "charge", "amount": 1000}
    members = scope.balance_transactions[:10]
    paid = sum(bt["net"] for bt in members)
    payout_id = f"po_auto1{tag}"
    payout = payout_bt(payout_id, paid, first + 60 * count)
    scope.balance_transactions.append(payout)
    scope.payouts[payout_id] = [payout["id"], *(bt["id"] for bt in members)]
    data.objects[payout_id] = {
        "id": payout_id,
        "object": "payout",
        "amount": paid,
        "automatic": True,
        "currency": "usd",
        "status": "paid",
    }
    total = start_balance + sum(bt["net"] for bt in scope.balance_transactions)
    scope.balance = {
        "object": "balance",
        "available": [{"amount": total, "currency": "usd", "source_types": {"card": total}}],
        "pending": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
    }
    return data


@pytest.fixture
def standin() -> Iterator[Standin]:
    server = Standin(StandinData())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def migrated(url: str) -> EventStore:
    engine = create_engine(url)
    migrate(engine)
    return open_event_store(engine)


def facts(store: EventStore, fact_type: str) -> list[StoredEvent]:
    return [event for event in store.read(0, 10_000) if event.type == fact_type]


def sync(store: EventStore, base: str, key: str = TEST_KEY, **kwargs: Any) -> Any:
    api = StripeApi(key, base=base, wait=kwargs.pop("wait", Waits()))
    accounts = kwargs.pop("accounts", [None])
    now_s = int(time.time())
    clock = kwargs.pop("clock", lambda: now_s)  # one second per pass: no tail page to read
    return balance_sync(
        api, store, accounts=accounts, since_s=NOW_S - 3 * DAY_S, clock=clock, **kwargs
    )


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert TEST_KEY not in result.stdout + result.stderr  # never print or log the key
    return result


def signal_when(
    command: list[str], env: dict[str, str], cwd: Path, ready: Callable[[], bool], signum: int
) -> tuple[int, str, str]:
    """Start ``command``, send ``signum`` once ``ready()`` (polled, bounded), wait for it."""
    proc = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        for _ in range(600):  # a bounded wait for the condition, not for a time
            if ready():
                break
            time.sleep(0.05)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert TEST_KEY not in out + err
    return proc.returncode, out, err


# -- the stand-in: stories with chosen amounts ------------------------------------------------


def test_a_pass_stores_each_transaction_its_payout_members_the_balance_and_the_opening(
    standin: Standin, database_url: str
) -> None:
    standin.data = story(start_balance=5_000)
    store = migrated(database_url)
    totals = sync(store, standin.base)
    assert (totals.listed, totals.pages, totals.payouts, totals.payout_listed) == (251, 3, 1, 11)
    assert totals.complete_scopes == 1 and not totals.interrupted
    listed = facts(store, BALANCE_TRANSACTION_FACT)
    assert len(listed) == 251 + 11
    by_payout = [f for f in listed if f.payload["ledger"]["automatic_payout_id"] == "po_auto1"]
    assert sorted(f.object_id for f in by_payout) == sorted(
        standin.data.scope().payouts["po_auto1"]
    )
    # The contract with the journal: the BT exactly as served, source expanded.
    one = next(f for f in listed if f.object_id == "txn_000003" and f not in by_payout)
    served = standin.data.scope().balance_transactions[3]
    assert one.payload["data"]["object"] == {**served, "source": standin.data.objects["ch_000003"]}
    assert one.event_id == bt_fact_id(one.payload["data"]["object"], None)
    assert (one.source, one.livemode, one.account, one.api_version) == (
        "backfill",
        False,
        None,
        "2026-07-29.dahlia",
    )
    # Per Stripe's list reference: created ranges, source expanded, pages of 100.
    first = standin.requests[0]["query"]
    assert first["expand[0]"] == ["data.source"] and first["limit"] == ["100"]
    assert {"created[gte]", "created[lte]"} <= set(first)
    [balance] = facts(store, BALANCE_FACT)
    assert balance.payload["data"]["object"]["object"] == "balance"
    [opening] = facts(store, OPENING_BALANCE_FACT)
    assert opening.event_id == opening_fact_id(None, False) == "opening_platform_test"
    assert opening.payload["data"]["object"] == {
        "object": "opening_balance",
        "id": "opening",
        "as_of": NOW_S - 3 * DAY_S,
        "balances": [{"currency": "usd", "amount": 5_000}],  # what was held before the range
    }


def test_a_rerun_stores_no_new_transaction(standin: Standin, database_url: str) -> None:
    standin.data = story()
    store = migrated(database_url)
    sync(store, standin.base)
    before = set(store.event_ids())
    standin.requests.clear()
    again = sync(store, standin.base)
    added = set(store.event_ids()) - before
    # Only the new Balance of the pass (its id carries its fetch time); no transaction again.
    assert [e.type for e in store.read(0, 10_000) if e.event_id in added] in ([BALANCE_FACT], [])
    assert again.openings == 0 and again.payouts == 0
    # Settled ranges are not read again: only the last minute (Stripe may list late).
    windows = [r for r in standin.requests if r["path"] == "/v1/balance_transactions"]
    assert all(int(r["query"]["created[gte]"][0]) > NOW_S - 120 for r in windows)


def test_429_is_retried_after_what_retry_after_asks(standin: Standin, sqlite_url: str) -> None:
    standin.data = story(30)
    standin.rate_limit(2, retry_after_s=3)
    store = migrated(sqlite_url)
    waits = Waits()
    totals = sync(store, standin.base, wait=waits)
    assert waits.asked == [3.0, 3.0]
    assert totals.listed == 31 and [r["status"] for r in standin.requests[:3]] == [429, 429, 200]


def test_pending_then_available_is_a_new_fact_beside_the_old(
    standin: Standin, database_url: str
) -> None:
    standin.data = story(5)
    scope = standin.data.scope()
    scope.balance_transactions[4]["status"] = "pending"
    store = migrated(database_url)
    sync(store, standin.base)
    created = scope.balance_transactions[4]["created"]
    assert load_cursor(store.engine, None, False).unsettled_from == created
    scope.balance_transactions[4] = {**scope.balance_transactions[4], "status": "available"}
    sync(store, standin.base)
    versions = [
        f.payload["data"]["object"]["status"]
        for f in facts(store, BALANCE_TRANSACTION_FACT)
        if f.object_id == "txn_000004" and f.payload["ledger"]["automatic_payout_id"] is None
    ]
    assert sorted(versions) == ["available", "pending"]  # a new fact; the old one stays
    assert load_cursor(store.engine, None, False).unsettled_from is None
    assert len(facts(store, OPENING_BALANCE_FACT)) == 1  # the first one wins


def test_all_accounts_walks_the_platform_and_each_connected_account(
    standin: Standin, database_url: str, tmp_path: Path
) -> None:
    data = story(3)
    connected = story(4, account=ACCOUNT)
    data.scopes.update(connected.scopes)
    data.objects.update(connected.objects)
    data.accounts = [{"id": ACCOUNT, "object": "account"}]
    standin.data = data
    store = migrated(database_url)
    result = run_cli(
        ["--all-accounts", "--since", "3d"],
        cli_env(database_url, STRIPE_API_KEY=TEST_KEY, STRIPE_API_BASE=standin.base),
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "over 2 scope(s) (2 complete)" in result.stdout
    listed = facts(store, BALANCE_TRANSACTION_FACT)
    assert {(f.account, f.payload["account"]) for f in listed} == {(None, None), (ACCOUNT, ACCOUNT)}
    assert len([f for f in listed if f.account == ACCOUNT]) == 5 + 5  # 4 + payout, 4 + payout
    assert {r["account"] for r in standin.requests} == {None, ACCOUNT}
    assert sorted(f.event_id for f in facts(store, OPENING_BALANCE_FACT)) == [
        f"opening_{ACCOUNT}_test",
        "opening_platform_test",
    ]


def test_a_range_ending_before_now_stores_no_balance_and_no_opening(
    standin: Standin, sqlite_url: str
) -> None:
    standin.data = story(30)  # 2 days ago .. 2 days ago + 31 minutes
    store = migrated(sqlite_url)
    totals = sync(store, standin.base, clock=lambda: NOW_S - DAY_S)
    assert totals.complete_scopes == 1 and totals.listed == 31
    assert not facts(store, BALANCE_FACT) and not facts(store, OPENING_BALANCE_FACT)
    assert "no balance or opening balance stored" in totals.warnings[0]
    assert not load_cursor(store.engine, None, False).opening_stored
    later = sync(store, standin.base)  # reaching now: the opening is recorded then
    assert later.openings == 1 and later.listed == 0


def test_test_and_live_keys_never_mix(standin: Standin, database_url: str) -> None:
    data = story(3)
    live = story(6, livemode=True, start_balance=700)
    data.scopes.update(live.scopes)
    standin.data = data
    store = migrated(database_url)
    sync(store, standin.base, key=TEST_KEY)
    sync(store, standin.base, key=LIVE_KEY)
    listed = facts(store, BALANCE_TRANSACTION_FACT)
    test_ids = {f.object_id for f in listed if not f.livemode}
    live_ids = {f.object_id for f in listed if f.livemode}
    assert len(test_ids) == 4 and len(live_ids) == 7
    assert all(f.payload["livemode"] is f.livemode for f in store.read(0, 10_000))
    openings = {
        f.event_id: f.payload["data"]["object"]["balances"]
        for f in facts(store, OPENING_BALANCE_FACT)
    }
    assert openings == {
        "opening_platform_test": [{"currency": "usd", "amount": 0}],
        "opening_platform_live": [{"currency": "usd", "amount": 700}],
    }
    assert load_cursor(store.engine, None, True).intervals != ()
    assert load_cursor(store.engine, None, False).complete_passes == 1


def test_resume_after_sigkill_stores_the_same_facts_none_twice(
    standin: Standin, postgres_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    standin.data = story(1_500)  # 16 pages
    standin.delay_ms = 100
    store = migrated(postgres_url)
    env = cli_env(postgres_url, STRIPE_API_KEY=TEST_KEY, STRIPE_API_BASE=standin.base)
    signal_when(
        [*CLI, "--since", "3d"],
        env,
        tmp_path,
        lambda: len(facts(store, BALANCE_TRANSACTION_FACT)) >= 300,  # some pages stored
        signal.SIGKILL,
    )
    half = len(facts(store, BALANCE_TRANSACTION_FACT))
    assert 300 <= half < 1_512, "killed mid-run"
    assert not facts(store, BALANCE_FACT)
    stored_before = len(standin.requests)
    standin.delay_ms = 0
    resumed = run_cli(["--since", "3d"], env, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    # Resumed at the last stored page: only the pages not stored (16 in all; the first one
    # brought the payout's 11 members), the newest minute again, the tail and the balance.
    pages_stored = (half - 11) // 100
    assert len(standin.requests) - stored_before <= (16 - pages_stored) + 3
    # The same facts as an uninterrupted pass into another database, none twice.
    clean = migrated(sqlite_url)
    sync(clean, standin.base)

    def bt_ids(s: EventStore) -> list[str]:
        return sorted(f.event_id for f in facts(s, BALANCE_TRANSACTION_FACT))

    assert bt_ids(store) == bt_ids(clean)
    assert len(bt_ids(store)) == 1_501 + 11
    opening = facts(store, OPENING_BALANCE_FACT)[0].payload["data"]["object"]["balances"]
    assert opening == [{"currency": "usd", "amount": 0}]


def test_restart_reads_the_whole_range_again_and_stores_nothing_twice(
    standin: Standin, sqlite_url: str, tmp_path: Path
) -> None:
    standin.data = story(120)
    store = migrated(sqlite_url)
    env = cli_env(sqlite_url, STRIPE_API_KEY=TEST_KEY, STRIPE_API_BASE=standin.base)
    assert run_cli(["--since", "3d"], env, tmp_path).returncode == 0
    stored = len(facts(store, BALANCE_TRANSACTION_FACT))
    standin.requests.clear()
    again = run_cli(["--since", "3d", "--restart"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    # 121 in 2 pages of 100; a pass that crosses a second boundary (a loaded machine) reads one
    # more, empty, page up to the second the balance is fetched in (balance_sync.sync_scope).
    assert re.search(r"\b121 balance transactions listed in [23] pages", again.stdout), again.stdout
    assert "0 opening balance(s) recorded" in again.stdout  # the first opening stays
    assert len(facts(store, BALANCE_TRANSACTION_FACT)) == stored
    assert len(facts(store, OPENING_BALANCE_FACT)) == 1


def test_bad_input_is_one_clear_line(standin: Standin, sqlite_url: str, tmp_path: Path) -> None:
    migrated(sqlite_url)
    env = cli_env(sqlite_url, STRIPE_API_KEY=TEST_KEY, STRIPE_API_BASE=standin.base)
    bad = run_cli(["--since", "last tuesday"], env, tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "--since: not a date" in bad.stderr
    nokey = run_cli([], cli_env(sqlite_url, STRIPE_API_BASE=standin.base), tmp_path)
    assert nokey.returncode == 2 and "STRIPE_API_KEY" in nokey.stderr
    standin.data = StandinData()
    standin.rate_limit(0)
    denied = run_cli(
        [], cli_env(sqlite_url, STRIPE_API_KEY="sk_test_", STRIPE_API_BASE=standin.base), tmp_path
    )
    assert denied.returncode == 1 and "HTTP 401" in denied.stderr


def test_cursor_reads_again_from_the_oldest_unsettled() -> None:
    cursor = Cursor(None, False, intervals=((0, 100), (200, 300)), unsettled_from=250)
    assert cursor.covered_settled() == [(0, 100), (200, 249)]
    assert Cursor(None, False, intervals=((0, 100),)).covered_settled() == [(0, 100)]


def test_cli_main_registers_balance_sync() -> None:
    from cli import balance_sync_cmd, main

    assert balance_sync_cmd.__name__ in main.COMMAND_MODULES


# -- stripe-mock: the request shapes Stripe's OpenAPI accepts ---------------------------------


@pytest.fixture(scope="session")
def stripe_mock() -> str:
    out = subprocess.run(
        ["bash", str(Path(__file__).resolve().parent.parent / "scripts" / "stripe-mock.sh"), "up"],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    ).stdout
    return out.strip().partition("=")[2]


def test_stripe_mock_accepts_the_requests_and_the_pass_completes(
    stripe_mock: str, sqlite_url: str, tmp_path: Path
) -> None:
    store = migrated(sqlite_url)
    env = cli_env(sqlite_url, STRIPE_API_KEY=TEST_KEY, STRIPE_API_BASE=stripe_mock)
    result = run_cli(["--since", "30d"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    # stripe-mock lists its one fixture transaction for any window (and validates the query).
    [bt] = facts(store, BALANCE_TRANSACTION_FACT)
    assert bt.payload["data"]["object"]["object"] == "balance_transaction"
    assert len(facts(store, BALANCE_FACT)) == 1 and len(facts(store, OPENING_BALANCE_FACT)) == 1
    api = StripeApi(TEST_KEY, base=stripe_mock, wait=Waits())
    params = {"payout": "po_1Pgc76B7WZ01zgkW", "expand": ["data.source"]}
    [page] = list(api.pages("/v1/balance_transactions", params, None))  # accepted, one page
    assert json.dumps(page)


def test_a_demo_history_syncs_completely(database_url: str) -> None:
    """The demo's case: a generated history's transactions, every account, dated ahead of now."""
    from demo.history import generate
    from demo.standin import from_demo

    history = generate(seed=3, events=3000)
    store = migrated(database_url)
    with Standin(from_demo(history)) as base:
        api = StripeApi(TEST_KEY, base=base, wait=Waits())
        totals = balance_sync(
            api,
            store,
            accounts=[None, *(a for a in history.balance_transactions if a)],
            since_s=history.events[0]["created"],
            clock=lambda: history.events[-1]["created"],
        )
    served = sum(len(bts) for bts in history.balance_transactions.values())
    members = sum(len(m) for ms in history.payout_members.values() for m in ms.values())
    assert (totals.listed, totals.payout_listed, totals.complete_scopes) == (served, members, 2)
    assert len(facts(store, BALANCE_TRANSACTION_FACT)) == served + members
    for opening in facts(store, OPENING_BALANCE_FACT):  # the history starts from nothing
        assert {b["amount"] for b in opening.payload["data"]["object"]["balances"]} == {0}


def test_every_mode_exits_0_on_sigterm_after_a_pass(
    standin: Standin, sqlite_url: str, tmp_path: Path
) -> None:
    standin.data = story(5)
    store = migrated(sqlite_url)
    env = cli_env(sqlite_url, STRIPE_API_KEY=TEST_KEY, STRIPE_API_BASE=standin.base)
    code, out, err = signal_when(
        [*CLI, "--since", "3d", "--every", "1h"],
        env,
        tmp_path,
        lambda: bool(facts(store, BALANCE_FACT)),  # the first pass is complete
        signal.SIGTERM,
    )
    assert code == 0, err
    assert "(1 complete)" in out and TEST_KEY not in out + err
