"""Output for people (#20): tables fit the terminal (--wide for all), money in major units with
the currency, timestamps with their zone, --version."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli import main as main_cli
from reports import render
from tests.test_read_only import _projected_demo_store

COLUMNS = ["account", "currency", "captured", "refunded", "fees", "ledger_balance", "drift"]
ROWS = [(None, "usd", 123456, 2000, 3210, 118246, -70082), ("acct_1", "jpy", 5000, 0, 0, 5000, 0)]


def test_a_table_fits_the_width_and_names_what_it_leaves_out() -> None:
    full = render.render(COLUMNS, ROWS, "table")
    assert "1,234.56 USD" in full and "5,000 JPY" in full and "-700.82 USD" in full
    assert "not shown" not in full
    fitted = render.render(COLUMNS, ROWS, "table", width=60)
    lines = fitted.splitlines()
    assert all(len(line) <= 60 for line in lines[:-1]), fitted
    assert lines[0].split()[:3] == ["account", "currency", "captured"]
    hidden = [c for c in COLUMNS if c not in lines[0].split()]
    assert hidden and lines[-1] == (
        f"(not shown, to fit 60 columns: {', '.join(hidden)}; --wide shows all)"
    )


def test_timestamps_carry_their_zone() -> None:
    table = render.render(["invoice_id", "paid_at"], [("in_1", 1_764_547_200)], "table")
    assert "2025-12-01 00:00 UTC" in table
    assert render.machine_value("paid_at", 1_764_547_200) == "2025-12-01T00:00:00Z"


def test_report_fits_columns_unless_wide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    _projected_demo_store(url).dispose()
    capsys.readouterr()  # the worker's own log lines
    monkeypatch.setenv("LEDGER_DATABASE_URL", url)
    monkeypatch.setenv("LEDGER_LOG_FORMAT", "json")
    monkeypatch.setenv("COLUMNS", "100")
    assert main_cli.main(["report", "balances"]) == 0
    fitted = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 100 for line in fitted[:-1]), fitted
    assert "--wide" in fitted[-1]
    assert main_cli.main(["report", "balances", "--wide"]) == 0
    wide = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in wide) > 100 and "not shown" not in wide[-1]
    assert " USD" in "\n".join(wide)  # money in major units with the currency code


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main_cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"stripe-ledger {main_cli.version()}\n"
    assert main_cli.version()[0].isdigit()


def test_verify_says_how_many_stored_events_are_not_projected_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ledger.envelope import event_from_dict
    from ledger.store import Incoming, open_event_store, utc_now
    from tests.support.factory import charge_event

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = _projected_demo_store(url)
    store = open_event_store(engine)
    head = store.head_position()
    store.append(
        [Incoming(event_from_dict(charge_event(n)), "import", utc_now()) for n in range(7)]
    )
    engine.dispose()
    capsys.readouterr()
    monkeypatch.setenv("LEDGER_DATABASE_URL", url)
    monkeypatch.setenv("LEDGER_LOG_FORMAT", "json")
    main_cli.main(["verify"])
    out = capsys.readouterr().out
    assert f"projection lag (store head at position {head + 7}): " in out, out
    assert "journal 7" in out and "7 stored event(s) not projected yet" in out, out
