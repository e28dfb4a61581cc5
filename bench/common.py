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
from tests.support.services import database_exists as database_exists
from tests.support.services import drop_database as drop_database
from tests.support.services import scratch_database as scratch
from tests.support.services import services_env as services_env

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
CACHE_DIR = Path(os.environ.get("BENCH_CACHE_DIR", BENCH_DIR / ".cache"))
RESULTS_DIR = BENCH_DIR / "results"
VENV_BIN = Path(sys.executable).parent
SECRET = "whsec_bench_0123456789abcdefghijklmnopqrstuv"
# How many events a fresh store holds, as the harness polls it while a command under test runs:
# positions are gapless from 1 (the store's invariant, tests/contracts/), so the newest position
# is the count, read from the primary key's index. ``count(*)`` scans the table: 15-30 ms on
# PostgreSQL at 200,000 events, which every 20 ms poll took from the server being measured.
STORED_SQL = "SELECT max(position) FROM events"
SEED = 7


@dataclass(frozen=True)
class Scale:
    name: str
    append_events: int
    append_small_events: int  # the small-payload stream (small_events)
    e2e_events: int  # max-throughput phase
    e2e_concurrency: int
    e2e_capacity_events: int  # verify-only at full speed: the capacity the fixed rate is 1/4 of
    e2e_rate_s: float  # the fixed-rate phase (ingest latency vs verify-only's at that rate)
    e2e_rate_events_max: int  # the rate phase's payloads (it is shortened to fit them)
    peer: bool
    peer_events: int
    peer_concurrencies: tuple[int, ...]
    rebuild_events: int
    rebuild_small_events: int
    serve_events: int
    serve_concurrency: int
    rss_events: int
    startup_runs: int  # each start-up figure is the median of this many runs


SCALES = {
    "smoke": Scale(
        "smoke", 300, 300, 300, 8, 300, 2.0, 600, False, 200, (8,), 1_500, 1_500, 300, 8, 300, 3
    ),
    "small": Scale(
        "small",
        20_000,
        10_000,
        10_000,
        32,
        5_000,
        10.0,
        20_000,
        True,
        4_000,
        (8, 32),
        100_000,
        50_000,
        10_000,
        32,
        20_000,
        7,
    ),
    "full": Scale(
        "full",
        100_000,
        50_000,
        50_000,
        32,
        20_000,
        20.0,
        60_000,
        True,
        10_000,
        (4, 16, 64),
        1_000_000,
        200_000,
        50_000,
        32,
        100_000,
        11,
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
    """An engine on ``url`` after ``stripe-ledger migrate`` (the store schema, the projections
    and the report views: the command, so that the harness follows wherever that work lives)."""
    subprocess.run(
        stripe_ledger("migrate"),
        env=ledger_env({"LEDGER_DATABASE_URL": url}),
        check=True,
        capture_output=True,
        timeout=300,
    )
    return sa.create_engine(sa.make_url(url), poolclass=sa.NullPool)


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


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far (/proc/stat's first line)."""
    with open("/proc/stat") as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float:
    """How many of the machine's cores were busy, on average, between two ``machine_ticks``."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return round((os.cpu_count() or 1) * busy / total, 2) if total else 0.0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def demo() -> Any:
    """The demo generator (``generate``, ``iter_payloads``, ``encode``): its one import here."""
    from demo import history

    return history


def sign(payload: bytes, secret: str, timestamp_s: int) -> str:
    """A ``Stripe-Signature`` header for ``payload`` (the demo client's signer)."""
    from demo.client import sign as demo_sign

    return str(demo_sign(payload, secret, timestamp_s))


def _cached(path: Path, make: Any) -> list[bytes]:
    """JSON lines at ``path``, made once by ``make()``."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path.read_bytes().splitlines()
    rows = list(make())
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"\n".join(rows))
    tmp.replace(path)
    return rows


def payloads(events: int, seed: int = SEED) -> list[bytes]:
    """The demo generator's deliveries (duplicates and out-of-order included), cached on disk."""
    path = CACHE_DIR / f"payloads-{seed}-{events}.jsonl"
    return _cached(path, lambda: demo().iter_payloads(seed, events))


# The small-payload stream (issue 21: "~800 B, id-heavy"): the demo history's own events of the
# types whose objects are small and mostly ids (refunds, payouts, application fees, balance,
# customers): whole Stripe-shaped events as generated, none cut short. About 880 B each.
SMALL_TYPES = (
    "application_fee.",
    "balance.",
    "refund.",
    "charge.refund.",
    "customer.created",
    "payout.",
)
# One history per seed, of about 8 events per small one wanted (about 15% of its events are
# small ones), between these sizes.
SMALL_SEED_EVENTS_MIN = 20_000
SMALL_SEED_EVENTS_MAX = 100_000


def small_events(events: int, seed: int = SEED) -> Iterator[dict[str, Any]]:
    """``events`` distinct small events (``SMALL_TYPES``) of the histories of seed, seed+1, ...
    in each history's ``created`` order."""
    left, generated = events, 0
    while left > 0:
        size = min(SMALL_SEED_EVENTS_MAX, max(SMALL_SEED_EVENTS_MIN, 8 * left))
        history = demo().generate(seed + generated, size)
        generated += 1
        assert generated <= 1 + events // 1000, "the demo history holds no small events"
        chosen = [event for event in history.events if event["type"].startswith(SMALL_TYPES)]
        for event in sorted(chosen, key=lambda event: event["created"])[:left]:
            left -= 1
            yield event


def small_payloads(events: int, seed: int = SEED) -> list[bytes]:
    """``small_events`` encoded as delivered (one delivery each), cached on disk."""
    path = CACHE_DIR / f"small-{seed}-{events}.jsonl"
    encode = demo().encode
    return _cached(path, lambda: (encode(event) for event in small_events(events, seed)))


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
