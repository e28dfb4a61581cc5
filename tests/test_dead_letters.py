"""``stripe-ledger dead-letters``: list, show, retry one or all; idempotent; rows kept."""

from __future__ import annotations

import json

import pytest

from cli import main as main_cli
from ledger.database import create_engine, migrate
from ledger.store import DeadLetter, EventStore, KafkaCoordinates, open_event_store, utc_now
from tests.support.factory import charge_event, encode


@pytest.fixture
def store(database_url: str, monkeypatch: pytest.MonkeyPatch) -> EventStore:
    """Three dead letters: two events an older parser refused (accepted now), one garbage."""
    store = open_event_store(create_engine(database_url))
    migrate(store.engine)
    now = utc_now()
    dead = [
        DeadLetter(encode(charge_event(1)), "old parser: unknown field", now,
                   KafkaCoordinates("stripe.events", 0, 10)),
        DeadLetter(b"\xff not json", "payload is not valid UTF-8", now,
                   KafkaCoordinates("stripe.events", 0, 11)),
        DeadLetter(encode(charge_event(2)), "old parser: unknown field", now,
                   KafkaCoordinates("stripe.events", 1, 3)),
    ]  # fmt: skip
    assert store.append([], dead=dead).dead_lettered == 3
    monkeypatch.setenv("LEDGER_DATABASE_URL", store.engine.url.render_as_string(False))
    monkeypatch.setenv("LEDGER_LOG_FORMAT", "json")
    return store


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main_cli.main(["dead-letters", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _statuses(capsys: pytest.CaptureFixture[str]) -> list[str]:
    code, out, _ = _run(["list", "--format", "json"], capsys)
    assert code == 0
    return [row["status"] for row in json.loads(out)]


def test_list_show_and_retry(store: EventStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert _statuses(capsys) == ["retriable", "refused", "retriable"]
    code, out, _ = _run(["list"], capsys)
    assert code == 0 and "(3 of 3 dead letters)" in out and "stripe.events/0@11" in out
    ids = [row["id"] for row in json.loads(_run(["list", "--format", "json"], capsys)[1])]
    code, out, _ = _run(["show", str(ids[0])], capsys)
    assert code == 0 and "evt_test00000001" in out and "old parser: unknown field" in out
    code, out, _ = _run(["retry", str(ids[0])], capsys)
    assert code == 0 and "retried: 1 appended, 0 already stored, 0 still refused" in out
    (event,) = store.read(0, 10)
    assert (event.event_id, event.source, event.kafka_offset) == ("evt_test00000001", "webhook", 10)
    code, out, _ = _run(["retry", str(ids[0])], capsys)  # idempotent
    assert code == 0 and "0 appended, 1 already stored" in out
    code, _, err = _run(["retry", str(ids[1])], capsys)
    assert code == 1 and "still refused: payload is not valid UTF-8" in err
    code, out, _ = _run(["retry", "--all"], capsys)
    assert code == 0 and "retried: 1 appended, 1 already stored, 1 still refused" in out
    assert sorted(store.event_ids()) == ["evt_test00000001", "evt_test00000002"]
    assert _statuses(capsys) == ["stored", "refused", "stored"]  # rows kept as history
    assert len(store.dead_letter_rows()) == 3


def test_unknown_ids_and_bad_limits_are_one_line_errors(
    store: EventStore, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["show", "999"], ["retry", "999"], ["list", "--limit", "0"]):
        code, _, err = _run(argv, capsys)
        assert code == 2 and err.startswith("stripe-ledger dead-letters: error: "), err
        assert err.count("\n") == 1


def test_an_eventbridge_dead_letter_from_consume_sqs_is_parsed_as_eventbridge(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.sqs_util import SOURCE, eventbridge_envelope

    store = open_event_store(create_engine(sqlite_url))
    migrate(store.engine)
    raw = json.dumps(eventbridge_envelope(charge_event(7))).encode()
    coordinates = KafkaCoordinates("sqs:stripe-events", 0, 12345)  # as consume-sqs files it
    store.append([], dead=[DeadLetter(raw, "source not configured then", utc_now(), coordinates)])
    monkeypatch.setenv("LEDGER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("LEDGER_LOG_FORMAT", "json")
    monkeypatch.delenv("LEDGER_EVENTBRIDGE_SOURCES", raising=False)
    assert _statuses(capsys) == ["refused"]  # no sources configured: cannot tell
    monkeypatch.setenv("LEDGER_EVENTBRIDGE_SOURCES", SOURCE)
    assert _statuses(capsys) == ["retriable"]
    code, out, _ = _run(["retry", "--all"], capsys)
    assert code == 0 and "retried: 1 appended" in out
    assert store.event_ids() == ["evt_test00000007"]
