"""``stripe-ledger serve``: the embedded mode end to end, as a person runs it (a real process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.demo_client import post_all
from cli.demo_history import generate
from ledger.database import create_engine
from ledger.store import EventStore
from projections import registry
from tests import test_ingest_support as web
from tests.kafka_util import ROOT, cli_env, run_cli

SECRET = web.SECRET


@dataclass
class Serve:
    port: int
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def projector_pid(self) -> int:
        for line in self.log_path.read_text().splitlines():
            if '"serve_listening"' in line:
                return int(json.loads(line)["projector_pid"])
        raise AssertionError(f"no serve_listening line: {self.log_path.read_text()}")


@contextmanager
def serve(database_url: str, tmp_path: Path) -> Iterator[Serve]:
    """A real ``stripe-ledger serve``; on the way out SIGTERM, which must give exit status 0."""
    env = cli_env(database_url, STRIPE_WEBHOOK_SECRET=SECRET)
    sock = web.free_socket()
    port = sock.getsockname()[1]
    sock.close()
    log_path = tmp_path / "serve.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        ready = web.wait_ready(port, alive=lambda: process.poll() is None)
        assert ready, log_path.read_text()
        yield Serve(port, database_url, process, log_path)
    finally:
        if process.poll() is None:
            process.terminate()
            code = process.wait(timeout=60)
            assert code == 0, log_path.read_text()
        log.close()


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[tuple[int, str]]:
    with serve(database_url, tmp_path) as running:
        yield running.port, running.url


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
    store = EventStore(create_engine(url))
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
    store = EventStore(create_engine(url))
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
    with serve(database_url, tmp_path) as running:
        os.kill(running.projector_pid(), signal.SIGKILL)
        assert running.process.wait(timeout=60) == 1
        log = running.log_path.read_text()
        assert '"projector_exited"' in log and '"exit_code": -9' in log, log


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_the_projector_stops_when_serve_is_killed(database_url: str, tmp_path: Path) -> None:
    with serve(database_url, tmp_path) as running:
        child = running.projector_pid()
        assert not _gone(child)
        running.process.kill()
        running.process.wait(timeout=60)
        deadline = time.monotonic() + 60
        while not _gone(child):
            assert time.monotonic() < deadline, "the projector outlived a SIGKILLed serve"
            time.sleep(0.1)
