"""consume-sqs against the real ElasticMQ (scripts/services.sh) with the real boto3 client.

EventBridge envelopes around real Stripe samples (tests/fixtures/eventbridge), duplicates and
shuffles, poison to the DLQ, another source refused, the queue unreachable, the database away
while the visibility is extended, SIGTERM and SIGKILL. Both databases where the store matters.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import sqlalchemy as sa

from demo.history import generate
from ledger.envelope import EnvelopeError
from ledger.eventbridge import parse_eventbridge
from ledger.sqs_consumer import dead_letter_coordinates, queue_name, region_from_queue_url
from ledger.store_postgres import APPEND_LOCK_KEY
from tests.support import sqs_util as u
from tests.support.reliability import WAIT_S_MAX, Db, Worker, json_lines, wait_until
from tests.support.tcp_proxy import TcpProxy

CHARGE = "charge.succeeded__dj-stripe.json"
ACCOUNT = "account.updated__dj-stripe.json"
SOURCES = (u.SOURCE,)


def _run(args: list[str], env: dict[str, str], log: Path, timeout_s: float = WAIT_S_MAX) -> int:
    worker = Worker(args, env, log)
    try:
        return worker.wait(timeout_s)
    except BaseException:
        worker.kill()
        raise


def _logs(log: Path) -> str:
    return log.read_text(errors="replace")


def _migrated(database_url: str, tmp_path: Path) -> None:
    code = _run(["migrate"], u.worker_env(database_url), tmp_path / "migrate.log", 120)
    assert code == 0, _logs(tmp_path / "migrate.log")


@pytest.fixture
def queue(sqs: Any) -> Iterator[u.Queue]:
    with u.make_queue(sqs, visibility_timeout_s=30, max_receives=3) as made:
        yield made


# -- the envelope, no server -------------------------------------------------------------


def test_a_real_sample_in_an_eventbridge_envelope_is_that_stripe_event() -> None:
    detail = u.sample(CHARGE)
    event = parse_eventbridge(u.body(detail).encode(), SOURCES)
    assert event.event_id == "evt_16YKQi2eZvKYlo2CT2oe5ff3"  # the Stripe id, not EventBridge's
    assert (event.type, event.object_type, event.account) == ("charge.succeeded", "charge", None)
    assert event.payload == detail
    connect = parse_eventbridge(u.body(u.sample(ACCOUNT)).encode(), SOURCES)
    assert connect.account == "acct_1Fg9jUA3kq9o1aTc"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "not an EventBridge event"),
        (json.dumps({"source": u.SOURCE, "detail-type": "x"}).encode(), "no 'detail'"),
        (json.dumps({"detail": {}}).encode(), "no 'source'"),
        (u.body(u.sample(CHARGE), u.OTHER_SOURCE).encode(), "not a configured Stripe partner"),
        (u.body({"object": "event", "id": "evt_1"}).encode(), "no valid 'type'"),
    ],
)
def test_what_is_not_a_stripe_event_from_the_source_is_refused(raw: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        parse_eventbridge(raw, SOURCES)


def test_queue_urls_and_dead_letter_keys() -> None:
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/stripe-events"
    assert (queue_name(url), region_from_queue_url(url)) == ("stripe-events", "eu-west-1")
    assert region_from_queue_url("http://127.0.0.1:59324/000000000000/q") is None
    first = dead_letter_coordinates("q", "d29077d3-c1b6-44e2-9dfd-20b46c732e94")
    assert first == dead_letter_coordinates("q", "d29077d3-c1b6-44e2-9dfd-20b46c732e94")
    assert first != dead_letter_coordinates("q", "e29077d3-c1b6-44e2-9dfd-20b46c732e94")
    assert first.topic == "sqs:q" and 0 <= first.offset < 2**63


# -- consume-sqs with the real ElasticMQ -------------------------------------------------


def test_samples_duplicated_and_shuffled_are_stored_once_and_deleted(
    database_url: str,
    queue: u.Queue,
    sqs_endpoint: str,
    tmp_path: Path,
) -> None:
    _migrated(database_url, tmp_path)
    history = generate(seed=16, events=300)
    details = [u.sample(CHARGE), u.sample(ACCOUNT), *history.deliveries]
    bodies = [u.body(d) for d in details] * 2  # EventBridge duplicates: new envelope ids
    random.Random(16).shuffle(bodies)
    assert queue.send(bodies) == len(bodies)
    log = tmp_path / "consume.log"
    code = _run(
        u.consume_args(queue, sqs_endpoint, "--until-idle", "3"), u.worker_env(database_url), log
    )
    assert code == 0, _logs(log)
    db = Db(database_url)
    try:
        expected = {d["id"] for d in details}
        assert sorted(db.event_ids()) == sorted(expected)  # each once: nothing lost or doubled
        assert db.dead_letters() == 0
        assert db.value(
            "SELECT account FROM events WHERE event_id = 'evt_1Itt6eB9wPxT0ovY3LLhi5bw'"
        ) == ("acct_1Fg9jUA3kq9o1aTc")
    finally:
        db.close()
    assert queue.count() == 0  # every message deleted after the commit
    assert queue.count(queue.dlq_url) == 0


def test_poison_and_other_sources_reach_the_dlq_and_are_one_dead_letter_each(
    sqs: Any,
    sqlite_url: str,
    sqs_endpoint: str,
    tmp_path: Path,
) -> None:
    _migrated(sqlite_url, tmp_path)
    with u.make_queue(sqs, visibility_timeout_s=1, max_receives=2) as queue:
        good = u.sample(CHARGE)
        queue.send(["not json", u.body(u.sample(ACCOUNT), u.OTHER_SOURCE), u.body(good)])
        log = tmp_path / "consume.log"
        args = u.consume_args(queue, sqs_endpoint, "--visibility-timeout", "1", "--until-idle", "5")
        assert _run(args, u.worker_env(sqlite_url), log) == 0, _logs(log)
        dlq = queue.dlq_bodies()
        assert queue.count() == 0
    assert len(dlq) == 2 and "not json" in dlq, dlq
    assert any(u.OTHER_SOURCE in text for text in dlq)
    db = Db(sqlite_url)
    try:
        assert db.event_ids() == [good["id"]]  # the other source's event is NOT stored
        assert db.dead_letters() == 2  # received twice each, recorded once each
        with db.engine.connect() as connection:
            errors = sorted(
                r[0] for r in connection.exec_driver_sql("SELECT error FROM dead_letters")
            )
    finally:
        db.close()
    assert "not valid JSON" in errors[0] and "not a configured Stripe partner" in errors[1], errors
    lines = json_lines(log.read_bytes())
    batches = [line for line in lines if line.get("event") == "sqs_batch_stored"]
    assert sum(line["dead_lettered"] for line in batches) == 2  # rows: once per message
    assert sum(line["left_for_redrive"] for line in batches) == 4  # receives: 2 x 2


def _history_bodies(seed: int, events: int) -> tuple[list[str], set[str]]:
    history = generate(seed=seed, events=events)
    return [u.body(d) for d in history.deliveries], {d["id"] for d in history.events}


def _count_events(database_url: str) -> int:
    db = Db(database_url)
    try:
        return db.events()
    finally:
        db.close()


def _assert_exactly(database_url: str, expected: set[str]) -> None:
    db = Db(database_url)
    try:
        ids = db.event_ids()
        assert len(ids) == len(set(ids))  # nothing twice
        assert set(ids) == expected, (len(expected - set(ids)), "lost")
        assert db.dead_letters() == 0
    finally:
        db.close()


def test_sigkill_at_any_moment_loses_nothing_and_stores_nothing_twice(
    postgres_url: str, sqs: Any, sqs_endpoint: str, tmp_path: Path
) -> None:
    """SIGKILL consume-sqs again and again mid-flow (between receive, commit and delete);
    the messages it held come back after their visibility timeout."""
    _migrated(postgres_url, tmp_path)
    bodies, expected = _history_bodies(seed=161, events=2500)
    with u.make_queue(sqs, visibility_timeout_s=2, max_receives=50) as queue:
        queue.send(bodies)
        env = u.worker_env(postgres_url)
        args = u.consume_args(queue, sqs_endpoint, "--batch", "50", "--visibility-timeout", "2")
        rng = random.Random(16)
        for kill in range(6):
            worker = Worker(args, env, tmp_path / f"consume-{kill}.log")
            before = _count_events(postgres_url)
            wait_until(lambda: _count_events(postgres_url) > before, "progress")  # noqa: B023
            time.sleep(rng.uniform(0.0, 0.4))
            worker.kill()  # SIGKILL, by its own pid
        last = tmp_path / "consume-last.log"
        assert _run([*args, "--until-idle", "5"], env, last) == 0, _logs(last)
        _assert_exactly(postgres_url, expected)
        assert queue.count() == 0
        assert queue.count(queue.dlq_url) == 0


def test_queue_unreachable_is_retried_and_nothing_is_lost(
    sqlite_url: str, queue: u.Queue, sqs_endpoint: str, tmp_path: Path
) -> None:
    _migrated(sqlite_url, tmp_path)
    endpoint = urlparse(sqs_endpoint)
    proxy = TcpProxy(endpoint.hostname or "127.0.0.1", endpoint.port or 80)
    bodies, expected = _history_bodies(seed=162, events=300)
    log = tmp_path / "consume.log"
    worker = Worker(
        u.consume_args(queue, f"http://127.0.0.1:{proxy.port}", "--until-idle", "60"),
        u.worker_env(sqlite_url),
        log,
    )
    try:
        queue.send(bodies[:100])
        wait_until(lambda: _count_events(sqlite_url) > 0, "the first events")
        proxy.cut()
        queue.send(bodies[100:])  # straight to the server: the worker cannot see it
        wait_until(lambda: '"dependency": "sqs queue"' in _logs(log), "a logged retry")
        assert worker.alive()
        proxy.restore()
        wait_until(lambda: queue.count() == 0, "the queue drained", timeout_s=120)
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0, _logs(log)
    finally:
        worker.kill()
        proxy.close()
    _assert_exactly(sqlite_url, expected)


def test_visibility_is_extended_while_the_batch_waits_for_its_commit(
    postgres_url: str, sqs: Any, sqs_endpoint: str, tmp_path: Path
) -> None:
    """The batch's append waits (another session holds the store's append lock) far longer than
    its visibility timeout: the heartbeat keeps its messages invisible (no other receiver gets
    them, none reaches the DLQ after 2 receives); once the lock is released the batch is stored
    and deleted, and SIGTERM ends the worker with 0."""
    _migrated(postgres_url, tmp_path)
    bodies, expected = _history_bodies(seed=163, events=200)
    log = tmp_path / "consume.log"
    holder = sa.create_engine(postgres_url, poolclass=sa.NullPool)
    with (
        u.make_queue(sqs, visibility_timeout_s=2, max_receives=2) as queue,
        holder.connect() as lock,
    ):
        queue.send(bodies)
        lock.exec_driver_sql(f"SELECT pg_advisory_lock({APPEND_LOCK_KEY})")
        args = u.consume_args(queue, sqs_endpoint, "--batch", "1000", "--visibility-timeout", "2")
        worker = Worker(args, u.worker_env(postgres_url), log)
        try:
            wait_until(lambda: "visibility_extended" in _logs(log), "a heartbeat")
            time.sleep(7)  # > 3 visibility timeouts
            stolen = sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10)
            assert not stolen.get("Messages"), "the batch became visible while in flight"
            assert _count_events(postgres_url) == 0
            lock.exec_driver_sql(f"SELECT pg_advisory_unlock({APPEND_LOCK_KEY})")
            wait_until(lambda: queue.count() == 0, "the batch stored and deleted")
            worker.signal(signal.SIGTERM)
            assert worker.wait(30) == 0, _logs(log)
        finally:
            worker.kill()
        assert queue.count(queue.dlq_url) == 0
    holder.dispose()
    _assert_exactly(postgres_url, expected)


@pytest.mark.kafka
def test_via_kafka_every_event_reaches_the_topic_then_the_store_once(
    sqlite_url: str,
    queue: u.Queue,
    sqs_endpoint: str,
    kafka_bootstrap: str,
    topic: str,
    tmp_path: Path,
) -> None:
    _migrated(sqlite_url, tmp_path)
    bodies, expected = _history_bodies(seed=164, events=200)
    queue.send([*bodies, *bodies[:50], "not json"])  # EventBridge duplicates, one poison
    env = u.worker_env(sqlite_url, LEDGER_KAFKA_BOOTSTRAP=kafka_bootstrap, LEDGER_KAFKA_TOPIC=topic)
    log = tmp_path / "consume-sqs.log"
    args = u.consume_args(queue, sqs_endpoint, "--via-kafka", "--until-idle", "3")
    assert _run(args, env, log) == 0, _logs(log)
    assert queue.count() == 1  # the poison message, left for the redrive
    db = Db(sqlite_url)
    try:
        assert db.events() == 0 and db.dead_letters() == 1  # events went to Kafka, not here
    finally:
        db.close()
    consume_log = tmp_path / "consume.log"
    assert _run(["consume", "--until-idle", "5"], env, consume_log) == 0, _logs(consume_log)
    db = Db(sqlite_url)
    try:
        ids = db.event_ids()
    finally:
        db.close()
    assert len(ids) == len(set(ids)) and set(ids) == expected


def test_bad_configuration_is_one_clear_line_and_exit_2(
    sqlite_url: str, sqs_endpoint: str, tmp_path: Path
) -> None:
    _migrated(sqlite_url, tmp_path)
    missing = f"{sqs_endpoint}/000000000000/no-such-queue-{tmp_path.name[-8:]}"
    base = ["consume-sqs", "--endpoint-url", sqs_endpoint, "--wait-time", "1", "--until-idle", "1"]
    env = u.worker_env(sqlite_url)
    env.pop("LEDGER_EVENTBRIDGE_SOURCES", None)
    no_credentials = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    no_credentials["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    no_credentials["AWS_CONFIG_FILE"] = str(tmp_path / "none")
    no_credentials["AWS_EC2_METADATA_DISABLED"] = "true"
    cases = [
        (["--queue-url", missing], env, "LEDGER_EVENTBRIDGE_SOURCES is not set"),
        (
            ["--queue-url", missing, "--source", "aws.partner/other.com/x"],
            env,
            "not a Stripe partner",
        ),
        (["--queue-url", "not a url", "--source", u.SOURCE], env, "not an SQS queue URL"),
        (["--queue-url", missing, "--source", u.SOURCE], env, "SQS refused the request"),
        (["--queue-url", missing, "--source", u.SOURCE], no_credentials, "cannot make the request"),
    ]
    for index, (extra, case_env, message) in enumerate(cases):
        log = tmp_path / f"case-{index}.log"
        assert _run([*base, *extra], case_env, log, 120) == 2, _logs(log)
        errors = [line for line in _logs(log).splitlines() if line.startswith("stripe-ledger")]
        assert len(errors) == 1 and message in errors[0], _logs(log)
        assert "Traceback" not in _logs(log)
        assert "test-secret" not in _logs(log)
