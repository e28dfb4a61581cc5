"""Signals under load, through the real processes, the real broker and the real PostgreSQL.

- SIGKILL of ingest while requests are in flight: every event answered 2xx is on the topic.
- SIGTERM of ingest, consume and project (one pipeline) and of serve: each exits 0 within
  ``STOP_S_MAX`` (an upper bound, not a speed target), nothing answered 200 is lost, stored
  offsets match the stored batches, projection checkpoints never pass the head, verify passes.
- ``project`` during a database outage (TcpProxy): backs off, logs, catches up, verify passes.

Requests are POSTed once each (no client retries), so a 2xx can only mean "durable".
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from demo.history import encode, generate
from ledger.database import create_engine, migrate
from tests.support import ingest as web
from tests.support.kafka_util import create_topic
from tests.support.reliability import (
    STOP_S_MAX,
    Db,
    Tracked,
    Worker,
    env_for,
    post_tracked,
    run,
    start_http_worker,
    topic_event_ids,
    topic_records,
    wait_until,
)
from tests.support.tcp_proxy import TcpProxy

LOAD_EVENTS = 6000  # distinct events POSTed per test (figures in docs/RELIABILITY.md)


def _bodies(seed: int, events: int = LOAD_EVENTS) -> list[tuple[str, bytes]]:
    return [(event["id"], encode(event)) for event in generate(seed, events).deliveries]


def _poster(port: int, bodies: list[tuple[str, bytes]], tracked: Tracked) -> threading.Thread:
    thread = threading.Thread(
        target=post_tracked, args=(port, bodies, web.SECRET, tracked), daemon=True
    )
    thread.start()
    return thread


@pytest.mark.slow
def test_sigkill_of_ingest_under_load_every_2xx_is_on_the_topic(
    postgres_url: str, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    create_topic(kafka_bootstrap, topic, partitions=3)
    bodies = _bodies(801)
    env = env_for(postgres_url, kafka_bootstrap, topic)
    ingest, port = start_http_worker("ingest", env, tmp_path / "ingest.log")
    tracked = Tracked()
    try:
        poster = _poster(port, bodies, tracked)
        wait_until(lambda: len(tracked.accepted()) >= 1500, "1500 accepted events")
        time.sleep(random.Random(801).uniform(0.0, 0.5))
        ingest.kill()  # SIGKILL, with requests in flight
        poster.join(120)
    finally:
        ingest.kill()
    accepted = tracked.accepted()
    unanswered = sum(1 for status in tracked.statuses.values() if status is None)
    assert 1500 <= len(accepted) < len({i for i, _ in bodies}), "the kill must land mid-load"
    assert unanswered > 0, "the kill must cut requests off"
    on_topic = set(topic_event_ids(kafka_bootstrap, topic))
    missing = accepted - on_topic
    print(f"ingest SIGKILL: accepted={len(accepted)} on_topic={len(on_topic)} missing=0")
    assert not missing, f"{len(missing)} events answered 2xx are not on the topic"


@pytest.mark.slow
def test_sigterm_of_ingest_consume_and_project_under_load_loses_nothing(
    postgres_url: str, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    create_topic(kafka_bootstrap, topic, partitions=3)
    migrate(create_engine(postgres_url))
    bodies = _bodies(802)
    env = env_for(postgres_url, kafka_bootstrap, topic)
    db = Db(postgres_url)
    consume_args = ["consume", "--topic", topic, "--group", "g-term"]
    ingest, port = start_http_worker("ingest", env, tmp_path / "ingest.log")
    consumer = Worker(consume_args, env, tmp_path / "consume-1.log")
    projector = Worker(["project"], env, tmp_path / "project-1.log")
    tracked = Tracked()
    try:
        poster = _poster(port, bodies, tracked)

        # consume: SIGTERM while batches are being stored -> exit 0, offsets = stored batches.
        wait_until(lambda: db.events() >= 500, "500 stored events")
        consumer.signal(signal.SIGTERM)
        assert consumer.wait(STOP_S_MAX) == 0, consumer.log_path.read_text()[-2000:]
        offsets = db.offsets()
        below = {i for p, o, i in topic_records(kafka_bootstrap, topic) if o < offsets.get(p, 0)}
        assert set(db.event_ids()) == below, "every stored batch has its offsets, and only those"
        assert db.distinct_events() == db.events()
        consumer = Worker(consume_args, env, tmp_path / "consume-2.log")

        # project: SIGTERM while it folds -> exit 0, checkpoints never past the head.
        wait_until(lambda: db.min_checkpoint() >= 500, "checkpoints at 500")
        projector.signal(signal.SIGTERM)
        assert projector.wait(STOP_S_MAX) == 0, projector.log_path.read_text()[-2000:]
        assert all(p <= db.head() for p in db.checkpoints().values())
        stopped = [e for e in projector.log_lines() if "signal" in e]
        assert stopped and stopped[0]["signal"] == "SIGTERM"
        projector = Worker(["project"], env, tmp_path / "project-2.log")

        # ingest: SIGTERM with requests in flight -> in-flight ones finish, exit 0.
        wait_until(lambda: len(tracked.accepted()) >= 3000, "3000 accepted events")
        ingest.signal(signal.SIGTERM)
        assert ingest.wait(STOP_S_MAX) == 0, ingest.log_path.read_text()[-2000:]
        poster.join(120)
        accepted = tracked.accepted()
        assert len(accepted) < len({i for i, _ in bodies}), "SIGTERM must land mid-load"

        # Let the restarted workers drain what is on the topic, then stop them too.
        records = len(topic_event_ids(kafka_bootstrap, topic))
        wait_until(lambda: db.offsets_sum() == records, "the consumer to drain the topic")
        wait_until(lambda: db.min_checkpoint() == db.head(), "the projections to catch up")
        for worker in (consumer, projector):
            worker.signal(signal.SIGTERM)
            assert worker.wait(STOP_S_MAX) == 0
    finally:
        for worker in (ingest, consumer, projector):
            worker.kill()
    stored = db.event_ids()
    print(f"SIGTERM pipeline: accepted={len(accepted)} stored={len(stored)} records={records}")
    assert accepted <= set(stored), f"lost: {len(accepted - set(stored))}"
    assert len(stored) == len(set(stored))
    assert set(stored) <= set(topic_event_ids(kafka_bootstrap, topic))
    assert db.dead_letters() == 0
    db.close()
    run(["verify"], env)


@pytest.mark.slow
def test_sigterm_of_serve_under_load_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    env = env_for(url)
    run(["migrate"], env)
    bodies = _bodies(803, 4000)
    serve, port = start_http_worker("serve", env, tmp_path / "serve.log")
    tracked = Tracked()
    db = Db(url)
    try:
        poster = _poster(port, bodies, tracked)
        wait_until(lambda: len(tracked.accepted()) >= 1500, "1500 accepted events")
        serve.signal(signal.SIGTERM)
        assert serve.wait(STOP_S_MAX) == 0, serve.log_path.read_text()[-2000:]
        poster.join(120)
    finally:
        serve.kill()
    accepted = tracked.accepted()
    assert len(accepted) < len({i for i, _ in bodies}), "SIGTERM must land mid-load"
    stored = db.event_ids()
    print(f"serve SIGTERM: accepted={len(accepted)} stored={len(stored)}")
    assert accepted <= set(stored), f"lost: {len(accepted - set(stored))}"
    assert len(stored) == len(set(stored))
    assert all(p <= db.head() for p in db.checkpoints().values())
    db.close()
    run(["project", "--until-idle", "1"], env)
    run(["verify"], env)


@pytest.mark.slow
def test_project_during_a_database_outage_backs_off_logs_and_catches_up(
    postgres_url: str, tmp_path: Path
) -> None:
    migrate(create_engine(postgres_url))
    env = env_for(postgres_url)
    # Small: every statement goes through the Python relay, which is far slower than the socket.
    history = generate(804, 1000).events
    first, second = history[:500], history[500:]
    files = []
    for name, part in (("first", first), ("second", second)):
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(b"".join(encode(event) + b"\n" for event in part))
        files.append(path)
    run(["import", str(files[0])], env)
    url = sa.make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    db = Db(postgres_url)
    projector = Worker(["project"], env_for(proxied), tmp_path / "project.log")
    try:
        wait_until(lambda: db.min_checkpoint() == db.head(), "the first half projected")
        proxy.cut()
        run(["import", str(files[1])], env)  # straight to the database, not through the proxy
        head = db.head()
        time.sleep(3)  # the worker meets the outage and backs off
        assert projector.alive(), "it must wait for the database, not exit"
        assert db.min_checkpoint() < head
        proxy.restore()
        wait_until(lambda: db.min_checkpoint() == head, "the projections to catch up")
        projector.signal(signal.SIGTERM)
        assert projector.wait(STOP_S_MAX) == 0
    finally:
        projector.kill()
        proxy.close()
    lines = projector.log_lines()
    retries = [e for e in lines if _database_event(e, "unavailable")]
    assert retries and all(e["retry_in_ms"] > 0 for e in retries)
    assert any(_database_event(e, "available") for e in lines), [e["event"] for e in lines]
    assert all(p == db.head() for p in db.checkpoints().values())
    db.close()
    run(["verify"], env)
    print("project outage:", json.dumps({"events": len(history), "retries": len(retries)}))


def _database_event(line: dict[str, object], state: str) -> bool:
    """A retry line of the database: dependency_unavailable / dependency_available."""
    return line.get("event") == f"dependency_{state}" and line.get("dependency") == "database"
