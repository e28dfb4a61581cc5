"""3. rebuild of all projections over an N-event store, at two payload sizes.

Two stores, each filled once with ``COPY`` (columns as ``EventStore.append`` writes them) into a
database kept between runs (``bench_<label>_<N>_m<newest migration>``; BENCH_FRESH=1 refills):
the demo generator's distinct events (seeds 1, 2, ... of 100,000 each, about 2.2 KB; 1,000,000
at BENCH_SCALE=full) and the small-payload stream (``common.small_events``, about 880 B;
200,000 at full).

The rebuild is ``stripe-ledger rebuild`` (all projections, one pass over the store) as a child
process: events/s = store events / the command's wall time, start-up included; its VmHWM is the
rebuild's peak RSS. A rebuild that would take longer than ``BENCH_REBUILD_BUDGET_S`` (default
300 s) is stopped (SIGTERM: the live generations stay) and the rate is what its last progress
line had folded; the result says ``complete: false``.

Baseline (issue 21), same store, same run: a psycopg server-side cursor reading the ``payload``
column as text in position order, and stdlib ``json.loads`` of each row, nothing else (a child
process too: ``python -m bench.rebuild URL BUDGET_S``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from typing import Any

import psycopg
import sqlalchemy as sa

from bench.common import (
    EVENT_COPY_COLUMNS,
    ROOT,
    Proc,
    Scale,
    admin_engine,
    copy_row,
    database_exists,
    demo,
    drop_database,
    ledger_env,
    migrated,
    psycopg_url,
    rss_mib,
    scratch_database,
    small_events,
    stripe_ledger,
)

SEED_EVENTS = 100_000
KEPT_STORE_EVENTS_MIN = 100_000  # smaller stores are filled afresh in a scratch database
READ_ROWS_PER_FETCH = 1_000  # the baseline cursor's fetch size
PEAK_POLL_S = 0.2


def _db_url(admin_url: str, name: str) -> str:
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _schema_tag() -> str:
    """The revision number of the newest migration file (``0006``)."""
    from migrations import MIGRATIONS_DIR

    revisions = sorted(path.name[:4] for path in (MIGRATIONS_DIR / "versions").glob("0*.py"))
    return revisions[-1]


def _demo_events(events: int) -> Iterable[dict[str, Any]]:
    """``events`` distinct demo events: seeds 1, 2, ... of SEED_EVENTS, each in created order."""
    left, seed = events, 1
    while left > 0:
        history = demo().generate(seed, min(SEED_EVENTS, left))
        chunk = sorted(history.events, key=lambda event: event["created"])[:left]
        del history
        left -= len(chunk)
        seed += 1
        yield from chunk


def fixture(admin_url: str, events: int, label: str = "rebuild", small: bool = False) -> str:
    """A database ``bench_<label>_<events>_m<newest migration>`` holding ``events`` distinct
    demo events (``small``: of the small-payload stream), made once, then reused."""

    # The schema's newest migration is part of the name: a database kept by a checkout with
    # other migrations (an older or a newer tree on the same server) is never reused.
    name = f"bench_{label}_{events}_m{_schema_tag()}"
    admin = admin_engine(admin_url)
    url = _db_url(admin_url, name)
    exists = database_exists(admin, name)
    if exists and os.environ.get("BENCH_FRESH"):
        drop_database(admin, name)
        exists = False
    if not exists:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    fill_store(url, events, small, name)
    return url


def fill_store(url: str, events: int, small: bool, name: str) -> None:
    """Migrate the database at ``url`` and COPY the events in, unless it holds them already."""
    from ledger.envelope import event_from_dict

    engine = migrated(url)
    with engine.connect() as connection:
        count = connection.execute(sa.text("SELECT count(*) FROM events")).scalar() or 0
    engine.dispose()
    if count >= events:
        return
    if count:
        raise RuntimeError(f"{name} holds {count} events, not {events}: rerun with BENCH_FRESH=1")
    received = dt.datetime.now(dt.UTC)
    encode = demo().encode
    source = small_events(events, seed=1) if small else _demo_events(events)
    with psycopg.connect(psycopg_url(url)) as connection:
        with connection.cursor() as cursor:
            with cursor.copy(f"COPY events ({EVENT_COPY_COLUMNS}) FROM STDIN") as copy:
                for payload in source:
                    event = event_from_dict(payload)
                    text = encode(payload).decode("utf-8")
                    copy.write_row(copy_row(event, received, "import", text, None))
        connection.commit()
        # VACUUM too: the insert-only table's first vacuum (its visibility map) would otherwise
        # be autovacuum's, in the middle of the rebuild measured next and not of the baseline.
        connection.autocommit = True
        connection.execute("VACUUM (ANALYZE) events")


def read_baseline(url: str, budget_s: float) -> dict[str, Any]:
    """In the child process: every payload as text through a server-side cursor, json.loads."""
    loads = json.loads
    read = 0
    with psycopg.connect(psycopg_url(url)) as connection:
        total_row = connection.execute("SELECT count(*) FROM events").fetchone()
        total = int(total_row[0]) if total_row else 0
        started = time.perf_counter()
        with connection.cursor(name="bench_read") as cursor:
            cursor.itersize = READ_ROWS_PER_FETCH
            cursor.execute("SELECT payload::text FROM events ORDER BY position")
            for (text,) in cursor:
                loads(text)
                read += 1
                if read % 10_000 == 0 and time.perf_counter() - started > budget_s:
                    break
        seconds = time.perf_counter() - started
    return {
        "events": read,
        "seconds": round(seconds, 3),
        "events_s": read / seconds,
        "complete": read == total,
    }


def _progress_done(log_text: str) -> int:
    """The ``done`` of the last ``progress`` log line (JSON logs) of a stopped rebuild."""
    done = 0
    for line in log_text.splitlines():
        if line.startswith("{") and '"progress"' in line:
            done = max(done, int(json.loads(line).get("done", 0)))
    return done


def run_rebuild(
    url: str, events: int, budget_s: float, args: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``stripe-ledger rebuild [args]`` over the store at ``url``: wall time, peak RSS (of the
    rebuild's own process)."""
    env = ledger_env({"LEDGER_DATABASE_URL": url, "LEDGER_LOG_LEVEL": "info"})
    started = time.perf_counter()
    proc = Proc("rebuild", stripe_ledger("rebuild", *args), env)
    peak = 0.0
    stopped = False
    try:
        while proc.popen.poll() is None:
            try:
                peak = max(peak, rss_mib(proc.pid)["peak_rss_mib"])
            except (OSError, KeyError):
                pass  # it exited between poll() and the read
            if not stopped and time.perf_counter() - started > budget_s:
                proc.popen.terminate()  # the rebuild stops at its next batch, live untouched
                stopped = True
            time.sleep(PEAK_POLL_S)
        seconds = time.perf_counter() - started
    finally:
        proc.stop()
    log_text = proc.log_path.read_text(errors="replace")
    if proc.popen.returncode not in (0, 1) or (proc.popen.returncode and not stopped):
        raise RuntimeError(f"rebuild exited {proc.popen.returncode}: {log_text[-2000:]}")
    done = _progress_done(log_text) if stopped else events
    return {
        "events": done,
        "seconds": round(seconds, 3),
        "events_s": done / seconds,
        "complete": not stopped,
        "peak_rss_mib": round(peak, 1),
    }


def _run_read_child(url: str, budget_s: float) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "bench.rebuild", url, str(budget_s)],
        env=env,
        capture_output=True,
        cwd=ROOT,
        timeout=budget_s + 600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"read baseline failed: {done.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def _one_size(admin_url: str, events: int, small: bool, budget_s: float) -> dict[str, Any]:
    label = "rebuild_small" if small else "rebuild"
    started = time.perf_counter()
    if events >= KEPT_STORE_EVENTS_MIN:
        url = fixture(admin_url, events, label=label, small=small)
        return _measure(url, events, budget_s, time.perf_counter() - started)
    # A small store is made afresh: a kept one is shared by every checkout on the server, and
    # one with other views (another branch's) refuses this tree's rebuild.
    with scratch_database(admin_url, label) as url:
        fill_store(url, events, small, label)
        return _measure(url, events, budget_s, time.perf_counter() - started)


def _measure(url: str, events: int, budget_s: float, fixture_s: float) -> dict[str, Any]:
    with psycopg.connect(psycopg_url(url)) as connection:
        row = connection.execute("SELECT avg(octet_length(payload::text)) FROM events").fetchone()
    rebuilt = run_rebuild(url, events, budget_s)
    baseline = _run_read_child(url, budget_s)
    return {
        "store_events": events,
        "payload_bytes_mean": round(float(row[0]) if row and row[0] else 0.0),
        "fixture_seconds": round(fixture_s, 1),
        "rebuild": rebuilt,
        "read_json": baseline,
        "ratio": rebuilt["events_s"] / baseline["events_s"],
    }


def run(scale: Scale, services: dict[str, str]) -> dict[str, Any]:
    budget_s = float(os.environ.get("BENCH_REBUILD_BUDGET_S", "300"))
    admin_url = services["LEDGER_DATABASE_URL"]
    demo_size = _one_size(admin_url, scale.rebuild_events, False, budget_s)
    small_size = _one_size(admin_url, scale.rebuild_small_events, True, budget_s)
    return {
        "budget_s": budget_s,
        # The demo store's figures stay at the top level (their names since issue 7).
        **demo_size,
        "small": small_size,
    }


if __name__ == "__main__":
    target, budget = sys.argv[1], float(sys.argv[2])
    print(json.dumps(read_baseline(target, budget)))
