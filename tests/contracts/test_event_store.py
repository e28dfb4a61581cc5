"""The event store's contract, against the interface only: each test runs on every backend."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import threading

import pytest
import sqlalchemy as sa

from ledger.envelope import parse_event
from ledger.store import DeadLetter, EventStore, Incoming, KafkaCoordinates, Wanted, utc_now
from tests.support.factory import charge_event, encode

THREAD_JOIN_S = 120


def incoming(n: int, **kwargs: object) -> Incoming:
    return Incoming(parse_event(encode(charge_event(n, **kwargs))), "webhook", utc_now())  # type: ignore[arg-type]


def test_append_then_read_in_order(store: EventStore) -> None:
    result = store.append([incoming(n) for n in range(5)])
    assert (result.appended, result.duplicates) == (5, 0)
    stored = store.read(0, 100)
    assert [e.event_id for e in stored] == [f"evt_test{n:08d}" for n in range(5)]
    positions = [e.position for e in stored]
    assert positions == sorted(positions) and len(set(positions)) == 5
    assert store.head_position() == positions[-1]
    assert store.read(positions[1], 2)[0].position == positions[2]


def test_reads_after_a_position_take_at_most_the_limit(store: EventStore) -> None:
    store.append([incoming(n) for n in range(10)])
    everything = store.read(0, 100)
    assert len(everything) == 10
    middle = everything[3].position
    page = store.read(middle, 4)
    assert [e.event_id for e in page] == [e.event_id for e in everything[4:8]]
    assert store.read(everything[-1].position, 5) == []
    assert [e.event_id for e in store.iter_events(middle, 3)] == [
        e.event_id for e in everything[4:]
    ]
    with pytest.raises(AssertionError):
        store.read(0, 0)  # a read always has a positive, bounded limit


def test_a_filtered_read_decodes_only_what_it_wants_and_keeps_every_position(
    store: EventStore,
) -> None:
    def typed(n: int) -> Incoming:
        payload = charge_event(n)
        payload["type"] = "charge.refunded" if n % 3 else "charge.succeeded"
        return Incoming(parse_event(encode(payload)), "webhook", utc_now())

    store.append([typed(n) for n in range(9)])
    everything = store.read(0, 100)
    # by type alone, and by type then a finer test on the columns (a shard's route)
    for wanted in (
        Wanted(frozenset({"charge.succeeded", "invoice.paid"})),
        Wanted(frozenset({"charge.refunded"}), lambda event: event.object_id != "ch_test00000004"),
    ):
        page = store.read(0, 100, wanted)
        assert [e.position for e in page] == [e.position for e in everything]
        for event, plain in zip(page, everything, strict=True):
            if wanted(plain):
                assert event == plain and event.decoded
            else:
                assert not event.decoded and event.payload == {}
                assert dataclasses.replace(event, payload=plain.payload, decoded=True) == plain
        assert any(e.decoded for e in page) and not all(e.decoded for e in page)


def test_stored_fields_round_trip(store: EventStore) -> None:
    item = Incoming(
        parse_event(encode(charge_event(3, account="acct_9", livemode=True, amount=1234))),
        "import",
        dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC),
        KafkaCoordinates("stripe.events", 2, 41),
    )
    store.append([item])
    (event,) = store.read(0, 10)
    assert event.type == "charge.succeeded" and event.api_version == "2026-07-29.dahlia"
    assert (event.account, event.livemode, event.source) == ("acct_9", True, "import")
    assert (event.object_type, event.object_id) == ("charge", "ch_test00000003")
    assert event.created == 1_760_000_003
    assert event.received_at == dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
    assert (event.kafka_topic, event.kafka_partition, event.kafka_offset) == (
        "stripe.events",
        2,
        41,
    )
    assert event.payload["data"]["object"]["amount"] == 1234
    assert isinstance(event.payload["data"]["object"]["amount"], int)


def test_a_known_event_id_is_a_counted_no_op(store: EventStore) -> None:
    store.append([incoming(1), incoming(2)])
    before = store.read(0, 10)
    result = store.append([incoming(2), incoming(3), incoming(3), incoming(1)])
    assert (result.appended, result.duplicates) == (1, 3)
    after = store.read(0, 10)
    assert after[:2] == before
    assert [e.event_id for e in after] == [f"evt_test{n:08d}" for n in (1, 2, 3)]


def test_duplicates_inside_one_batch_are_stored_once(store: EventStore) -> None:
    result = store.append([incoming(7), incoming(8), incoming(7), incoming(7)])
    assert (result.appended, result.duplicates) == (2, 2)
    assert [e.event_id for e in store.read(0, 10)] == ["evt_test00000007", "evt_test00000008"]
    assert store.count() == 2


def test_an_append_cannot_rewrite_a_stored_event(store: EventStore) -> None:
    store.append([incoming(1, amount=100)])
    (before,) = store.read(0, 10)
    result = store.append([incoming(1, amount=999_999)])  # same id, other content
    assert (result.appended, result.duplicates) == (0, 1)
    assert store.read(0, 10) == [before]
    assert before.payload["data"]["object"]["amount"] == 100


def test_the_database_refuses_update_and_delete(store: EventStore) -> None:
    store.append([incoming(1)])
    for statement in ("UPDATE events SET type = 'x'", "DELETE FROM events"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with store.engine.begin() as connection:
                connection.exec_driver_sql(statement)
    assert [e.type for e in store.read(0, 10)] == ["charge.succeeded"]


def test_large_batches_span_statements(store: EventStore) -> None:
    items = [incoming(n) for n in range(1200)]
    assert store.append(items).appended == 1200
    assert store.append(items).duplicates == 1200
    assert store.count() == 1200
    assert sum(1 for _ in store.iter_events(0, 250)) == 1200


def test_offsets_and_dead_letters_commit_with_the_events(store: EventStore) -> None:
    letter = DeadLetter(
        b"\xffnot json", "payload is not valid UTF-8", utc_now(), KafkaCoordinates("t", 0, 7)
    )
    result = store.append([incoming(1)], dead=[letter], offsets={("t", 0): 8, ("t", 1): 3})
    assert (result.appended, result.dead_lettered) == (1, 1)
    assert store.offsets("t") == {0: 8, 1: 3}
    (row,) = store.dead_letter_rows()
    assert (row.raw, row.topic, row.partition, row.offset) == (b"\xffnot json", "t", 0, 7)
    # Offsets never move backwards (a zombie consumer re-storing an old batch).
    store.append([], offsets={("t", 0): 5, ("t", 1): 4})
    assert store.offsets("t") == {0: 8, 1: 4}
    # The same dead letter again is not stored twice.
    assert store.append([], dead=[letter]).dead_lettered == 0


def test_a_failed_append_stores_nothing(store: EventStore) -> None:
    bad = Incoming(parse_event(encode(charge_event(2))), "webhook", utc_now())
    object.__setattr__(bad, "source", "carrier-pigeon")  # violates the CHECK / the assertion
    with pytest.raises((AssertionError, sa.exc.IntegrityError)):
        store.append([incoming(1), bad], offsets={("t", 0): 10})
    assert store.count() == 0
    assert store.offsets("t") == {}


def test_also_runs_in_the_append_transaction(store: EventStore) -> None:
    def fail(_connection: sa.Connection) -> None:
        raise RuntimeError("the reader's cursor could not be saved")

    with pytest.raises(RuntimeError, match="cursor"):
        store.append([incoming(1)], offsets={("t", 0): 3}, also=fail)
    assert store.count() == 0 and store.offsets("t") == {}
    seen: list[int] = []
    store.append([incoming(1)], also=lambda connection: seen.append(1))
    assert seen == [1] and store.count() == 1


def test_payloads_of_and_event_ids(store: EventStore) -> None:
    store.append([incoming(n, amount=100 + n) for n in range(3)])
    assert sorted(store.event_ids()) == [f"evt_test{n:08d}" for n in range(3)]
    found = store.payloads_of(["evt_test00000001", "evt_unknown"])
    assert list(found) == ["evt_test00000001"]
    assert found["evt_test00000001"]["data"]["object"]["amount"] == 101
    assert store.payloads_of([]) == {}


def test_concurrent_appenders_get_gap_free_increasing_positions(store: EventStore) -> None:
    """Distinct events appended by concurrent writers: each batch's positions are consecutive,
    and together they are every position from the first to the head, once."""
    writers, batches, per_batch = 4, 10, 5
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            for b in range(batches):
                base = (w * batches + b) * per_batch
                store.append([incoming(base + i) for i in range(per_batch)])
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=THREAD_JOIN_S)
    assert not errors
    stored = list(store.iter_events(0, 1000))
    positions = [e.position for e in stored]
    assert len(stored) == writers * batches * per_batch
    assert positions == list(range(positions[0], positions[0] + len(positions)))
    batch_of = {e.event_id: int(e.event_id[-8:]) // per_batch for e in stored}
    for batch in set(batch_of.values()):  # a batch is one transaction: its positions touch
        mine = [e.position for e in stored if batch_of[e.event_id] == batch]
        assert mine == list(range(mine[0], mine[0] + per_batch)), (batch, mine)


def test_concurrent_writers_and_a_tailing_reader_see_every_event_once(store: EventStore) -> None:
    """A tail of `position > last` must never pass over an append that commits late."""
    writers, batches, per_batch = 4, 25, 8
    expected = writers * batches * per_batch
    seen: list[str] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            rng = random.Random(w)
            for b in range(batches):
                base = (w * batches + b) * per_batch
                store.append([incoming(base + i) for i in range(per_batch)])
                if rng.random() < 0.3:
                    threading.Event().wait(rng.random() / 100)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    def tail() -> None:
        last = 0
        while True:
            finished = done.is_set()  # read before the page: a last sweep after the writers
            page = store.read(last, 50)
            seen.extend(e.event_id for e in page)
            if page:
                last = page[-1].position
            elif finished:
                return

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    reader = threading.Thread(target=tail)
    reader.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=THREAD_JOIN_S)
    done.set()
    reader.join(timeout=THREAD_JOIN_S)
    assert not errors
    assert len(seen) == expected, f"the tail saw {len(seen)} of {expected}"
    assert len(set(seen)) == expected
