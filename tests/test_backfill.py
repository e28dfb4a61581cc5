"""backfill / reconcile: against stripe-mock (started by scripts/stripe-mock.sh) and, for what
stripe-mock cannot express (rate limits, Retry-After, many distinct pages, the 30-day window, an
interruption half-way), against a small local fake of the Events API."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import sqlalchemy as sa

from cli import backfill_cmds
from ledger.backfill import (
    EVENTS_RETENTION_S,
    BackfillState,
    backfill,
    gaps,
    parse_since,
    parse_types,
    server_filter,
    store_sink,
    type_matches,
)
from ledger.database import create_engine, migrate
from ledger.store import EventStore, open_event_store
from ledger.stripe_api import API_ATTEMPTS_MAX, StripeApi, StripeApiError, retry_after_s
from projections.journal_rules import balance_transaction_entry_id
from tests.support.factory import charge_event
from tests.support.json_http import json_server
from tests.support.kafka_util import ROOT, cli_env
from tests.support.services import script_exports

CLI = [sys.executable, "-m", "cli.backfill_cmds"]  # the same handlers cli/main.py registers
MOCK_EVENT_ID = "evt_1Pgc76B7WZ01zgkWwyRHS12y"  # stripe-mock's fixture event (plan.created)
API_KEY = f"sk_test_{uuid.uuid4().hex}"


def run(
    args: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout_s
    )
    assert API_KEY not in result.stdout + result.stderr  # never print or log the key
    return result


def env_for(database_url: str, base: str, **extra: str) -> dict[str, str]:
    return cli_env(database_url, STRIPE_API_KEY=API_KEY, STRIPE_API_BASE=base, **extra)


def migrated(database_url: str) -> EventStore:
    engine = create_engine(database_url)
    migrate(engine)
    return open_event_store(engine)


# -- stripe-mock ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def stripe_mock() -> Iterator[str]:
    exports = script_exports("stripe-mock.sh", "up")
    assert "STRIPE_API_BASE" in exports, exports
    yield exports["STRIPE_API_BASE"]


def test_stripe_mock_backfill_appends_once_then_nothing_new(
    stripe_mock: str, database_url: str, tmp_path: Path
) -> None:
    store = migrated(database_url)
    env = env_for(database_url, stripe_mock)
    first = run(["backfill", "--since", "72h"], env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "1 new, 0 already known" in first.stdout
    [stored] = store.read()
    assert (stored.event_id, stored.source, stored.type) == (
        MOCK_EVENT_ID,
        "backfill",
        "plan.created",
    )
    assert (tmp_path / ".stripe-ledger-backfill.json").exists()
    # stripe-mock lists the same fixture event for any window: the rerun re-reads it.
    second = run(["backfill", "--since", "72h", "--restart"], env, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "0 new, 1 already known" in second.stdout
    assert store.count() == 1


def test_stripe_mock_types_are_filtered_client_side(
    stripe_mock: str, database_url: str, tmp_path: Path
) -> None:
    store = migrated(database_url)
    env = env_for(database_url, stripe_mock)
    # stripe-mock ignores `type`: the filter here must drop its plan.created event.
    other = run(["backfill", "--types", "charge.*,invoice.*", "--state-file", "-"], env, tmp_path)
    assert other.returncode == 0, other.stderr
    assert "1 events listed" in other.stdout and "0 matching" in other.stdout
    assert store.count() == 0
    plans = run(["backfill", "--types", "plan.*", "--state-file", "-"], env, tmp_path)
    assert "1 new" in plans.stdout, plans.stdout + plans.stderr
    assert store.event_ids() == [MOCK_EVENT_ID]


def test_stripe_mock_account_scope_sets_the_account(
    stripe_mock: str, database_url: str, tmp_path: Path
) -> None:
    store = migrated(database_url)
    result = run(
        ["backfill", "--account", "acct_backfill1"], env_for(database_url, stripe_mock), tmp_path
    )
    assert result.returncode == 0, result.stderr
    [stored] = store.read()
    assert stored.account == "acct_backfill1"
    assert stored.payload["account"] == "acct_backfill1"


def test_stripe_mock_all_accounts_walks_platform_and_each_account(
    stripe_mock: str, database_url: str, tmp_path: Path
) -> None:
    migrated(database_url)
    result = run(["backfill", "--all-accounts"], env_for(database_url, stripe_mock), tmp_path)
    assert result.returncode == 0, result.stderr
    # stripe-mock lists one connected account; its fixture event has the platform's id.
    assert "over 2 account scope(s)" in result.stdout
    assert "1 new, 1 already known" in result.stdout


def test_stripe_mock_reconcile_reports_then_backfills(
    stripe_mock: str, database_url: str, tmp_path: Path
) -> None:
    store = migrated(database_url)
    env = env_for(database_url, stripe_mock)
    before = run(["reconcile", "--json"], env, tmp_path)
    assert before.returncode == 1, before.stderr
    report = json.loads(before.stdout)
    assert report["missing"] == {"plan.created": [MOCK_EVENT_ID]}
    assert store.count() == 0
    fixed = run(["reconcile", "--backfill", "--json"], env, tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["backfilled"] == 1
    after = run(["reconcile", "--balance-transactions"], env, tmp_path)
    assert after.returncode == 0, after.stderr
    assert "1 stored, 0 missing" in after.stdout
    assert "platform usd: 1 transactions, stripe fees 0" in after.stdout
    assert [e.source for e in store.read()] == ["backfill"]


def test_stripe_mock_via_kafka_keys_like_ingest(
    stripe_mock: str, kafka_bootstrap: str, topic: str, sqlite_url: str, tmp_path: Path
) -> None:
    from kafka import KafkaConsumer

    from tests.support.kafka_util import create_topic

    create_topic(kafka_bootstrap, topic, partitions=1)
    env = cli_env(sqlite_url, kafka_bootstrap, STRIPE_API_KEY=API_KEY, STRIPE_API_BASE=stripe_mock)
    result = run(["backfill", "--via-kafka", "--topic", topic], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 produced to Kafka" in result.stdout
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    try:
        records = list(consumer)
    finally:
        consumer.close()
    assert [(r.key, json.loads(r.value)["id"]) for r in records] == [(b"platform", MOCK_EVENT_ID)]


def test_missing_api_key_is_a_clear_error(
    stripe_mock: str, sqlite_url: str, tmp_path: Path
) -> None:
    migrated(sqlite_url)
    env = cli_env(sqlite_url, STRIPE_API_BASE=stripe_mock)
    result = run(["backfill"], env, tmp_path)
    assert result.returncode == 2
    assert "STRIPE_API_KEY (or STRIPE_API_KEY_FILE) is not set" in result.stderr


def test_api_key_from_file(stripe_mock: str, sqlite_url: str, tmp_path: Path) -> None:
    store = migrated(sqlite_url)
    key_file = tmp_path / "key"
    key_file.write_text(API_KEY + "\n")
    env = cli_env(sqlite_url, STRIPE_API_KEY_FILE=str(key_file), STRIPE_API_BASE=stripe_mock)
    result = run(["backfill", "--state-file", "-"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert store.count() == 1


def test_cli_main_registers_the_commands() -> None:
    """Fails until cli/main.py lists cli.backfill_cmds in COMMAND_MODULES."""
    from cli import main

    assert backfill_cmds.__name__ in main.COMMAND_MODULES


# -- a local fake of the Events API -----------------------------------------------------------

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
NOW_S = int(NOW.timestamp())


class FakeStripe:
    """Serves /v1/events (newest first, created[gte|lte], type, starting_after), /v1/accounts
    and /v1/balance_transactions from lists; ``script`` queues (status, headers) failures."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = sorted(events, key=lambda e: (e["created"], e["id"]), reverse=True)
        self.balance_transactions: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        self.fail_from_request: int | None = None  # every request from this number on: 500
        self.requests: list[dict[str, list[str]]] = []
        self.lock = threading.Lock()

    def handle(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            self.requests.append({"path": [path], **query})
            number = len(self.requests)
            if self.script:
                status, headers = self.script.pop(0)
                return status, headers, {"error": {"message": "slow down", "type": "api_error"}}
            if self.fail_from_request is not None and number >= self.fail_from_request:
                return 500, {}, {"error": {"message": "boom", "type": "api_error"}}
        if path == "/v1/accounts":
            return 200, {}, {"object": "list", "data": [], "has_more": False}
        items = self.events if path == "/v1/events" else self.balance_transactions
        gte = int(query.get("created[gte]", ["0"])[0])
        lte = int(query.get("created[lte]", [str(2**40)])[0])
        chosen = [e for e in items if gte <= e["created"] <= lte]
        if "type" in query:
            chosen = [e for e in chosen if type_matches(e["type"], [query["type"][0]])]
        if "starting_after" in query:
            ids = [e["id"] for e in chosen]
            chosen = chosen[ids.index(query["starting_after"][0]) + 1 :]
        limit = int(query.get("limit", ["10"])[0])
        return 200, {}, {"object": "list", "data": chosen[:limit], "has_more": len(chosen) > limit}


@pytest.fixture
def fake_stripe() -> Iterator[tuple[FakeStripe, str]]:
    fake = FakeStripe([])

    def handle(path: str, _headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        url = urlparse(path)
        return fake.handle(url.path, parse_qs(url.query))

    with json_server(handle) as base:
        yield fake, base


def distinct_events(n: int, *, newest: int = NOW_S - 3600) -> list[dict[str, Any]]:
    """n charge events, one per minute back from ``newest`` (ids evt_test00000000..)."""
    events = []
    for i in range(n):
        event = charge_event(i)
        event["created"] = newest - 60 * i
        events.append(event)
    return events


class Waits:
    def __init__(self) -> None:
        self.asked: list[float] = []

    def __call__(self, seconds: float) -> bool:
        self.asked.append(seconds)
        return False


def test_many_pages_of_distinct_events(
    fake_stripe: tuple[FakeStripe, str], database_url: str, tmp_path: Path
) -> None:
    fake, base = fake_stripe
    fake.events = distinct_events(250)
    store = migrated(database_url)
    api = StripeApi(API_KEY, base=base, wait=Waits())
    state = BackfillState(tmp_path / "state.json")
    totals = backfill(api, store_sink(store), state, since=NOW_S - 86400, now=NOW, accounts=[None])
    assert (totals.pages, totals.listed, totals.appended, totals.known) == (3, 250, 250, 0)
    assert sorted(store.event_ids()) == sorted(e["id"] for e in fake.events)
    pages = [r for r in fake.requests if r["path"] == ["/v1/events"]]
    assert [r.get("starting_after") for r in pages] == [
        None,
        [fake.events[99]["id"]],
        [fake.events[199]["id"]],
    ]
    assert {r["created[gte]"][0] for r in pages} == {str(NOW_S - 86400)}
    # The whole window (but its last LIST_LAG_S seconds) is now complete: a rerun reads only
    # the newest minute and appends nothing.
    fake.requests.clear()
    again = backfill(api, store_sink(store), state, since=NOW_S - 86400, now=NOW, accounts=[None])
    assert (again.listed, again.appended) == (0, 0)
    assert [r["created[gte]"] for r in fake.requests] == [[str(NOW_S - 59)]]


def test_interrupted_half_way_resumes_at_the_last_stored_page(
    fake_stripe: tuple[FakeStripe, str], database_url: str, tmp_path: Path
) -> None:
    fake, base = fake_stripe
    fake.events = distinct_events(250)
    store = migrated(database_url)
    state_path = tmp_path / "state.json"
    fake.fail_from_request = 3  # page 3 never comes
    api = StripeApi(API_KEY, base=base, wait=Waits(), attempts_max=2)
    with pytest.raises(StripeApiError, match="HTTP 500"):
        backfill(
            api,
            store_sink(store),
            BackfillState(state_path),
            since=NOW_S - 86400,
            now=NOW,
            accounts=[None],
        )
    assert store.count() == 200
    fake.fail_from_request = None
    fake.requests.clear()
    totals = backfill(
        api,
        store_sink(store),
        BackfillState(state_path),
        since=NOW_S - 86400,
        now=NOW,
        accounts=[None],
    )
    assert store.count() == 250
    # The resumed walk reads only the gaps: the top minute not yet marked complete, then from
    # the oldest second of page 2 down to the start of the window; never the stored pages.
    oldest_stored = fake.events[199]["created"]
    windows = [(r["created[gte]"][0], r["created[lte]"][0]) for r in fake.requests]
    assert windows == [
        (str(NOW_S - 59), str(NOW_S)),
        (str(NOW_S - 86400), str(oldest_stored)),
    ]
    assert (totals.appended, totals.known) == (50, 1)  # page 2's oldest second is re-read


def test_429_and_5xx_are_retried_honouring_retry_after(
    fake_stripe: tuple[FakeStripe, str], database_url: str, tmp_path: Path
) -> None:
    fake, base = fake_stripe
    fake.events = distinct_events(3)
    fake.script = [(429, {"Retry-After": "7"}), (503, {}), (429, {"Retry-After": "600"})]
    store = migrated(database_url)
    waits = Waits()
    api = StripeApi(API_KEY, base=base, wait=waits)
    totals = backfill(
        api, store_sink(store), BackfillState(None), since=NOW_S - 86400, now=NOW, accounts=[None]
    )
    assert totals.appended == 3
    assert waits.asked[0] == 7.0
    assert 0 < waits.asked[1] <= 1.0  # no Retry-After: the backoff (400ms, jittered) instead
    assert waits.asked[2] == 60.0  # a huge Retry-After is capped
    assert len(fake.requests) == 4


def test_retries_are_bounded(fake_stripe: tuple[FakeStripe, str]) -> None:
    fake, base = fake_stripe
    fake.script = [(429, {"Retry-After": "1"})] * (API_ATTEMPTS_MAX + 5)
    api = StripeApi(API_KEY, base=base, wait=Waits())
    with pytest.raises(StripeApiError, match=f"after {API_ATTEMPTS_MAX} attempts"):
        list(api.pages("/v1/events", {}, None))
    assert len(fake.requests) == API_ATTEMPTS_MAX


def test_client_errors_are_not_retried(fake_stripe: tuple[FakeStripe, str]) -> None:
    fake, base = fake_stripe
    fake.script = [(401, {})]
    api = StripeApi(API_KEY, base=base, wait=Waits())
    with pytest.raises(StripeApiError, match="HTTP 401"):
        list(api.pages("/v1/events", {}, None))
    assert len(fake.requests) == 1


def test_window_is_clamped_to_the_30_days_stripe_keeps(
    fake_stripe: tuple[FakeStripe, str], sqlite_url: str
) -> None:
    fake, base = fake_stripe
    fake.events = distinct_events(2)
    store = migrated(sqlite_url)
    api = StripeApi(API_KEY, base=base, wait=Waits())
    totals = backfill(
        api,
        store_sink(store),
        BackfillState(None),
        since=NOW_S - 40 * 86400,
        now=NOW,
        accounts=[None],
    )
    assert totals.warnings and "30 days" in totals.warnings[0]
    assert fake.requests[0]["created[gte]"] == [str(NOW_S - EVENTS_RETENTION_S)]
    assert totals.appended == 2


def test_every_mode_exits_0_on_sigterm(
    fake_stripe: tuple[FakeStripe, str], database_url: str, tmp_path: Path
) -> None:
    fake, base = fake_stripe
    fake.events = distinct_events(5, newest=int(time.time()) - 600)
    store = migrated(database_url)
    env = env_for(database_url, base)
    proc = subprocess.Popen(
        [*CLI, "backfill", "--since", "1d", "--every", "1h"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(600):  # a bounded wait for the first pass (the condition, not a time)
            if store.count() == 5 and (tmp_path / ".stripe-ledger-backfill.json").exists():
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "5 new, 0 already known" in out
    assert API_KEY not in out + err


def test_reconcile_fee_report_against_the_journal(
    fake_stripe: tuple[FakeStripe, str], database_url: str, tmp_path: Path
) -> None:
    fake, base = fake_stripe
    real_now = int(time.time())  # the CLI windows on the real clock
    fake.balance_transactions = [
        {
            "id": "txn_1",
            "object": "balance_transaction",
            "created": real_now - 100,
            "fee": 59,
            "currency": "usd",
            "source": "ch_a",
            "type": "charge",
        },
        {
            "id": "txn_2",
            "object": "balance_transaction",
            "created": real_now - 200,
            "fee": 30,
            "currency": "usd",
            "source": "ch_b",
            "type": "charge",
        },
        {
            "id": "txn_3",
            "object": "balance_transaction",
            "created": real_now - 300,
            "fee": 25,
            "currency": "eur",
            "source": "ch_c",
            "type": "charge",
        },
    ]
    migrated(database_url)
    env = env_for(database_url, base)
    # Without the read side: the view is missing and the report says so.
    bare = run(["reconcile", "--balance-transactions", "--json", "--since", "1d"], env, tmp_path)
    assert bare.returncode == 0, bare.stderr
    fees = json.loads(bare.stdout)["fees"]
    assert fees["journal_available"] is False and "does not exist" in fees["note"]
    assert [(r["currency"], r["stripe_fees"]) for r in fees["rows"]] == [("eur", 25), ("usd", 89)]
    # With the journal: the fee posting of txn_1 is known, the others are drift.
    from reports.read_side import prepare_read_side

    engine = create_engine(database_url)
    prepare_read_side(engine)
    names = sa.inspect(engine).get_table_names()
    [target] = [name for name in names if "journal_postings" in name]
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                f'INSERT INTO "{target}" (entry_id, account_key, livemode, account, '
                "ledger_account, currency, kind, amount) VALUES (:entry, '', :lm, "
                "NULL, 'processing_fees', 'usd', 'fee', 59)"
            ),
            {"entry": balance_transaction_entry_id("ch_a", "txn_1"), "lm": False},
        )
    full = run(["reconcile", "--balance-transactions", "--json", "--since", "1d"], env, tmp_path)
    fees = json.loads(full.stdout)["fees"]
    assert fees["journal_available"] is True
    usd = next(r for r in fees["rows"] if r["currency"] == "usd")
    assert (usd["stripe_fees"], usd["journal_fees"], usd["drift"], usd["unposted"]) == (
        89,
        59,
        30,
        1,
    )


# -- pure pieces ------------------------------------------------------------------------------


def test_since_and_types_parsing() -> None:
    assert parse_since("72h", NOW) == NOW_S - 72 * 3600
    assert parse_since("2026-11-01", NOW) == int(
        dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp()
    )
    assert parse_types("invoice.*, charge.*") == ("charge.*", "invoice.*")
    assert type_matches("charge.dispute.created", ["charge.*"])
    assert not type_matches("invoice.paid", ["charge.*"])
    assert server_filter(["charge.*"]) == {"type": "charge.*"}
    assert server_filter(["charge.succeeded", "invoice.paid"]) == {
        "types": ["charge.succeeded", "invoice.paid"]
    }
    assert server_filter(["charge.*", "invoice.*"]) == {}


def test_gaps_newest_first() -> None:
    assert gaps(0, 100, []) == [(0, 100)]
    assert gaps(0, 100, [(10, 20), (50, 60)]) == [(61, 100), (21, 49), (0, 9)]
    assert gaps(0, 100, [(0, 100)]) == []


def test_retry_after_forms() -> None:
    assert retry_after_s({"retry-after": "3"}) == 3.0
    when = dt.datetime(2026, 11, 27, 12, 0, 10, tzinfo=dt.UTC)
    header = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_after_s({"Retry-After": header}, now=NOW) == 10.0
    assert retry_after_s({}) is None


def test_module_paths_stay_layered() -> None:
    for path in (
        "ledger/backfill.py",
        "ledger/stripe_api.py",
        "ledger/balance_sync.py",
        "ledger/balance_facts.py",
    ):
        assert "ingest" not in {
            line.split()[1].split(".")[0]
            for line in (ROOT / path).read_text().splitlines()
            if line.startswith(("import ", "from "))
        }
