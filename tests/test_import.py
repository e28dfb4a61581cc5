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
