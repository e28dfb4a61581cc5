"""Read-only reporting (#20): ``report`` and ``verify`` on a SQLite file nobody may write, in a
directory nobody may write, and ``report`` as the ``ledger_reporting`` role on PostgreSQL.

Root ignores file modes, so under root the commands run in a forked child that first becomes
``nobody`` (the modules are imported before the fork: the interpreter may sit where nobody can
read). Nothing in the directory may appear or change: no -wal/-shm, no view re-creation."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
import tempfile
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cli import main as main_cli
from demo.history import generate
from ledger.database import create_engine, migrate
from ledger.envelope import event_from_dict
from ledger.store import Incoming, open_event_store, utc_now
from projections import worker
from reports.read_side import prepare_read_side

NOBODY_UID = 65534
CHILD_S_MAX = 120


def _as_reader(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """``stripe-ledger argv`` in a forked child that cannot write (nobody, when we are root)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_fd)
            if os.geteuid() == 0:
                os.setgid(NOBODY_UID)
                os.setuid(NOBODY_UID)
            os.environ.update(env)
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main_cli.main(argv)
            result = [code, out.getvalue(), err.getvalue()]
        except BaseException:  # noqa: BLE001 - a traceback is the test's failure message
            result = [99, "", traceback.format_exc()]
        os.write(write_fd, json.dumps(result).encode())
        os._exit(0)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    os.waitpid(pid, 0)
    code, out, err = json.loads(b"".join(chunks))
    return int(code), str(out), str(err)


def _projected_demo_store(url: str) -> sa.Engine:
    engine = create_engine(url)
    migrate(engine)
    prepare_read_side(engine)
    store = open_event_store(engine)
    now = utc_now()
    events = [event_from_dict(e) for e in generate(seed=5, events=200).deliveries]
    store.append([Incoming(event, "import", now) for event in events])
    worker.run(store, until_idle_s=0)
    return engine


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir()}


@pytest.fixture
def ledger_dir() -> Iterator[Path]:
    """A projected demo store in a directory the child (nobody) can read but not write."""
    top = Path(tempfile.mkdtemp(prefix="stripe-ledger-ro-"))
    top.chmod(0o755)
    directory = top / "ledger"
    directory.mkdir()
    url = f"sqlite:///{directory / 'ledger.db'}"
    _projected_demo_store(url).dispose()
    # Warm up every module the commands import, while the interpreter can still read them.
    for argv in (["report", "balances"], ["verify"]):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            os.environ["LEDGER_DATABASE_URL"] = url
            try:
                assert main_cli.main(argv) == 0
            finally:
                del os.environ["LEDGER_DATABASE_URL"]
    try:
        yield directory
    finally:
        directory.chmod(0o755)
        shutil.rmtree(top)


def _read_only(directory: Path, *, writable_dir: bool) -> dict[str, str]:
    database = directory / "ledger.db"
    for leftover in ("ledger.db-wal", "ledger.db-shm"):
        (directory / leftover).unlink(missing_ok=True)
    database.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    directory.chmod(0o777 if writable_dir else 0o555)
    return {"LEDGER_DATABASE_URL": f"sqlite:///{database}", "LEDGER_LOG_FORMAT": "json"}


@pytest.mark.parametrize("writable_dir", [False, True], ids=["read_only_dir", "read_only_file"])
def test_report_and_verify_on_a_read_only_sqlite_store(
    ledger_dir: Path, writable_dir: bool
) -> None:
    env = _read_only(ledger_dir, writable_dir=writable_dir)
    before = _snapshot(ledger_dir)
    code, out, err = _as_reader(["report", "balances", "--format", "json"], env)
    assert code == 0, err
    rows: list[dict[str, Any]] = json.loads(out)
    assert rows and {"currency", "ledger_balance"} <= set(rows[0])
    code, out, err = _as_reader(["verify"], env)
    assert code == 0, out + err
    assert "[ok] invoices = fresh fold of the store" in out, out
    assert "FAIL" not in out
    after = _snapshot(ledger_dir)
    assert after["ledger.db"] == before["ledger.db"]  # not one byte written
    if not writable_dir:
        assert after == before


def test_a_read_command_on_a_read_only_store_it_cannot_read_says_so(ledger_dir: Path) -> None:
    env = _read_only(ledger_dir, writable_dir=False)
    (ledger_dir / "ledger.db").chmod(0)  # not even readable (for nobody; root still reads)
    if os.geteuid() != 0:
        code, _, err = _as_reader(["report", "balances"], env)
        assert code == 2 and err.startswith("stripe-ledger report: error: "), err
    code, _, err = _as_reader(["import", "-"], env)  # a write is refused in one line, exit 2
    assert code == 2 and err.startswith("stripe-ledger import: error: "), err


def test_report_as_the_reporting_role(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = _projected_demo_store(postgres_url)
    analyst = f"analyst_{uuid.uuid4().hex[:8]}"
    with engine.connect() as connection, connection.begin():
        connection.exec_driver_sql(
            f"CREATE ROLE {analyst} LOGIN PASSWORD 'pw-analyst-7q' IN ROLE ledger_reporting"
        )
    reader = sa.make_url(postgres_url).set(username=analyst, password="pw-analyst-7q")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LEDGER_DATABASE_URL", reader.render_as_string(hide_password=False))
            for name in ("balances", "invoices", "disputes", "open_disputes"):
                assert main_cli.main(["report", name, "--format", "json"]) == 0
                printed = capsys.readouterr().out
                assert isinstance(json.loads(printed), list), printed[:300]
            # verify checks what the report views show, and says what it cannot check
            assert main_cli.main(["verify"]) == 0
            out = capsys.readouterr().out
            assert "verify as a reporting role" in out
            for name in ("journal entries balance", "trial balance: debits = credits",
                         "journal = balance transactions", "automatic payouts reconcile"):
                assert f"[ok] {name}" in out, out
            assert "[skip] live = fresh fold of the store: needs read access" in out
            assert "pw-analyst-7q" not in out
            with engine.begin() as connection:  # the owner breaks one entry: the role sees it
                connection.exec_driver_sql(
                    "UPDATE journal_postings_g1 SET amount = amount + 1 "
                    "WHERE entry_id = (SELECT MIN(entry_id) FROM journal_postings_g1)"
                )
            assert main_cli.main(["verify"]) == 1
            out = capsys.readouterr().out
            assert "[FAIL] journal entries balance" in out and "[FAIL] trial balance" in out
    finally:
        with engine.connect() as connection, connection.begin():
            connection.exec_driver_sql(f"DROP ROLE {analyst}")
        engine.dispose()
