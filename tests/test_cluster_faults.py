"""Fault tests against a replicated Kafka cluster (issue 17): three KRaft brokers on loopback,
replication factor 3, ``min.insync.replicas=2`` (scripts/services.sh ``start-cluster``).

- A broker SIGKILLed and restarted while signed webhooks flow through ``ingest``: every event
  answered 2xx is stored exactly once; while two brokers are down ingest answers 503, never 2xx.
- Three ``consume`` processes in one group, SIGKILLed at random moments (10 kills in all) during a
  50,000-event flow over 6 partitions: 0 lost, 0 doubled, and the offsets stored in the database
  never behind what the store holds (checked at every kill and at the end).

Real processes, real brokers, every wait bounded (never asserted as a speed). docs/SCALING.md
says what each proves.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from ledger.database import create_engine, migrate
from tests.support import ingest as web
from tests.support.cluster import Cluster, held_cluster, services, services_run
from tests.support.factory import charge_event, encode
from tests.support.kafka_util import produce
from tests.support.reliability import (
    STOP_S_MAX,
    WAIT_S_MAX,
    Db,
    Worker,
    env_for,
    topic_record_count,
    wait_until,
)

POSTERS = 6  # client threads: enough answers per second while each waits out a 5 s send timeout
POST_PAUSE_S = 0.01  # per request and thread: a steady flow that leaves the 2 cores to the rest
ANSWERS_PER_PHASE_MIN = 100  # 2xx answers to see before and after each change of the cluster
TWO_DOWN_HOLD_S = 10.0  # how long two brokers stay down (each request there waits out 5 s)
TWO_DOWN_ANSWERS_MIN = 6  # answers to see in that window, so that the window was exercised
REPOSTED_MAX = 50  # events refused in the window, sent again after the recovery (as Stripe does)
GROUP_EVENTS = int(os.environ.get("LEDGER_CLUSTER_GROUP_EVENTS", "50000"))
GROUP_PARTITIONS = 6
GROUP_CONSUMERS = 3
GROUP_KILLS = 10
PRODUCE_CHUNK_EVENTS = 500
PRODUCE_PAUSE_S = 0.2  # between chunks: about 2,000 events/s, a flow the kills land inside
KILL_JITTER_S = 1.0  # a kill comes up to this long after the group stores again
SEED = 20261202


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with held_cluster() as held:
        yield held


# ------------------------------------------------------------------------------ the script
@pytest.mark.slow
def test_up_with_three_brokers_prints_the_database_and_the_three_brokers(cluster: Cluster) -> None:
    lines = services("up", "--kafka-brokers", "3").splitlines()
    assert len(lines) == 2 and lines[0].startswith("export LEDGER_DATABASE_URL="), lines
    assert lines[1] == f"export LEDGER_KAFKA_BOOTSTRAP={cluster.bootstrap}"


def test_up_refuses_a_broker_count_it_does_not_run() -> None:
    done = services_run("up", "--kafka-brokers", "2")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines()[-1] == (
        "[services] ERROR: --kafka-brokers is 1 (the default) or 3 (got '2')"
    )


# -------------------------------------------------------------------- broker loss under ingest
@dataclass
class Answer:
    event_id: str
    sent_at: float  # time.monotonic() when the request was sent
    answered_at: float
    status: int | None  # None: no answer (connection error or client timeout)


@dataclass
class Poster:
    """``POSTERS`` threads POSTing fresh signed events to ingest until stopped; answers kept."""

    port: int
    answers: list[Answer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    bodies: dict[str, bytes] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(POSTERS)]
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(web.WAIT_S_MAX * 2)  # post_webhook bounds each request by WAIT_S_MAX
            assert not thread.is_alive(), "a poster thread hung past its request timeout"

    def post(self, event_id: str, body: bytes) -> Answer:
        """One signed POST on its own connection; the answer (None: no answer at all)."""
        sent_at = time.monotonic()
        status: int | None = None
        try:
            status, _body = web.post_webhook(self.port, body, web.stripe_signature(body))
        except (OSError, http.client.HTTPException, ValueError):
            pass
        return Answer(event_id, sent_at, time.monotonic(), status)

    def _run(self) -> None:
        while not self.stop.is_set():
            event = web.event_dict("charge.succeeded", account=f"acct_{random.randrange(9)}")
            body = json.dumps(event, separators=(",", ":")).encode()
            answer = self.post(event["id"], body)
            with self.lock:
                self.bodies[event["id"]] = body
                self.answers.append(answer)
            time.sleep(POST_PAUSE_S)

    def snapshot(self) -> list[Answer]:
        with self.lock:
            return list(self.answers)

    def accepted_after(self, since: float) -> int:
        return sum(1 for a in self.snapshot() if a.sent_at >= since and _ok(a.status))


def _ok(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def _stored_ids(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [str(r[0]) for r in conn.execute(sa.text("SELECT event_id FROM events"))]
    finally:
        engine.dispose()


def _prepared(cluster: Cluster, database_url: str, topic: str) -> dict[str, str]:
    """A 6-partition topic on the three brokers, a migrated database; the CLI's environment."""
    cluster.create_topic(topic, GROUP_PARTITIONS)
    migrate(create_engine(database_url))
    return env_for(database_url, cluster.bootstrap, topic)


def _wait_accepted(poster: Poster, since: float, what: str) -> None:
    wait_until(lambda: poster.accepted_after(since) >= ANSWERS_PER_PHASE_MIN, what, WAIT_S_MAX)


@pytest.mark.slow
def test_a_broker_sigkilled_and_restarted_under_ingest_loses_nothing_and_two_down_answer_503(
    cluster: Cluster, postgres_url: str, topic: str, tmp_path: Path
) -> None:
    env = _prepared(cluster, postgres_url, topic)
    marks: dict[str, float] = {}
    with web.serve_cli(env, tmp_path / "ingest.log") as port:
        poster = Poster(port)
        poster.start()
        try:
            _wait_accepted(poster, 0.0, "2xx answers with three brokers")
            cluster.kill_broker(1)
            marks["one_down"] = time.monotonic()
            _wait_accepted(poster, marks["one_down"], "2xx answers with broker 1 killed")
            cluster.kill_broker(2)
            marks["two_down"] = time.monotonic()  # broker 2's process is gone from here on
            wait_until(
                lambda: (
                    time.monotonic() - marks["two_down"] >= TWO_DOWN_HOLD_S
                    and _answered_between(poster, marks["two_down"], time.monotonic())
                    >= TWO_DOWN_ANSWERS_MIN
                ),
                "answers while two brokers are down",
            )
            marks["restart"] = time.monotonic()
            cluster.start_all()  # both launched at once, then waited for: half the wait
            marks["all_up"] = time.monotonic()
            _wait_accepted(poster, marks["all_up"], "2xx answers after the restart")
        finally:
            poster.finish()
        answers = poster.snapshot()
        refused = [
            a.event_id for a in answers if a.sent_at >= marks["two_down"] and not _ok(a.status)
        ]
        # Stripe retries what was not acknowledged: a few of those, now that the cluster is back.
        reposted = [poster.post(i, poster.bodies[i]) for i in refused[:REPOSTED_MAX]]

    window = [
        a for a in answers if marks["two_down"] <= a.sent_at and a.answered_at < marks["restart"]
    ]
    figures = {
        "answers": len(answers),
        "accepted": sum(_ok(a.status) for a in answers),
        "two_down_answers": len(window),
        "two_down_statuses": sorted({str(a.status) for a in window}),
        "reposted": len(reposted),
        "phases_s": {k: round(v - marks["one_down"], 1) for k, v in marks.items()},
    }
    print("broker-loss figures:", json.dumps(figures), flush=True)
    assert len(window) >= TWO_DOWN_ANSWERS_MIN, figures
    assert all(a.status == 503 for a in window), figures  # refused, never 2xx, never silent
    assert all(_ok(a.status) for a in reposted), [a.status for a in reposted]

    _drain(env, postgres_url, cluster.bootstrap, topic, tmp_path / "drain.log")
    stored = _stored_ids(postgres_url)
    accepted = {a.event_id for a in answers if _ok(a.status)} | {a.event_id for a in reposted}
    assert len(stored) == len(set(stored)), "an event stored twice"
    assert accepted <= set(stored), f"lost: {len(accepted - set(stored))} of {len(accepted)}"
    assert set(stored) <= set(poster.bodies), "nothing but the events sent"


def _drain(env: dict[str, str], url: str, bootstrap: str, topic: str, log_path: Path) -> None:
    """``consume`` into the scratch database until its offsets reach the end of every partition.

    Not ``--until-idle``: just after a restart the group's coordinator may take longer to answer
    than the idle window (the offsets topic is replicated too), and an idle exit would drain
    nothing (it did once, under load).
    """
    records = topic_record_count(bootstrap, topic)
    db = Db(url)
    worker = Worker(["consume", "--topic", topic, "--group", "g-drain"], env, log_path)
    try:
        wait_until(lambda: db.offsets_sum() >= records, f"consume to reach {records} offsets")
        worker.signal(signal.SIGTERM)
        assert worker.wait(STOP_S_MAX) == 0, log_path.read_text()[-2000:]
    finally:
        worker.kill()
        db.close()


def _answered_between(poster: Poster, start: float, end: float) -> int:
    return sum(1 for a in poster.snapshot() if a.sent_at >= start and a.answered_at <= end)


# ------------------------------------------------------------- a consumer group under SIGKILLs
def _offsets_behind(db: Db, topic: str) -> list[tuple[int, int, int | None]]:
    """Partitions whose stored next offset is not past the highest offset the store holds.

    One statement, so one snapshot: the consumer commits its events and its offsets in one
    transaction, and a reader must never see the events without the offsets that cover them.
    """
    sql = sa.text(
        "SELECT e.kafka_partition, max(e.kafka_offset), o.next_offset FROM events e"
        " LEFT JOIN kafka_offsets o ON o.topic = e.kafka_topic"
        " AND o.partition = e.kafka_partition"
        " WHERE e.kafka_topic = :topic GROUP BY e.kafka_partition, o.next_offset"
    )
    with db.engine.connect() as conn:
        rows = conn.execute(sql, {"topic": topic}).all()
    return [(int(p), int(top), o) for p, top, o in rows if o is None or int(o) <= int(top)]


def _stored_more_than(db: Db, count: int) -> Callable[[], bool]:
    return lambda: db.events() > count


@dataclass
class PacedProducer:
    """Produces the events in chunks, at a steady rate and never more than (kills done + 1) /
    (kills + 1) of them ahead of the kills: every kill lands while events still arrive, and the
    last part is produced after the last kill, whatever the machine's speed."""

    bootstrap: str
    topic: str
    kills_done: Callable[[], int]
    produced: int = 0
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            chunks = GROUP_EVENTS // PRODUCE_CHUNK_EVENTS
            deadline = time.monotonic() + WAIT_S_MAX * 2
            for chunk in range(chunks):
                while chunk >= chunks * (self.kills_done() + 1) // (GROUP_KILLS + 1):
                    assert time.monotonic() < deadline, "the kill loop stalled"
                    time.sleep(0.05)
                start = chunk * PRODUCE_CHUNK_EVENTS
                self.produced += produce(self.bootstrap, self.topic, _records(start))
                time.sleep(PRODUCE_PAUSE_S)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            self.error = error
        finally:
            self.done.set()


def _records(start: int) -> Iterator[tuple[bytes, bytes]]:
    for n in range(start, start + PRODUCE_CHUNK_EVENTS):
        account = f"acct_{n % 24}"  # 24 keys over 6 partitions
        yield account.encode(), encode(charge_event(n, account=account))


def _assert_each_record_stored_once(
    db: Db,
    topic: str,
    producer: PacedProducer,
    kills: list[dict[str, object]],
    victims: list[int],
    elapsed_s: float,
) -> None:
    """The group's end state: every produced record stored once, under its own coordinates,
    the offsets at the topic's end, every kill mid-stream (figures printed for the note)."""
    expected = {f"evt_test{n:08d}" for n in range(GROUP_EVENTS)}
    stored = db.event_ids()
    coordinates = int(
        db.value(
            "SELECT count(*) FROM (SELECT DISTINCT kafka_partition, kafka_offset FROM events) c"
        )
    )
    figures = {
        "events": GROUP_EVENTS,
        "produced": producer.produced,
        "stored": len(stored),
        "lost": len(expected - set(stored)),
        "doubled": len(stored) - len(set(stored)),
        "offsets_sum": db.offsets_sum(),
        "sigkills": len(kills),
        "sigkills_while_producing": sum(bool(k["producing"]) for k in kills),
        "victims": victims,
        "elapsed_s": round(elapsed_s, 1),
    }
    print("consumer-group figures:", json.dumps(figures), flush=True)
    assert producer.produced == GROUP_EVENTS, figures
    assert len(kills) == GROUP_KILLS and figures["sigkills_while_producing"] == GROUP_KILLS, figures
    assert figures["lost"] == 0 and figures["doubled"] == 0 and set(stored) == expected, figures
    assert coordinates == GROUP_EVENTS, "one record, one row"
    assert db.offsets_sum() == GROUP_EVENTS, "every record consumed, no offset past the end"
    assert _offsets_behind(db, topic) == []
    assert db.dead_letters() == 0


@pytest.mark.slow
def test_three_consumers_of_one_group_sigkilled_ten_times_lose_and_double_nothing(
    cluster: Cluster, postgres_url: str, topic: str, tmp_path: Path
) -> None:
    env = _prepared(cluster, postgres_url, topic)
    db = Db(postgres_url)
    rng = random.Random(SEED)
    # Each of the three is killed at least three times; the tenth victim is drawn.
    victims = [n % GROUP_CONSUMERS for n in range(GROUP_KILLS - 1)] + [rng.randrange(3)]
    rng.shuffle(victims)
    incarnations = [0] * GROUP_CONSUMERS
    kills: list[dict[str, object]] = []

    def start(slot: int) -> Worker:
        incarnations[slot] += 1
        log_path = tmp_path / f"consume-{slot}-{incarnations[slot]}.log"
        return Worker(["consume", "--topic", topic, "--group", "g-cluster"], env, log_path)

    producer = PacedProducer(cluster.bootstrap, topic, lambda: len(kills))
    producer_thread = threading.Thread(target=producer.run, daemon=True)
    workers = [start(slot) for slot in range(GROUP_CONSUMERS)]
    producer_thread.start()
    started_at = time.monotonic()
    try:
        for victim in victims:
            before = db.events()
            # Only once the group stores again (the last kill's rebalance is over): each kill
            # lands mid-stream, not in a group that is still rejoining.
            wait_until(_stored_more_than(db, before), "the group storing again")
            time.sleep(rng.uniform(0.0, KILL_JITTER_S))
            behind_before = _offsets_behind(db, topic)
            stored_before = db.events()
            worker = workers[victim]
            assert worker.alive(), worker.log_path.read_text()[-2000:]
            worker.kill()
            behind_after = _offsets_behind(db, topic)
            kills.append(
                {"victim": victim, "stored": stored_before, "producing": not producer.done.is_set()}
            )
            assert behind_before == [] and behind_after == [], (behind_before, behind_after)
            workers[victim] = start(victim)
        producer_thread.join(WAIT_S_MAX * 2)
        assert producer.done.is_set() and producer.error is None, producer.error
        wait_until(lambda: db.events() >= GROUP_EVENTS, "the group to store every event")
        wait_until(lambda: db.offsets_sum() >= GROUP_EVENTS, "the offsets of every record")
        elapsed_s = time.monotonic() - started_at
        for worker in workers:
            worker.signal(signal.SIGTERM)
        for worker in workers:
            assert worker.wait(STOP_S_MAX) == 0, worker.log_path.read_text()[-2000:]
    finally:
        for worker in workers:
            worker.kill()

    _assert_each_record_stored_once(db, topic, producer, kills, victims, elapsed_s)
    db.close()
