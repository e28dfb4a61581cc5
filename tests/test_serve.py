"""``stripe-ledger serve``: the embedded mode end to end, as a person runs it (a real process)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from demo.client import post_all
from demo.history import generate
from ledger.database import create_engine
from ledger.store import EventStore, open_event_store
from projections import registry
from tests.support import ingest as web
from tests.support.kafka_util import cli_env, run_cli
from tests.support.reliability import Worker, start_http_worker

SECRET = web.SECRET


@contextmanager
def _serve(database_url: str, tmp_path: Path) -> Iterator[tuple[Worker, int]]:
    """A real ``stripe-ledger serve``; on the way out SIGTERM, which must give exit status 0."""
    env = cli_env(database_url, STRIPE_WEBHOOK_SECRET=SECRET)
    worker, port = start_http_worker("serve", env, tmp_path / "serve.log")
    try:
        yield worker, port
    finally:
        if worker.alive():
            worker.signal(signal.SIGTERM)
            assert worker.wait(60) == 0, worker.log_path.read_text()


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[tuple[int, str]]:
    with _serve(database_url, tmp_path) as (_worker, port):
        yield port, database_url


def _projector_pid(worker: Worker) -> int:
    listening = [line for line in worker.log_lines() if line.get("event") == "serve_listening"]
    assert listening, worker.log_path.read_text()
    (started,) = [line for line in worker.log_lines() if line.get("event") == "ingest_started"]
    assert str(started["sink"]).startswith("store:") and "topic" not in started  # not Kafka
    return int(listening[0]["projector_pid"])


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def _caught_up(store: EventStore) -> bool:
    head = store.head_position()
    with store.engine.connect() as connection:
        return all(
            (row := registry.state(connection, p.name)) is not None and row.position >= head
            for p in registry.get()
        )


def test_a_demo_history_posted_to_serve_lands_in_the_reports(served: tuple[int, str]) -> None:
    port, url = served
    history = generate(seed=5, events=300)
    payloads = [json.dumps(d, separators=(",", ":")).encode() for d in history.deliveries]
    result = post_all(f"http://127.0.0.1:{port}/webhooks/stripe", payloads, SECRET, concurrency=4)
    assert result.ok == len(payloads) and result.failed == 0
    store = open_event_store(create_engine(url))
    assert sorted(store.event_ids()) == sorted(e["id"] for e in history.events)
    deadline = time.monotonic() + 60
    while not _caught_up(store):
        assert time.monotonic() < deadline, "the in-process projection worker did not catch up"
        time.sleep(0.1)
    env = cli_env(url)
    report = run_cli(["report", "invoices", "--format", "json"], env)
    assert report.returncode == 0, report.stderr.decode()
    invoices = json.loads(report.stdout)
    assert {row["status"] for row in invoices} >= {"paid", "void"}
    verified = run_cli(["verify"], env)
    assert verified.returncode == 0, verified.stdout.decode()


def test_200_only_after_the_commit_and_bad_input_stores_nothing(served: tuple[int, str]) -> None:
    port, url = served
    store = open_event_store(create_engine(url))
    for _ in range(5):
        body = web.event_body()
        assert web.post_webhook(port, body, web.stripe_signature(body))[0] == 200
        assert json.loads(body)["id"] in store.event_ids()  # durable when answered
        assert web.post_webhook(port, body, web.stripe_signature(body))[0] == 200  # again
    before = store.count()
    forged = web.event_body()
    assert web.post_webhook(port, forged, web.stripe_signature(forged, web.OTHER_SECRET))[0] == 400
    not_event = b'{"object": "charge", "id": "ch_1"}'
    assert web.post_webhook(port, not_event, web.stripe_signature(not_event))[0] == 400
    assert store.count() == before == 5


# -- serve lives exactly as long as its projector child ----------------------------------------


def test_serve_exits_1_when_its_projector_dies(database_url: str, tmp_path: Path) -> None:
    with _serve(database_url, tmp_path) as (worker, _port):
        os.kill(_projector_pid(worker), signal.SIGKILL)
        assert worker.wait(60) == 1
        exits = [line for line in worker.log_lines() if line.get("event") == "projector_exited"]
        assert [line["exit_code"] for line in exits] == [-9], worker.log_path.read_text()


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_the_projector_stops_when_serve_is_killed(database_url: str, tmp_path: Path) -> None:
    with _serve(database_url, tmp_path) as (worker, _port):
        child = _projector_pid(worker)
        assert not _gone(child)
        worker.kill()
        deadline = time.monotonic() + 60
        while not _gone(child):
            assert time.monotonic() < deadline, "the projector outlived a SIGKILLed serve"
            time.sleep(0.1)
