"""``stripe-ledger close-period``: a closed month's export never changes; a late fact for it
posts one adjustment in the first open month; the books still tie to the trial balance."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cli.main import main
from ledger.envelope import event_from_dict
from ledger.store import EventStore, Incoming, utc_now
from projections import worker
from reports import closing, export, periods
from tests.support.factory import charge_event
from tests.test_export import _csv_totals, _history, _load, _run, _text, _tool, _trial_totals

NOVEMBER = "2026-11"
NOW_S = periods.parse_instant("2027-06-01")  # every month of the history has ended
NOVEMBER_SINCE, NOVEMBER_UNTIL = closing.parse_period(NOVEMBER)


def _exports(store: EventStore, since: int, until: int) -> dict[tuple[str, str], dict[str, str]]:
    return {
        (fmt, group_by): export.export(store.engine, fmt, group_by, since=since, until=until)
        for fmt in export.FORMATS
        for group_by in export.GROUPS
    }


def _accounts(store: EventStore) -> list[str | None]:
    with store.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT DISTINCT account FROM report_journal"))
        return sorted((row[0] for row in rows), key=lambda a: a or "")


def _append(store: EventStore, events: list[dict[str, Any]]) -> None:
    store.append([Incoming(event_from_dict(e), "import", utc_now()) for e in events])
    worker.run(store, until_idle_s=0)


@pytest.fixture(scope="module")
def history() -> tuple[str, list[dict[str, Any]]]:
    return _history()


@pytest.fixture
def closed(database_url: str, history: tuple[str, list[dict[str, Any]]]) -> EventStore:
    store = _load(database_url, history[1])
    closing.close_period(store.engine, NOVEMBER, None, False, NOW_S)
    return store


def test_a_late_fact_leaves_the_closed_month_and_posts_one_adjustment(
    closed: EventStore, tmp_path: Path
) -> None:
    december = closing.parse_period("2026-12")
    november_before = _exports(closed, NOVEMBER_SINCE, NOVEMBER_UNTIL)
    december_before = _text(closed, "csv-gl", "transaction", since=december[0])
    trial_before = periods.trial_balance(closed.engine, NOVEMBER_UNTIL)
    late = charge_event(1, amount=4321, created=NOVEMBER_SINCE + 86_400)  # Nov 2, delivered now
    _append(closed, [late])
    assert _exports(closed, NOVEMBER_SINCE, NOVEMBER_UNTIL) == november_before
    connect = next(a for a in _accounts(closed) if a)  # another scope: not closed
    with closed.engine.connect() as connection:
        assert closing.effective_postings(connection, connect, False) is None
    assert periods.trial_balance(closed.engine, NOVEMBER_UNTIL) == trial_before
    assert periods.trial_balance(closed.engine, NOVEMBER_UNTIL, "platform", False) != (
        periods.trial_balance(closed.engine, NOW_S, "platform", False)
    )
    as_of_now = _trial_totals(closed, NOW_S)
    assert as_of_now == _trial_totals(closed, None) and as_of_now != _trial_totals(
        closed, NOVEMBER_UNTIL
    )
    december_after = _text(closed, "csv-gl", "transaction", since=december[0])
    added = [
        line for line in december_after.splitlines() if line not in december_before.splitlines()
    ]
    adjusted = late["data"]["object"]["id"]
    assert added and all(f"adjusts:{adjusted}" in line for line in added), added
    assert {line.split(",")[0] for line in added} == {"2026-12-01"}  # the first open instant
    assert len({line.split(",")[1] for line in added}) == 1, "one adjustment entry"
    assert "43.21" in december_after
    # frozen + adjustments + after: the books still equal today's trial balance
    assert _csv_totals(_text(closed, "csv-gl")) == _trial_totals(closed, None)
    path = tmp_path / "books.beancount"
    path.write_text(_text(closed, "beancount"), encoding="utf-8")
    checked = _run([_tool("bean-check"), str(path)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    path = tmp_path / "books.journal"
    path.write_text(_text(closed, "hledger", "transaction"), encoding="utf-8")
    checked = _run([_tool("hledger"), "-f", str(path), "check", "--strict"])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # a second late fact that changes no amount posts nothing
    _append(closed, [{**late, "id": "evt_late_again", "created": late["created"] + 5}])
    assert _text(closed, "csv-gl", "transaction", since=december[0]) == december_after


def test_a_later_close_freezes_the_adjustments_too(closed: EventStore) -> None:
    late = charge_event(2, amount=1000, created=NOVEMBER_SINCE + 3600)
    _append(closed, [late])
    everything = _text(closed, "csv-gl", "transaction")
    closing.close_period(closed.engine, "2026-12", None, False, NOW_S)
    assert _text(closed, "csv-gl", "transaction") == everything
    with closed.engine.connect() as connection:
        frozen = connection.execute(
            sa.text("SELECT COUNT(*) FROM closed_postings WHERE period = '2026-12' AND adjustment")
        ).scalar_one()
    assert frozen >= 2, "December's books hold November's adjustment"


def test_months_close_in_order_and_only_the_last_reopens(closed: EventStore) -> None:
    engine = closed.engine
    errors = {
        ("close", NOVEMBER): "already closed through 2026-11",
        ("close", "2027-01"): "close 2026-12 first",
        ("close", "2026-1"): "not a month",
        ("reopen", "2026-12"): "2026-12 is not closed",
    }
    for (action, period), message in errors.items():
        call = closing.close_period if action == "close" else closing.reopen_period
        with pytest.raises(closing.PeriodError, match=message):
            call(engine, period, None, False, NOW_S)
    with pytest.raises(closing.PeriodError, match="has not ended"):
        closing.close_period(engine, "2026-12", None, False, NOVEMBER_UNTIL + 10)
    closing.close_period(engine, "2026-12", None, False, NOW_S)
    with pytest.raises(closing.PeriodError, match="reopen 2026-12 first"):
        closing.reopen_period(engine, NOVEMBER, None, False, NOW_S)
    assert closing.reopen_period(engine, "2026-12", None, False, NOW_S) >= 0
    assert closing.reopen_period(engine, NOVEMBER, None, False, NOW_S) > 0
    with engine.connect() as connection:
        log = connection.execute(
            sa.text("SELECT period, action FROM period_close_log ORDER BY id")
        ).all()
        left = connection.execute(sa.text("SELECT COUNT(*) FROM closed_postings")).scalar_one()
        assert closing.effective_postings(connection, None, False) is None
    assert [tuple(row) for row in log] == [
        (NOVEMBER, "close"), ("2026-12", "close"), ("2026-12", "reopen"), (NOVEMBER, "reopen"),
    ]  # fmt: skip
    assert left == 0


def test_the_close_period_command(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _load(sqlite_url, [charge_event(3)])  # October 2025
    monkeypatch.setenv("LEDGER_DATABASE_URL", str(store.engine.url))
    capsys.readouterr()  # the worker's log of the load
    today = dt.datetime.now(dt.UTC)
    ended = f"{today.year - 1}-12"  # a month that has ended whenever this runs
    assert main(["close-period", ended]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"closed {ended} (platform, test mode): 2 postings frozen, sha256 "), out
    assert main(["close-period", ended]) == 2
    assert capsys.readouterr().err.strip() == (
        f"stripe-ledger close-period: error: already closed through {ended}"
    )
    assert main(["close-period", ended, "--reopen"]) == 0
    assert f"reopened {ended}" in capsys.readouterr().out


def test_the_reporting_role_exports_closed_books_and_cannot_change_them(
    postgres_url: str,
) -> None:
    store = _load(postgres_url, [charge_event(4, created=NOVEMBER_SINCE + 60)])
    closing.close_period(store.engine, NOVEMBER, None, False, NOW_S)
    analyst = f"analyst_{uuid.uuid4().hex[:8]}"
    with store.engine.connect() as connection, connection.begin():
        connection.exec_driver_sql(
            f"CREATE ROLE {analyst} LOGIN PASSWORD 'pw' IN ROLE ledger_reporting"
        )
    reader = sa.create_engine(sa.make_url(postgres_url).set(username=analyst, password="pw"))
    try:
        for fmt in export.FORMATS:
            assert export.export(reader, fmt) == export.export(store.engine, fmt), fmt
        as_of = periods.trial_balance(reader, NOVEMBER_UNTIL)
        assert as_of == periods.trial_balance(store.engine, NOVEMBER_UNTIL) and as_of[1]
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            closing.reopen_period(reader, NOVEMBER, None, False, NOW_S)
    finally:
        reader.dispose()
        with store.engine.connect() as connection, connection.begin():
            connection.exec_driver_sql(f"DROP ROLE {analyst}")
        store.engine.dispose()
