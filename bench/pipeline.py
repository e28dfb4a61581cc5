"""The production processes as child processes: ingest, consume and project on one database.

Used by the end-to-end and RSS measurements. Each process is the real ``stripe-ledger``
command; the harness only polls the database (projection checkpoints, the store) and
/proc/<pid>/status.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from typing import Any

import sqlalchemy as sa

from bench.common import STORED_SQL, Proc, free_port, ledger_env, stripe_ledger, wait_http

PROJECTIONS = ("journal", "invoices", "disputes")
# consume and project run at a lower CPU priority than ingest (docs/PERFORMANCE.md: on a shared
# machine the webhook answer is the latency that matters; the workers catch up). 0 = off.
WORKER_NICE_LEVEL = int(os.environ.get("BENCH_WORKER_NICE", "10"))
WORKER_NICE = ("nice", "-n", str(WORKER_NICE_LEVEL)) if WORKER_NICE_LEVEL else ()


class Pipeline:
    def __init__(self, url: str, bootstrap: str, label: str) -> None:
        self.url = url
        self.topic = f"bench.{label}.{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        env = ledger_env(
            {
                "LEDGER_DATABASE_URL": url,
                "LEDGER_KAFKA_BOOTSTRAP": bootstrap,
                "LEDGER_KAFKA_TOPIC": self.topic,
                "LEDGER_KAFKA_GROUP": f"bench-{self.topic}",
            }
        )
        self._create_topic(bootstrap)
        self.procs = {
            "ingest": Proc(
                f"{label}-ingest", stripe_ledger("ingest", "--port", str(self.port)), env
            ),
            "consume": Proc(f"{label}-consume", [*WORKER_NICE, *stripe_ledger("consume")], env),
            "project": Proc(f"{label}-project", [*WORKER_NICE, *stripe_ledger("project")], env),
        }
        self.engine = sa.create_engine(sa.make_url(url), poolclass=sa.NullPool)
        wait_http(self.port)

    def _create_topic(self, bootstrap: str) -> None:
        from kafka.admin import KafkaAdminClient, NewTopic

        admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
        try:
            admin.create_topics([NewTopic(self.topic, num_partitions=1, replication_factor=1)])
        finally:
            admin.close()

    def check(self) -> None:
        for proc in self.procs.values():
            proc.check()

    def state(self, connection: sa.Connection) -> tuple[int, int]:
        """(events stored, lowest projection checkpoint)."""
        stored = connection.execute(sa.text(STORED_SQL)).scalar() or 0
        rows = connection.execute(sa.text("SELECT name, position FROM projection_state")).all()
        positions = {name: position for name, position in rows}
        low = min((positions.get(name, 0) for name in PROJECTIONS), default=0)
        connection.rollback()
        return int(stored), int(low)

    def head(self, connection: sa.Connection) -> int:
        value = connection.execute(sa.text("SELECT max(position) FROM events")).scalar() or 0
        connection.rollback()
        return int(value)

    def wait_projected(self, expected_events: int, timeout_s: float = 1800.0) -> float:
        """Block until the store holds ``expected_events`` and every projection is at the head."""
        deadline = time.monotonic() + timeout_s
        with self.engine.connect() as connection:
            while True:
                self.check()
                stored, low = self.state(connection)
                if stored >= expected_events and low >= self.head(connection):
                    return time.monotonic()
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"timed out: {stored}/{expected_events} stored, projections at {low}"
                    )
                time.sleep(0.02)

    def pause(self, *names: str) -> None:
        """SIGSTOP these processes (to measure ingest alone on a small machine)."""
        for name in names:
            os.kill(self.procs[name].pid, signal.SIGSTOP)

    def resume(self, *names: str) -> None:
        for name in names:
            os.kill(self.procs[name].pid, signal.SIGCONT)

    def memory(self) -> dict[str, dict[str, float]]:
        return {name: proc.memory() for name, proc in self.procs.items()}

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()
        self.engine.dispose()


class LagSampler:
    """Samples the lowest projection checkpoint every few ms, with a wall-clock time.

    An event's event-to-projection lag is the time of the first sample whose checkpoint covers
    its position minus its ``received_at`` (set by ingest when the request arrived).
    """

    def __init__(self, pipeline: Pipeline, interval_s: float = 0.01) -> None:
        self.pipeline = pipeline
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with self.pipeline.engine.connect() as connection:
            while not self._stop.is_set():
                low = self.pipeline.state(connection)[1]
                self.samples.append((time.time(), low))
                self._stop.wait(self.interval_s)

    def lags_s(self, after_position: int) -> list[float]:
        with self.pipeline.engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT position, extract(epoch FROM received_at) FROM events "
                    "WHERE position > :p ORDER BY position"
                ),
                {"p": after_position},
            ).all()
        lags = []
        index = 0
        for position, received in rows:
            while index < len(self.samples) and self.samples[index][1] < position:
                index += 1
            if index == len(self.samples):
                break
            lags.append(max(0.0, self.samples[index][0] - float(received)))
        return lags
