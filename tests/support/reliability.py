"""Helpers for the reliability tests (no tests here): real processes, a tracking poster, checks.

Everything is loopback and bounded: every wait has a deadline (never asserted as a speed), every
process is stopped by its own pid at the end.
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from kafka import KafkaConsumer, TopicPartition

from demo.client import sign
from tests.conftest import fresh_postgres
from tests.support import ingest as web

ROOT = Path(__file__).resolve().parent.parent.parent
CLI = [sys.executable, "-m", "cli.main"]
WAIT_S_MAX = 180.0  # bounds every wait below; never asserted on
STOP_S_MAX = 30.0  # the upper bound a worker has to exit after SIGTERM (asserted)


def free_port() -> int:
    sock = web.free_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


class Worker:
    """One CLI process with its stdout+stderr in a log file (a pipe could fill up and block it)."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.args = list(args)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self.process = subprocess.Popen(
            [*CLI, *self.args], env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            if self.process.returncode is not None:
                self._log.close()

    def kill(self) -> None:
        """SIGKILL this process (by its own pid) and reap it."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=WAIT_S_MAX)
        self._log.close()

    def log_lines(self) -> list[dict[str, Any]]:
        return json_lines(self.log_path.read_bytes())


def json_lines(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for line in raw.decode("utf-8", "replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S_MAX) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_http_worker(
    command: str, env: dict[str, str], log_path: Path, extra: Sequence[str] = ()
) -> tuple[Worker, int]:
    """``stripe-ledger ingest|serve --port N``; returns once /readyz answers 200."""
    port = free_port()
    worker = Worker([command, "--port", str(port), *extra], env, log_path)
    if web.wait_ready(port, alive=worker.alive):
        return worker, port
    if not worker.alive():
        raise RuntimeError(f"{command} exited: {log_path.read_text()[-2000:]}")
    worker.kill()
    raise RuntimeError(f"{command} did not become ready")


@dataclass
class Tracked:
    """Per event id, the final answer of the endpoint (None: no answer, connection failed)."""

    statuses: dict[str, int | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> set[str]:
        with self.lock:
            return {i for i, s in self.statuses.items() if s is not None and 200 <= s < 300}

    def count(self) -> int:
        with self.lock:
            return len(self.statuses)


def post_tracked(
    port: int,
    bodies: Sequence[tuple[str, bytes]],
    secret: str,
    tracked: Tracked,
    concurrency: int = 6,
    stop: threading.Event | None = None,
) -> None:
    """POST each (id, body) once, signed, from ``concurrency`` keep-alive connections; record
    each final status in ``tracked`` (no retries: a 2xx must mean stored, whatever else)."""
    source: Iterator[tuple[str, bytes]] = iter(bodies)
    source_lock = threading.Lock()

    def take() -> tuple[str, bytes] | None:
        with source_lock:
            if stop is not None and stop.is_set():
                return None
            return next(source, None)

    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while (item := take()) is not None:
                event_id, body = item
                status: int | None = None
                try:
                    headers = {
                        "Content-Type": "application/json",
                        "Stripe-Signature": sign(body, secret, int(time.time())),
                    }
                    conn.request("POST", web.WEBHOOK, body=body, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                    if response.will_close:
                        conn.close()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                with tracked.lock:
                    # A body repeated (a duplicate delivery) keeps its best answer.
                    previous = tracked.statuses.get(event_id)
                    if previous is None or not 200 <= previous < 300:
                        tracked.statuses[event_id] = status
        finally:
            conn.close()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S_MAX * 3)


def topic_event_ids(bootstrap: str, topic: str) -> list[str]:
    """Every record of ``topic`` read back from offset 0 to the end offsets, as event ids."""
    return [event_id for _partition, _offset, event_id in topic_records(bootstrap, topic)]


def topic_records(bootstrap: str, topic: str) -> list[tuple[int, int, str]]:
    """Every record of ``topic`` from offset 0 to the end offsets: (partition, offset, id)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        ids: list[tuple[int, int, str]] = []
        deadline = time.monotonic() + WAIT_S_MAX
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise AssertionError("could not read the topic back to its end offsets")
            for batch in consumer.poll(timeout_ms=500, max_records=5000).values():
                for record in batch:
                    event_id = json.loads(record.value)["id"]
                    ids.append((record.partition, record.offset, event_id))
        return ids
    finally:
        consumer.close()


def topic_record_count(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def scalar(url: str, sql: str) -> Any:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).scalar()
    finally:
        engine.dispose()


class Db:
    """Small read-only probes of a ledger database (one pooled engine)."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, pool_size=1, max_overflow=0)

    def value(self, sql: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql)).scalar()

    def events(self) -> int:
        return int(self.value("SELECT count(*) FROM events"))

    def distinct_events(self) -> int:
        return int(self.value("SELECT count(DISTINCT event_id) FROM events"))

    def head(self) -> int:
        return int(self.value("SELECT coalesce(max(position), 0) FROM events"))

    def offsets(self) -> dict[int, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT partition, next_offset FROM kafka_offsets")).all()
        return {int(partition): int(offset) for partition, offset in rows}

    def offsets_sum(self) -> int:
        return int(self.value("SELECT coalesce(sum(next_offset), 0) FROM kafka_offsets"))

    def dead_letters(self) -> int:
        return int(self.value("SELECT count(*) FROM dead_letters"))

    def checkpoints(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT name, position FROM projection_state")).all()
        return {str(name): int(position) for name, position in rows}

    def min_checkpoint(self) -> int:
        checkpoints = self.checkpoints()
        return min(checkpoints.values()) if checkpoints else 0

    def event_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return [str(r[0]) for r in conn.execute(sa.text("SELECT event_id FROM events"))]

    def close(self) -> None:
        self.engine.dispose()


def extra_postgres(admin_url: str) -> Any:
    """One more fresh PostgreSQL database (the clean run's), dropped afterwards."""
    return fresh_postgres(admin_url)


def run(args: Sequence[str], env: dict[str, str], timeout_s: float = WAIT_S_MAX) -> Any:
    done = subprocess.run([*CLI, *args], env=env, cwd=ROOT, capture_output=True, timeout=timeout_s)
    assert done.returncode == 0, (args, done.stdout[-1500:], done.stderr[-3000:])
    return done


def reports(env: dict[str, str]) -> dict[str, Any]:
    """``report balances|invoices|disputes --format json``, parsed."""
    return {
        name: json.loads(run(["report", name, "--format", "json"], env).stdout)
        for name in ("balances", "invoices", "disputes")
    }


def env_for(
    database_url: str, bootstrap: str = "", topic: str = "", **extra: str
) -> dict[str, str]:
    env = web.cli_env(
        LEDGER_DATABASE_URL=database_url,
        LEDGER_KAFKA_BOOTSTRAP=bootstrap,
        LEDGER_LOG_FORMAT="json",
        STRIPE_WEBHOOK_SECRET=web.SECRET,
    )
    if topic:
        env["LEDGER_KAFKA_TOPIC"] = topic
    env.update(extra)
    return env
