"""``stripe-ledger import``: the same idempotent path as the consumer, all or nothing per file."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cli import main as main_cli
from ledger.database import create_engine, migrate
from ledger.store import EventStore, open_event_store
from tests.conftest import STRIPE_FIXTURES
from tests.support.factory import charge_event, encode
from tests.support.kafka_util import cli_env, run_cli


@pytest.fixture
def store(database_url: str) -> EventStore:
    engine = create_engine(database_url)
    migrate(engine)
    return open_event_store(engine)


def _url(store: EventStore) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def test_json_lines_then_again_counts_known_events(store: EventStore, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(encode(charge_event(n)) for n in range(25)) + b"\n\n")
    first = run_cli(["import", str(path)], cli_env(_url(store)))
    assert first.returncode == 0, first.stderr.decode()
    assert b"imported 25 events: 25 new, 0 already known" in first.stdout
    second = run_cli(["import", str(path)], cli_env(_url(store)))
    assert b"imported 25 events: 0 new, 25 already known" in second.stdout
    assert store.count() == 25
    assert {e.source for e in store.read(0, 100)} == {"import"}


def test_a_json_array_from_stdin(store: EventStore) -> None:
    body = json.dumps([charge_event(n) for n in range(3)] + [charge_event(1)]).encode()
    done = run_cli(["import", "-"], cli_env(_url(store)), stdin=body)
    assert done.returncode == 0, done.stderr.decode()
    assert b"imported 4 events: 3 new, 1 already known" in done.stdout


def test_one_bad_line_imports_nothing_and_names_the_line(store: EventStore, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [encode(charge_event(n)) for n in range(5)]
    lines.insert(3, b'{"object": "event", "id": "evt_x"}')
    lines.append(b"\xff garbage")
    path.write_bytes(b"\n".join(lines))
    done = run_cli(["import", str(path)], cli_env(_url(store)))
    assert done.returncode == 2
    assert b"2 invalid event(s), nothing imported" in done.stderr
    assert b"line 4: event has no valid 'type'" in done.stderr
    assert b"line 7: payload is not valid UTF-8" in done.stderr
    assert store.count() == 0


def test_a_missing_file_is_a_clear_error(store: EventStore, tmp_path: Path) -> None:
    done = run_cli(["import", str(tmp_path / "nope.json")], cli_env(_url(store)))
    assert done.returncode == 2
    assert b"no such file" in done.stderr


def test_every_command_has_help() -> None:
    for command in ("migrate", "consume", "import"):
        done = run_cli([command, "--help"], cli_env("sqlite:///unused.db"))
        assert done.returncode == 0
        assert b"usage: stripe-ledger " + command.encode() in done.stdout


def test_copy_store_moves_the_sqlite_store_into_postgres(
    sqlite_url: str, postgres_url: str, tmp_path: Path
) -> None:
    from demo.history import generate

    source = open_event_store(create_engine(sqlite_url))
    migrate(source.engine)
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(encode(e) for e in generate(seed=3, events=200).deliveries))
    assert run_cli(["import", str(path)], cli_env(sqlite_url)).returncode == 0
    env = cli_env(postgres_url)
    first = run_cli(["copy-store", "--from", sqlite_url], env)
    assert first.returncode == 0, first.stderr.decode()
    assert f"{source.count()} new".encode() in first.stdout
    again = run_cli(["copy-store", "--from", sqlite_url], env)
    assert b" 0 new" in again.stdout
    target = open_event_store(create_engine(postgres_url))
    assert sorted(target.event_ids()) == sorted(source.event_ids())
    by_id = {e.event_id: e for e in source.read(0, 10_000)}
    for copied in target.read(0, 10_000):
        original = by_id[copied.event_id]
        assert (copied.payload, copied.source, copied.received_at) == (
            original.payload, original.source, original.received_at,
        )  # fmt: skip
    reports = []
    for url in (sqlite_url, postgres_url):
        assert run_cli(["project", "--until-idle", "0"], cli_env(url)).returncode == 0
        done = run_cli(["report", "balances", "--format", "json"], cli_env(url))
        reports.append(json.loads(done.stdout))
    assert reports[0] == reports[1] and reports[0]


# -- every shape Stripe gives, several files, conflicts (#20) ---------------------------------


def _import(
    url: str, argv: list[str], capsys: pytest.CaptureFixture[str], stdin: bytes | None = None
) -> tuple[int, str, str]:
    """``stripe-ledger import ARGV`` in-process (stdin spooled from ``stdin``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEDGER_DATABASE_URL", url)
        patch.setenv("LEDGER_LOG_FORMAT", "json")
        if stdin is not None:
            patch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = main_cli.main(["import", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_several_files_stdin_and_every_shape(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrate(create_engine(sqlite_url))
    lines = tmp_path / "a.jsonl"
    lines.write_bytes(b"\n".join(encode(charge_event(n)) for n in range(3)))
    pretty = tmp_path / "one.json"  # what the Dashboard and `stripe events retrieve` give
    pretty.write_text(json.dumps(charge_event(10), indent=2))
    listed = tmp_path / "list.json"  # GET /v1/events
    page = {"object": "list", "data": [charge_event(n) for n in (20, 21)], "has_more": False}
    listed.write_text(json.dumps(page, indent=2))
    array = tmp_path / "array.json"
    array.write_text(json.dumps([charge_event(30), charge_event(31)], indent=1))
    real = STRIPE_FIXTURES / "samples" / "37_charge.succeeded__dj-stripe.json"
    stdin = json.dumps({"object": "list", "data": [charge_event(40)]}).encode()
    argv = [str(lines), str(pretty), str(listed), str(array), str(real), "-"]
    code, out, err = _import(sqlite_url, argv, capsys, stdin=stdin)
    assert code == 0, err
    assert "imported 10 events: 10 new, 0 already known" in out
    assert open_event_store(create_engine(sqlite_url)).count() == 10


def test_errors_name_the_file_and_the_line_and_column(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrate(create_engine(sqlite_url))
    good = tmp_path / "good.jsonl"
    good.write_bytes(encode(charge_event(1)))
    broken = tmp_path / "broken.json"
    text = json.dumps(charge_event(2), indent=2).splitlines()
    text[3] = text[3].rstrip(",")  # a missing comma on line 4
    broken.write_text("\n".join(text))
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_bytes(encode(charge_event(3)) + b"\n" + b'{"id": "evt_x", "object": "event"}')
    code, out, err = _import(sqlite_url, [str(good), str(broken), str(bad_line)], capsys)
    assert code == 2 and out == ""
    assert err.startswith("stripe-ledger import: error: "), err
    assert f"{broken} file: payload is not valid JSON (line 5 column 3:" in err, err
    assert f"{bad_line} line 2: event has no valid 'type'" in err, err
    assert open_event_store(create_engine(sqlite_url)).count() == 0  # all or nothing, every file


def test_a_known_id_with_another_payload_is_a_conflict(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_event_store(create_engine(database_url))
    migrate(store.engine)
    first = tmp_path / "first.jsonl"
    first.write_bytes(encode(charge_event(1)) + b"\n" + encode(charge_event(2)))
    assert _import(database_url, [str(first)], capsys)[0] == 0
    changed = charge_event(1)
    changed["data"]["object"]["amount"] += 1
    second = tmp_path / "second.jsonl"
    second.write_bytes(
        b"\n".join([encode(changed), encode(charge_event(2)), encode(charge_event(3))])
    )
    code, out, err = _import(database_url, [str(second)], capsys)
    assert code == 2 and out == ""
    assert "1 event id(s) already stored with a different payload, nothing imported" in err
    assert "evt_test00000001" in err and store.count() == 2
    code, out, err = _import(database_url, [str(second), "--allow-conflicts"], capsys)
    assert code == 0, err
    assert "imported 3 events: 1 new, 1 already known, 1 conflicting" in out
    assert "conflict: evt_test00000001 is stored with a different payload" in err
    (stored,) = [e for e in store.read(0, 10) if e.event_id == "evt_test00000001"]
    assert stored.payload == charge_event(1)  # the stored event never changes


def test_one_id_twice_with_two_payloads_in_one_import_is_a_conflict(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrate(create_engine(sqlite_url))
    changed = charge_event(1)
    changed["created"] += 1
    path = tmp_path / "twice.json"
    path.write_text(json.dumps([charge_event(1), changed]))
    code, _, err = _import(sqlite_url, [str(path)], capsys)
    assert code == 2 and "already stored with a different payload" in err
    assert open_event_store(create_engine(sqlite_url)).count() == 0
