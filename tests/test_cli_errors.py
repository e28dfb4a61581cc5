"""One error path for every command: a bad or unreachable database, a missing directory or file,
a bad URL -> ``stripe-ledger CMD: error: <one line>``, exit 2, no traceback, no file created.

Every subcommand that opens a database runs against each bad configuration, in-process through
``cli.main.main`` (an uncaught exception, i.e. a traceback, fails the test)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import main as main_cli
from ledger.database import create_engine, migrate
from tests.support.factory import charge_event, encode

SECRET = "whsec_" + "e" * 32
UNREACHABLE_PASSWORD = "pw-never-shown"
BAD_DATABASES = {
    "unreachable": f"postgresql+psycopg://u:{UNREACHABLE_PASSWORD}@127.0.0.1:1/db",
    "missing_dir": "sqlite:///{tmp}/no/such/dir/x.db",
    "relative_host": "sqlite://relative.db",
    "missing_file": "sqlite:///{tmp}/missing.db",
    "not_a_url": "not a database url",
    "unsupported": "mysql://u@127.0.0.1/db",
}
# Commands whose job is to create the database: a missing SQLite file is fine for them.
CREATING = {"migrate", "serve", "copy-store"}
# Workers wait for an unreachable database (with logged backoff) instead of exiting: #RELIABILITY.
WAITING = {"consume", "consume-sqs"}
# Commands that open no database (their own errors are tested beside them).
DATABASE_FREE = {"ingest", "event-types"}


def _commands(tmp: Path) -> dict[str, list[str]]:
    return {
        "migrate": ["migrate"],
        "serve": ["serve", "--port", "9", "--no-project"],  # 0 is refused (issue 19/20)
        "consume": ["consume", "--until-idle", "0"],
        "consume-sqs": [
            "consume-sqs", "--queue-url", "http://127.0.0.1:1/000000000000/q", "--until-idle", "0",
        ],  # fmt: skip
        "dead-letters": ["dead-letters", "list"],
        "import": ["import", str(tmp / "events.jsonl")],
        "copy-store": ["copy-store", "--from", f"sqlite:///{tmp / 'source.db'}"],
        "project": ["project", "--until-idle", "0"],
        "rebuild": ["rebuild"],
        "report": ["report", "balances"],
        "verify": ["verify"],
        "backfill": ["backfill", "--since", "1h"],
        "reconcile": ["reconcile", "--since", "1h"],
        "balance-sync": ["balance-sync", "--once"],
        "thin-events": ["thin-events", "status"],
        "dashboard": ["dashboard", "--port", "0"],
        "export": ["export", "--format", "csv-gl", "--output", str(tmp / "books.csv")],
        "close-period": ["close-period", "2026-11"],
        "demo": ["demo", "--events", "10", "--url", "http://127.0.0.1:1/webhooks/stripe"],
    }


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "events.jsonl").write_bytes(encode(charge_event(1)) + b"\n")
    # Held until the test ends: an engine left to the garbage collector closes its connection
    # (and SQLite removes source.db-wal/-shm) whenever a collection runs, mid-test.
    source = create_engine(f"sqlite:///{tmp_path / 'source.db'}")
    migrate(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_" + "k" * 24)
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:1")
    monkeypatch.setenv("LEDGER_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("LEDGER_EVENTBRIDGE_SOURCES", "aws.partner/stripe.com/ed_test")
    monkeypatch.setenv("LEDGER_LOG_FORMAT", "json")
    for name in ("STRIPE_WEBHOOK_SECRET_FILE", "STRIPE_API_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    yield tmp_path
    source.dispose()


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def _cases() -> list[tuple[str, str]]:
    cases = []
    for command in _commands(Path("/")):
        for bad in BAD_DATABASES:
            if bad == "missing_file" and command in CREATING:
                continue
            if bad == "unreachable" and command in WAITING:
                continue
            cases.append((command, bad))
    return cases


def test_every_subcommand_is_covered() -> None:
    parser = main_cli.build_parser()
    (subcommands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(subcommands.choices) == set(_commands(Path("/"))) | DATABASE_FREE


@pytest.mark.parametrize(("command", "bad"), _cases())
def test_every_command_says_a_bad_database_in_one_line(
    command: str,
    bad: str,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", BAD_DATABASES[bad].format(tmp=workdir))
    before = _files(workdir)
    code = main_cli.main(_commands(workdir)[command])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"stripe-ledger {command}: error: "), err
    assert "Traceback" not in err and UNREACHABLE_PASSWORD not in out + err
    assert _files(workdir) == before  # no file created, none changed


@pytest.mark.parametrize("bad", [b for b in BAD_DATABASES if b != "unreachable"])
def test_copy_store_from_a_bad_source_creates_nothing(
    bad: str, workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = workdir / "target.db"
    monkeypatch.setenv("LEDGER_DATABASE_URL", f"sqlite:///{target}")
    source = BAD_DATABASES[bad].format(tmp=workdir)
    assert main_cli.main(["copy-store", "--from", source]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stripe-ledger copy-store: error: ") and err.count("\n") == 1, err
    assert not target.exists() and not (workdir / "missing.db").exists()


@pytest.mark.parametrize(
    "url", ["not-a-url", "ftp://127.0.0.1/webhooks", "http:///nohost", "http://127.0.0.1:99999/"]
)
def test_demo_refuses_a_bad_url(
    url: str, workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", f"sqlite:///{workdir / 'source.db'}")
    assert main_cli.main(["demo", "--events", "10", "--url", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stripe-ledger demo: error: --url") and err.count("\n") == 1, err


def test_import_of_a_missing_file(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", f"sqlite:///{workdir / 'source.db'}")
    assert main_cli.main(["import", str(workdir / "nope.jsonl")]) == 2
    assert capsys.readouterr().err == (
        f"stripe-ledger import: error: no such file: {workdir / 'nope.jsonl'}\n"
    )
