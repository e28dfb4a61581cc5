"""``stripe-ledger import``: the same idempotent path as the consumer, all or nothing per file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.database import create_engine, migrate
from ledger.store import EventStore
from tests.factory import charge_event, encode
from tests.kafka_util import cli_env, run_cli


@pytest.fixture
def store(database_url: str) -> EventStore:
    engine = create_engine(database_url)
    migrate(engine)
    return EventStore(engine)


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
    from cli.demo_history import generate

    source = EventStore(create_engine(sqlite_url))
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
    target = EventStore(create_engine(postgres_url))
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
