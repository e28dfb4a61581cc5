"""What every benchmark shares: sizes, services, throw-away databases, processes, RSS, payloads.

Nothing here asserts a speed. Each measurement returns plain dicts of figures; ``bench.run``
collects them into ``bench/results/latest.{json,md}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.support.services import admin_engine as admin_engine  # re-exported: bench uses them
from tests.support.services import scratch_database as scratch
from tests.support.services import services_env as services_env

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
CACHE_DIR = Path(os.environ.get("BENCH_CACHE_DIR", BENCH_DIR / ".cache"))
RESULTS_DIR = BENCH_DIR / "results"
VENV_BIN = Path(sys.executable).parent
SECRET = "whsec_bench_0123456789abcdefghijklmnopqrstuv"
SEED = 7


@dataclass(frozen=True)
class Scale:
    name: str
    append_events: int
    e2e_events: int  # max-throughput phase
    e2e_concurrency: int
    e2e_rate_rps: int  # the fixed-rate phase (latency target)
    e2e_rate_s: float
    peer: bool
    peer_events: int
    peer_concurrencies: tuple[int, ...]
    rebuild_events: int
    serve_events: int
    serve_concurrency: int
    rss_events: int


SCALES = {
    "smoke": Scale("smoke", 300, 300, 8, 100, 2.0, False, 200, (8,), 1_500, 300, 8, 300),
    "small": Scale(
        "small", 20_000, 10_000, 32, 500, 10.0, True, 4_000, (8, 32), 100_000, 10_000, 32, 20_000
    ),
    "full": Scale(
        "full",
        100_000,
        50_000,
        32,
        500,
        30.0,
        True,
        10_000,
        (4, 16, 64),
        1_000_000,
        50_000,
        32,
        100_000,
    ),
}


def scale(name: str | None = None) -> Scale:
    name = name or os.environ.get("BENCH_SCALE", "small")
    if name not in SCALES:
        raise SystemExit(f"BENCH_SCALE must be one of {', '.join(SCALES)}, got {name!r}")
    return SCALES[name]


# -- services -------------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(admin_url: str, label: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one measurement; dropped afterwards (BENCH_KEEP=1 keeps)."""
    keep = bool(os.environ.get("BENCH_KEEP"))
    with scratch(admin_url, f"bench_{label}_{os.getpid()}", keep=keep) as url:
        yield url


def psycopg_url(url: str) -> str:
    """``url`` as plain psycopg takes it (no SQLAlchemy driver suffix)."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# The columns EventStore.append writes, in the order of copy_row(); the baselines and the kept
# rebuild store COPY rows of this shape.
EVENT_COPY_COLUMNS = (
    "event_id, type, api_version, created, livemode, account, object_type, object_id, "
    "received_at, source, payload, kafka_topic, kafka_partition, kafka_offset"
)


def copy_row(
    event: Any, received: Any, source: str, payload: str, kafka: tuple[str, int, int] | None
) -> tuple[Any, ...]:
    """One COPY row of ``EVENT_COPY_COLUMNS`` for a parsed ``StripeEvent``."""
    topic, partition, offset = kafka if kafka else (None, None, None)
    return (
        event.event_id,
        event.type,
        event.api_version,
        event.created,
        event.livemode,
        event.account,
        event.object_type,
        event.object_id,
        received,
        source,
        payload,
        topic,
        partition,
        offset,
    )


def migrated(url: str) -> sa.Engine:
    """An engine on ``url`` with the store schema, projections and report views in place."""
    from cli.reports_cmds import prepare_read_side
    from ledger.database import create_engine, migrate

    engine = create_engine(url)
    migrate(engine)
    prepare_read_side(engine)
    return engine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_http(
    port: int, path: str = "/readyz", timeout_s: float = 60.0, proc: Proc | None = None
) -> None:
    import http.client

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None:
            proc.check()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered 200 on 127.0.0.1:{port}{path} in {timeout_s:g} s")


# -- processes ------------------------------------------------------------------------------


def ledger_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "STRIPE_WEBHOOK_SECRET": SECRET,
            "LEDGER_LOG_FORMAT": "json",
            "LEDGER_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warning"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class Proc:
    """A child process whose output goes to a log file under the results directory."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str]) -> None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = RESULTS_DIR / f"{name}.log.tmp"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            list(argv), env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check(self) -> None:
        if not self.alive():
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")

    def memory(self) -> dict[str, float]:
        return rss_mib(self.pid)

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()


def stripe_ledger(*args: str) -> list[str]:
    return [str(VENV_BIN / "stripe-ledger"), *args]


def rss_mib(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, in MiB, from /proc/<pid>/status."""
    values: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return {"rss_mib": round(values["VmRSS"], 1), "peak_rss_mib": round(values["VmHWM"], 1)}


# -- payloads -------------------------------------------------------------------------------


def payloads(events: int, seed: int = SEED) -> list[bytes]:
    """The demo generator's deliveries (duplicates and out-of-order included), cached on disk."""
    from demo.history import iter_payloads

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"payloads-{seed}-{events}.jsonl"
    if path.exists():
        return path.read_bytes().splitlines()
    rows = list(iter_payloads(seed, events))
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"\n".join(rows))
    tmp.replace(path)
    return rows


def distinct_ids(rows: Sequence[bytes]) -> int:
    return len({json.loads(row)["id"] for row in rows})


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


# -- the machine and versions ---------------------------------------------------------------


def machine() -> dict[str, Any]:
    memory_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "cpu": model,
        "kernel": platform.release(),
    }


def versions(database_url: str | None = None) -> dict[str, Any]:
    import importlib.metadata as md

    found: dict[str, Any] = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for package in ("stripe-ledger", "sqlalchemy", "psycopg", "kafka-python", "uvicorn"):
        with contextlib.suppress(md.PackageNotFoundError):
            found[package] = md.version(package)
    with contextlib.suppress(Exception):
        found["git"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    if database_url:
        with contextlib.suppress(Exception):
            engine = admin_engine(database_url)
            with engine.connect() as connection:
                found["postgresql"] = connection.exec_driver_sql("SHOW server_version").scalar()
            engine.dispose()
    state = Path(os.environ.get("LEDGER_SERVICES_DIR", "/var/tmp/stripe-ledger-services"))
    kafka_libs = sorted((state / "kafka").glob("lib-*")) if (state / "kafka").exists() else []
    if kafka_libs:
        found["kafka"] = kafka_libs[-1].name.removeprefix("lib-")
    if shutil.which("node"):
        with contextlib.suppress(Exception):
            found["node"] = subprocess.run(
                ["node", "--version"], capture_output=True, text=True
            ).stdout.strip()
    return found
