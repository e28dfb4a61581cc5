"""``stripe-ledger export``: books the real tools accept (bean-check, hledger check), entries that
balance, totals that tie to the trial balance, payouts grouped the bookkeeper's way, the same
bytes whatever the delivery order, and clear one-line errors for bad mappings."""

from __future__ import annotations

import csv
import io
import os
import random
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from demo.balance import sync_in_process
from demo.history import generate
from ledger.database import create_engine, migrate
from ledger.envelope import event_from_dict
from ledger.store import EventStore, Incoming, open_event_store, utc_now
from projections import worker
from projections.journal_rules import BT_FACT
from reports import export, periods
from reports.money import parse_major
from reports.read_side import prepare_read_side

SEED = 11
EVENTS = 600
PAID_OUT_CHARGES = 5
TOOL_TIMEOUT_S = 60


def _paid_out_facts(history: Any) -> tuple[str, list[dict[str, Any]]]:
    """Balance-transaction facts (what balance-sync stores) saying that the first platform USD
    charges were paid out by a platform USD payout that stayed paid: the demo history's
    events alone name no automatic payout of a balance transaction."""
    deliveries = history.deliveries
    failed = {e["data"]["object"]["id"] for e in deliveries if e["type"] == "payout.failed"}
    payout = next(
        e["data"]["object"]
        for e in deliveries
        if e["type"] == "payout.paid"
        and not e.get("account")
        and e["data"]["object"]["currency"] == "usd"
        and e["data"]["object"]["id"] not in failed
    )
    bts = [  # the history's own balance transactions of platform USD charges
        bt
        for bt in history.balance_transactions[None]
        if bt["type"] == "charge" and bt["currency"] == "usd"
    ][:PAID_OUT_CHARGES]
    facts = [
        {
            "object": "event",
            "id": f"ledger_{bt['id']}",
            "type": BT_FACT,
            "created": bt["created"],
            "livemode": False,
            "account": None,
            "data": {"object": {**bt, "status": "available"}},
            "ledger": {"automatic_payout_id": payout["id"]},
        }
        for bt in bts
    ]
    return payout["id"], facts


def _history() -> tuple[str, list[dict[str, Any]]]:
    history = generate(seed=SEED, events=EVENTS)
    payout_id, facts = _paid_out_facts(history)
    return payout_id, history.deliveries + facts


def _load(url: str, deliveries: list[dict[str, Any]]) -> EventStore:
    engine = create_engine(url)
    migrate(engine)
    prepare_read_side(engine)
    store = open_event_store(engine)
    now = utc_now()
    for start in range(0, len(deliveries), 500):
        chunk = deliveries[start : start + 500]
        store.append([Incoming(event_from_dict(e), "import", now) for e in chunk])
    worker.run(store, until_idle_s=0)
    return store


@pytest.fixture(scope="module")
def history() -> tuple[str, list[dict[str, Any]]]:
    return _history()


@pytest.fixture
def books(tmp_path: Path, history: tuple[str, list[dict[str, Any]]]) -> EventStore:
    return _load(f"sqlite:///{tmp_path / 'books.db'}", history[1])


def _text(store: EventStore, fmt: str, group_by: str = "payout", **kwargs: Any) -> str:
    files = export.export(store.engine, fmt, group_by, **kwargs)
    assert len(files) == 1, sorted(files)
    return next(iter(files.values()))


def _tool(name: str) -> str:
    """The tool beside this Python (bean-check in .venv/bin) or on PATH (hledger)."""
    path = shutil.which(name, path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    assert path, f"{name} is not installed: run `bash scripts/test-tools.sh` (make test does)"
    return path


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _csv_totals(text: str) -> dict[tuple[str, str], int]:
    """(currency, book account) -> debits - credits, minor units, from a csv-gl export."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for row in _csv_rows(text):
        code = row["currency"].lower()
        debit = parse_major(row["debit"], code) if row["debit"] else 0
        credit = parse_major(row["credit"], code) if row["credit"] else 0
        totals[code, row["account"]] += debit - credit
    return {key: total for key, total in totals.items() if total}


def _trial_totals(
    store: EventStore, as_of: int | None, account: str = "platform"
) -> dict[tuple[str, str], int]:
    columns, rows = periods.trial_balance(store.engine, as_of, account, False)
    out: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        r = dict(zip(columns, row, strict=True))
        if r["balance"]:
            out[r["currency"], export.DEFAULT_ACCOUNTS[r["ledger_account"]]] += int(r["balance"])
    return dict(out)


@pytest.mark.parametrize("group_by", export.GROUPS)
def test_bean_check_and_hledger_check_accept_the_export(
    books: EventStore, tmp_path: Path, group_by: str
) -> None:
    beancount = tmp_path / "books.beancount"
    beancount.write_text(_text(books, "beancount", group_by), encoding="utf-8")
    checked = _run([_tool("bean-check"), str(beancount)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    journal = tmp_path / "books.journal"
    journal.write_text(_text(books, "hledger", group_by), encoding="utf-8")
    checked = _run([_tool("hledger"), "-f", str(journal), "check", "--strict"])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # hledger's own balance report agrees with ours: every account nets as the trial balance
    balances = _run([_tool("hledger"), "-f", str(journal), "balance", "--flat", "-O", "csv",
                     "--no-total"])  # fmt: skip
    assert balances.returncode == 0, balances.stderr
    seen = {}
    for row in _csv_rows(balances.stdout):
        for amount in row["balance"].split(", "):
            number, code = amount.rsplit(" ", 1)
            sign, digits = ("-", number[1:]) if number.startswith("-") else ("", number)
            minor = parse_major(digits, code.lower())
            seen[code.lower(), row["account"]] = -minor if sign else minor
    assert seen == _trial_totals(books, None)


def test_a_tool_rejects_what_is_broken(books: EventStore, tmp_path: Path) -> None:
    """The checks above can fail: an unbalanced entry is refused by both tools."""

    def unbalance(text: str) -> str:  # one posting a whole unit more
        return re.sub(
            r"  (\d+)\.(\d\d) USD\n", lambda m: f"  {int(m[1]) + 1}.{m[2]} USD\n", text, count=1
        )

    broken = tmp_path / "broken.beancount"
    broken.write_text(unbalance(_text(books, "beancount", "transaction")), encoding="utf-8")
    checked = _run([_tool("bean-check"), str(broken)])
    assert checked.returncode != 0 and "does not balance" in checked.stdout + checked.stderr
    journal = tmp_path / "broken.journal"
    journal.write_text(unbalance(_text(books, "hledger", "transaction")), encoding="utf-8")
    checked = _run([_tool("hledger"), "-f", str(journal), "check"])
    assert checked.returncode != 0 and "balance" in checked.stderr


@pytest.mark.parametrize("group_by", export.GROUPS)
def test_every_entry_balances_in_every_format(books: EventStore, group_by: str) -> None:
    sums: dict[tuple[str, ...], int] = defaultdict(int)
    for row in _csv_rows(_text(books, "csv-gl", group_by)):
        code = row["currency"].lower()
        debit = parse_major(row["debit"], code) if row["debit"] else 0
        credit = parse_major(row["credit"], code) if row["credit"] else 0
        assert (debit > 0) != (credit > 0), row
        sums[row["date"], row["reference"], code] += debit - credit
    assert sums and set(sums.values()) == {0}
    for name, text in export.export(books.engine, "xero-csv", group_by).items():
        code = name.split(".")[0]  # usd, usd.2, ...: Xero's 300 lines per file
        assert len(text.splitlines()) <= export.XERO_LINES_MAX + 1, name
        journals: dict[tuple[str, str], int] = defaultdict(int)
        for row in _csv_rows(text):
            amount = row["*Amount"]
            minor = parse_major(amount.lstrip("-"), code)
            journals[row["*Narration"], row["*Date"]] += -minor if amount[0] == "-" else minor
            assert row["*TaxRate"] == export.XERO_TAX_RATE_DEFAULT
        assert journals and set(journals.values()) == {0}, code
    for code, text in export.export(books.engine, "qbo-csv", group_by).items():
        entries: dict[str, int] = defaultdict(int)
        for row in _csv_rows(text):
            debit = parse_major(row["Debits"], code) if row["Debits"] else 0
            credit = parse_major(row["Credits"], code) if row["Credits"] else 0
            entries[row["Journal No."]] += debit - credit
        assert entries and set(entries.values()) == {0}, code


def test_totals_per_account_equal_the_trial_balance_for_the_period(books: EventStore) -> None:
    assert _csv_totals(_text(books, "csv-gl")) == _trial_totals(books, None)
    since = periods.parse_instant("2026-11-03")
    until = periods.parse_instant("2026-11-10")
    period = _csv_totals(_text(books, "csv-gl", "day", since=since, until=until))
    before, after = _trial_totals(books, since), _trial_totals(books, until)
    moved = {
        key: after.get(key, 0) - before.get(key, 0)
        for key in set(before) | set(after)
        if after.get(key, 0) != before.get(key, 0)
    }
    assert period and period == moved
    assert _csv_totals(_text(books, "csv-gl", "transaction", until=until)) == after


def test_a_payout_is_one_entry_of_what_it_paid_out(
    books: EventStore, history: tuple[str, list[dict[str, Any]]]
) -> None:
    payout_id, deliveries = history
    facts = [e["data"]["object"] for e in deliveries if e["type"] == BT_FACT]
    payout = next(
        e["data"]["object"] for e in deliveries if e["data"]["object"].get("id") == payout_id
    )
    rows = [r for r in _csv_rows(_text(books, "csv-gl")) if r["reference"] == payout_id]
    assert len({(r["date"], r["description"]) for r in rows}) == 1, "one entry"
    lines = {r["account"]: (r["debit"], r["credit"]) for r in rows}
    assert lines["Income:Stripe:Sales"] == (
        "",
        export.major(sum(f["amount"] for f in facts), "usd"),
    )
    assert lines["Expenses:Stripe:ProcessingFees"] == (
        export.major(sum(f["fee"] for f in facts), "usd"), "")  # fmt: skip
    assert lines["Assets:Bank:Checking"] == (export.major(payout["amount"], "usd"), "")
    assert rows[0]["date"] == export.utc_day(max(
        e["created"] for e in deliveries if e["data"]["object"].get("id") == payout_id
    ))  # fmt: skip
    assert f"({PAID_OUT_CHARGES * 2 + 2} entries)" in rows[0]["description"]  # gross+available
    by_day = _text(books, "csv-gl", "day")
    assert payout_id not in by_day and _csv_totals(by_day) == _csv_totals(_text(books, "csv-gl"))


def test_shuffled_deliveries_give_identical_bytes(
    books: EventStore, tmp_path: Path, history: tuple[str, list[dict[str, Any]]]
) -> None:
    shuffled = list(history[1])
    random.Random(5).shuffle(shuffled)
    again = _load(f"sqlite:///{tmp_path / 'shuffled.db'}", shuffled)
    for fmt in export.FORMATS:
        for group_by in export.GROUPS:
            first = export.export(books.engine, fmt, group_by)
            assert export.export(again.engine, fmt, group_by) == first, (fmt, group_by)
            assert export.export(books.engine, fmt, group_by) == first, "same store, same bytes"


def test_the_export_command_writes_files_and_refuses_bad_mappings(
    books: EventStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", str(books.engine.url))
    out = tmp_path / "books.csv"
    assert main(["export", "--format", "xero-csv", "--output", str(out)]) == 0
    written = sorted(path.name for path in tmp_path.glob("books.*.csv"))
    assert written == ["books.eur.csv", "books.jpy.csv", "books.usd.csv"]
    assert main(["export", "--format", "qbo-csv"]) == 2
    assert "give --currency or --output" in capsys.readouterr().err
    assert main(["export", "--format", "qbo-csv", "--currency", "jpy"]) == 0
    assert "/" in capsys.readouterr().out  # MM/DD/YYYY dates, JPY without decimals

    assert main(["export", "--print-mapping"]) == 0
    default = capsys.readouterr().out
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(default.replace("Income:Stripe:Sales", "Income:Sales:Stripe"))
    target = tmp_path / "mapped.beancount"
    assert main(["export", "--format", "beancount", "--accounts", str(mapping),
                 "--output", str(target)]) == 0  # fmt: skip
    assert "Income:Sales:Stripe" in target.read_text() and "Income:Stripe:Sales" not in (
        target.read_text()
    )
    before = target.read_bytes()
    assert capsys.readouterr().err == f"wrote {target}\n"
    cases = {
        default.replace('processing_fees = "Expenses:Stripe:ProcessingFees"\n', ""): (
            "ledger account 'processing_fees' has no mapping in"
        ),
        default.replace("revenue =", "revenu ="): "names 'revenu', not a ledger account",
        default.replace('"Income:Stripe:Sales"', '"200"'): "'200' is not a beancount account",
        "accounts = [": "is not TOML",
        "[xero]\n": "has no [accounts] table",
    }
    for text, message in cases.items():
        mapping.write_text(text)
        assert main(["export", "--format", "beancount", "--accounts", str(mapping),
                     "--output", str(target)]) == 2, message  # fmt: skip
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert target.read_bytes() == before, "a refused export leaves the file as it was"
    mapping.write_text(default.replace('"Income:Stripe:Sales"', '"200"'))
    assert main(["export", "--format", "xero-csv", "--currency", "usd", "--accounts",
                 str(mapping)]) == 0  # fmt: skip
    assert ",200," in capsys.readouterr().out  # Xero takes account codes
    refused = {
        ("--since", "nope"): "not a date",
        ("--since", "2026-12-01", "--until", "2026-11-01"): "--since must be before --until",
        ("--currency", "dollars"): "not a currency code: 'dollars'",
        ("--output", str(tmp_path / "no" / "such" / "dir.csv")): "cannot write",
    }
    for extra, message in refused.items():
        assert main(["export", "--format", "csv-gl", *extra]) in (1, 2), message
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert main(["export"]) == 2 and "--format is required" in capsys.readouterr().err


def test_major_units_are_exact_strings() -> None:
    assert export.major(-32000, "usd") == "-320.00"
    assert export.major(5, "eur") == "0.05"
    assert export.major(3000, "jpy") == "3000"
    assert export.major(5120, "kwd") == "5.120"
    with pytest.raises(AssertionError):
        export.major(1.5, "usd")  # type: ignore[arg-type]


def test_postgres_exports_the_same_bytes_as_sqlite(
    books: EventStore, postgres_url: str, history: tuple[str, list[dict[str, Any]]]
) -> None:
    """The order and the day of each entry come from Python, not from a backend's collation
    or time zone."""
    on_postgres = _load(postgres_url, history[1])
    for fmt in export.FORMATS:
        for group_by in export.GROUPS:
            expected = export.export(books.engine, fmt, group_by)
            assert export.export(on_postgres.engine, fmt, group_by) == expected, (fmt, group_by)


@pytest.mark.parametrize(("seed", "events"), [(7, 400), (SEED + 1, 10_000)])
def test_the_demo_and_a_10000_event_history_validate_with_the_tools_and_tie(
    tmp_path: Path, seed: int, events: int
) -> None:
    """(7, 400) is what `stripe-ledger demo` sends; 10,000 events is the issue's size."""
    generated = generate(seed=seed, events=events)
    store = _load(f"sqlite:///{tmp_path / 'large.db'}", generated.deliveries)
    sync_in_process(generated, store)  # every balance transaction, as balance-sync gets them
    worker.run(store, until_idle_s=0)
    columns, rows = periods_summary(store)
    stripe = {export.DEFAULT_ACCOUNTS[name] for name in ("stripe_pending", "stripe_available")}
    books = _csv_totals(_text(store, "csv-gl"))
    for row in rows:  # the books' Stripe balance is the Balance report's ending balance
        r = dict(zip(columns, row, strict=True))
        if r["account"] is None:
            held = sum(v for (code, name), v in books.items() if code == r["currency"]
                       and name in stripe)  # fmt: skip
            assert held == r["ending_balance"], r
    payout_id = _a_reconciled_payout(store)
    for group_by in export.GROUPS:
        path = tmp_path / f"{group_by}.beancount"
        path.write_text(_text(store, "beancount", group_by), encoding="utf-8")
        checked = _run([_tool("bean-check"), str(path)])
        assert checked.returncode == 0, checked.stdout + checked.stderr
        path = tmp_path / f"{group_by}.journal"
        path.write_text(_text(store, "hledger", group_by), encoding="utf-8")
        checked = _run([_tool("hledger"), "-f", str(path), "check", "--strict"])
        assert checked.returncode == 0, checked.stdout + checked.stderr
        totals = _csv_totals(_text(store, "csv-gl", group_by))
        assert totals == _trial_totals(store, None), group_by
    assert f"Stripe payout {payout_id}" in _text(store, "beancount")
    if events < 10_000:
        return
    files = export.export(store.engine, "xero-csv", "transaction")
    assert "usd.2" in files, "over 300 lines: more files, whole journals in each"
    lines = [line for text in files.values() for line in text.splitlines()[1:]]
    assert all(len(text.splitlines()) <= export.XERO_LINES_MAX + 1 for text in files.values())
    assert len(lines) == len(_text(store, "csv-gl", "transaction").splitlines()) - 1
    journals = [{r["*Narration"] for r in _csv_rows(text)} for text in files.values()]
    assert sum(len(j) for j in journals) == len(set().union(*journals)), "no journal split"


def periods_summary(store: EventStore) -> tuple[list[str], list[tuple[Any, ...]]]:
    return periods.balance_summary(store.engine, None, None, None, False)


def _a_reconciled_payout(store: EventStore) -> str:
    with store.engine.connect() as connection:
        found = connection.exec_driver_sql(
            "SELECT MIN(payout_id) FROM report_payout_reconciliation "
            "WHERE account IS NULL AND reconciled = 1 AND bt_count > 0"
        ).scalar()
    assert isinstance(found, str)
    return found


def test_a_connect_account_has_its_own_books(books: EventStore) -> None:
    with books.engine.connect() as connection:
        connect = connection.exec_driver_sql(
            "SELECT MIN(account) FROM report_journal WHERE account IS NOT NULL"
        ).scalar_one()
    assert connect and connect.startswith("acct_")
    own = _csv_totals(_text(books, "csv-gl", account=connect))
    assert own and own == _trial_totals(books, None, connect)
    assert own != _csv_totals(_text(books, "csv-gl"))
    live = export.export(books.engine, "csv-gl", livemode=True)[""]
    assert live.startswith("date,reference,") and live.count("\n") == 1, "test data only"
