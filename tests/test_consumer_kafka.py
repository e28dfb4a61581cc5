"""The consumer through the real broker and the real PostgreSQL: exactly once, whatever happens."""

from __future__ import annotations

import json
import random
import signal
import sys
import time

import pytest
import sqlalchemy as sa

from ledger import consumer
from ledger.database import create_engine, migrate
from ledger.store import EventStore, open_event_store
from tests.support.factory import charge_event, encode
from tests.support.kafka_util import cli_env, create_topic, produce, run_cli, start_cli
from tests.support.tcp_proxy import TcpProxy

WAIT_S_MAX = 120


@pytest.fixture
def store(postgres_url: str) -> EventStore:
    engine = create_engine(postgres_url)
    migrate(engine)
    return open_event_store(engine)


def _records(numbers: list[int]) -> list[tuple[bytes | None, bytes]]:
    accounts = [None, "acct_1", "acct_2", "acct_3"]
    out = []
    for n in numbers:
        account = accounts[n % len(accounts)]
        out.append(((account or "platform").encode(), encode(charge_event(n, account=account))))
    return out


def _wait_for_count(store: EventStore, at_least: int) -> int:
    deadline = time.monotonic() + WAIT_S_MAX
    while time.monotonic() < deadline:
        count = store.count()
        if count >= at_least:
            return count
        time.sleep(0.05)
    raise AssertionError(f"store stuck below {at_least}")


def _log_events(stderr: bytes) -> list[dict]:
    lines = []
    for line in stderr.decode().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_duplicates_on_the_topic_are_stored_once(
    store: EventStore, postgres_url: str, kafka_bootstrap: str, topic: str
) -> None:
    create_topic(kafka_bootstrap, topic, partitions=3)
    numbers = list(range(600))
    resent = random.Random(1).sample(numbers, 200)
    produce(kafka_bootstrap, topic, _records(numbers + resent))
    # A re-send may also land in another partition (a different key): still one row.
    produce(kafka_bootstrap, topic, [(b"other", encode(charge_event(n))) for n in resent[:50]])
    env = cli_env(postgres_url, kafka_bootstrap)
    done = run_cli(["consume", "--topic", topic, "--group", "g1", "--until-idle", "3"], env)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert store.count() == 600
    assert sorted(store.event_ids()) == sorted(f"evt_test{n:08d}" for n in numbers)
    stopped = [e for e in _log_events(done.stderr) if e["event"] == "consumer_stopped"]
    assert stopped and stopped[0]["appended"] == 600 and stopped[0]["duplicates"] == 250
    assert sum(store.offsets(topic).values()) == 850


@pytest.mark.slow
def test_sigkill_mid_stream_loses_nothing_and_doubles_nothing(
    store: EventStore, postgres_url: str, kafka_bootstrap: str, topic: str
) -> None:
    total = 15_000
    create_topic(kafka_bootstrap, topic, partitions=3)
    produce(kafka_bootstrap, topic, _records(list(range(total))))
    env = cli_env(postgres_url, kafka_bootstrap)
    args = ["consume", "--topic", topic, "--group", "g-kill"]
    kills = 0
    for at_least in (1, 3000, 7000):
        worker = start_cli(args, env)
        _wait_for_count(store, at_least)
        time.sleep(random.Random(at_least).random() * 0.3)  # somewhere inside a batch
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        kills += 1
    assert kills == 3 and store.count() < total, "the kills must land before the end"
    done = run_cli([*args, "--until-idle", "5"], env, timeout_s=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert store.count() == total
    ids = store.event_ids()
    assert len(set(ids)) == total == len(ids)
    assert sum(store.offsets(topic).values()) == total


def test_a_poison_record_becomes_a_dead_letter_and_the_partition_keeps_flowing(
    store: EventStore, postgres_url: str, kafka_bootstrap: str, topic: str
) -> None:
    create_topic(kafka_bootstrap, topic, partitions=1)
    produce(
        kafka_bootstrap,
        topic,
        [
            (b"k", encode(charge_event(1))),
            (b"k", b"\xff\xfe\x00 not utf-8"),
            (b"k", b'{"object": "event", "type": "charge.succeeded"}'),
            (b"k", b"[]"),
            (b"k", encode(charge_event(2))),
        ],
    )
    done = run_cli(
        ["consume", "--topic", topic, "--group", "g-poison", "--until-idle", "3"],
        cli_env(postgres_url, kafka_bootstrap),
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert sorted(store.event_ids()) == ["evt_test00000001", "evt_test00000002"]
    letters = store.dead_letter_rows()
    assert [(r.partition, r.offset) for r in letters] == [(0, 1), (0, 2), (0, 3)]
    assert letters[0].raw == b"\xff\xfe\x00 not utf-8"
    assert "UTF-8" in letters[0].error and "'id'" in letters[1].error
    assert store.offsets(topic) == {0: 5}


def test_sigterm_finishes_the_batch_and_exits_zero(
    store: EventStore, postgres_url: str, kafka_bootstrap: str, topic: str
) -> None:
    create_topic(kafka_bootstrap, topic, partitions=2)
    produce(kafka_bootstrap, topic, _records(list(range(3000))))
    worker = start_cli(
        ["consume", "--topic", topic, "--group", "g-term"], cli_env(postgres_url, kafka_bootstrap)
    )
    _wait_for_count(store, 1)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    stored = store.count()
    offsets = sum(store.offsets(topic).values())
    assert stored == offsets, "every stored batch has its offsets, and only those"


def test_consume_refuses_an_unmigrated_database(postgres_url: str, kafka_bootstrap: str) -> None:
    done = run_cli(["consume", "--until-idle", "1"], cli_env(postgres_url, kafka_bootstrap))
    assert done.returncode == 2
    assert b"run `stripe-ledger migrate` first" in done.stderr


def test_a_database_outage_is_retried_logged_and_caught_up(
    store: EventStore, postgres_url: str, kafka_bootstrap: str, topic: str
) -> None:
    """The real PostgreSQL behind a loopback relay that we cut and restore mid-stream."""
    url = sa.make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    try:
        create_topic(kafka_bootstrap, topic, partitions=2)
        produce(kafka_bootstrap, topic, _records(list(range(500))))
        worker = start_cli(
            ["consume", "--topic", topic, "--group", "g-outage"], cli_env(proxied, kafka_bootstrap)
        )
        _wait_for_count(store, 500)
        proxy.cut()
        produce(kafka_bootstrap, topic, _records(list(range(500, 1500))))
        time.sleep(3)  # the worker meets the outage and backs off
        assert store.count() == 500
        proxy.restore()
        _wait_for_count(store, 1500)
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0
    finally:
        proxy.close()
    assert store.count() == 1500 == len(set(store.event_ids()))
    warnings = [e for e in _log_events(stderr) if _database_event(e, "unavailable")]
    assert warnings and warnings[0]["retry_in_ms"] > 0
    assert any(_database_event(e, "available") for e in _log_events(stderr))


def test_a_worker_waits_for_an_unreachable_database(kafka_bootstrap: str, topic: str) -> None:
    url = "postgresql+psycopg://ledger:ledger@127.0.0.1:1/ledger"
    worker = start_cli(["consume", "--topic", topic], cli_env(url, kafka_bootstrap))
    time.sleep(3)
    assert worker.poll() is None, "it must wait, not exit"
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0
    retries = [e for e in _log_events(stderr) if _database_event(e, "unavailable")]
    assert len(retries) >= 2


def test_store_batches_are_recorded_per_partition(
    store: EventStore, postgres_url: str, kafka_bootstrap: str, topic: str
) -> None:
    create_topic(kafka_bootstrap, topic, partitions=3)
    produce(kafka_bootstrap, topic, _records(list(range(90))))
    done = run_cli(
        ["consume", "--topic", topic, "--group", "g-coords", "--until-idle", "3"],
        cli_env(postgres_url, kafka_bootstrap),
    )
    assert done.returncode == 0
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT kafka_partition, count(*), max(kafka_offset) FROM events GROUP BY 1")
        ).all()
    assert sum(r[1] for r in rows) == 90
    assert {r[0]: r[2] + 1 for r in rows} == store.offsets(topic)


def _database_event(line: dict[str, object], state: str) -> bool:
    """A retry line of the database: dependency_unavailable / dependency_available."""
    return line.get("event") == f"dependency_{state}" and line.get("dependency") == "database"


def test_the_consumer_shortens_the_switch_interval_while_it_runs_and_restores_it(
    store: EventStore, kafka_bootstrap: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The appender thread is the pipeline's critical path: while the consumer runs, the
    polling thread gives the interpreter lock up every APPENDER_SWITCH_INTERVAL_S (not
    Python's 5 ms); afterwards the interval is what it was."""
    create_topic(kafka_bootstrap, topic, partitions=1)
    produce(kafka_bootstrap, topic, _records(list(range(40))))
    during: list[float] = []
    append = store.append

    def recording_append(*args: object, **kwargs: object) -> object:
        during.append(sys.getswitchinterval())
        return append(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "append", recording_append)
    before = sys.getswitchinterval()
    assert before > consumer.APPENDER_SWITCH_INTERVAL_S  # Python's default, 5 ms
    worker = consumer.Consumer(store, kafka_bootstrap, topic, "g-switch")
    stats = worker.run(until_idle_s=2.0)
    assert stats.appended == 40
    assert during and set(during) == {consumer.APPENDER_SWITCH_INTERVAL_S}
    assert sys.getswitchinterval() == before
