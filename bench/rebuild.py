"""3. rebuild of all projections over an N-event store (1,000,000 at BENCH_SCALE=full).

The store is filled once with ``COPY`` (the demo generator's distinct events, seeds 1, 2, ...
of 100,000 each, columns as ``EventStore.append`` writes them) into a database that is kept
between runs (``bench_rebuild_<N>_m<newest migration>``; BENCH_FRESH=1 rebuilds it). The
rebuild runs in a child process (``python -m bench.rebuild URL BUDGET``), so that its VmHWM
is the rebuild's peak RSS.

events/s = store events / seconds to rebuild all three projections (one pass over the store
feeds all three). A rebuild that would take longer than ``BENCH_REBUILD_BUDGET_S`` (default
300 s) is stopped after the budget (the live generations stay; the half-built ones are dropped
by the next rebuild) and the rate is what was folded in that time; the result says so.
Baseline: reading the same rows in position order with JSON decoding and nothing else
(``EventStore.iter_events``), in the same child process design.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import psycopg
import sqlalchemy as sa

from bench.common import (
    EVENT_COPY_COLUMNS,
    ROOT,
    Scale,
    admin_engine,
    copy_row,
    migrated,
    psycopg_url,
    rss_mib,
)

SEED_EVENTS = 100_000


def _db_url(admin_url: str, name: str) -> str:
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _schema_tag() -> str:
    """The revision number of the newest migration file (``0006``)."""
    from migrations import MIGRATIONS_DIR

    revisions = sorted(path.name[:4] for path in (MIGRATIONS_DIR / "versions").glob("0*.py"))
    return revisions[-1]


def fixture(admin_url: str, events: int, label: str = "rebuild") -> str:
    """A database ``bench_<label>_<events>_m<newest migration>`` holding ``events`` distinct
    demo events (made once, then reused)."""
    from cli.demo_history import encode, generate
    from ledger.envelope import event_from_dict

    # The schema's newest migration is part of the name: a database kept by a checkout with
    # other migrations (an older or a newer tree on the same server) is never reused.
    name = f"bench_{label}_{events}_m{_schema_tag()}"
    admin = admin_engine(admin_url)
    url = _db_url(admin_url, name)
    with admin.connect() as connection:
        exists = connection.exec_driver_sql(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).scalar()
        if exists and os.environ.get("BENCH_FRESH"):
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    engine = migrated(url)
    with engine.connect() as connection:
        count = connection.execute(sa.text("SELECT count(*) FROM events")).scalar() or 0
    engine.dispose()
    if count >= events:
        return url
    if count:
        raise RuntimeError(f"{name} holds {count} events, not {events}: rerun with BENCH_FRESH=1")
    received = dt.datetime.now(dt.UTC)
    left, seed = events, 1
    with psycopg.connect(psycopg_url(url)) as connection:
        while left > 0:
            history = generate(seed, min(SEED_EVENTS, left))
            chunk = sorted(history.events, key=lambda event: event["created"])[:left]
            with connection.cursor() as cursor:
                with cursor.copy(f"COPY events ({EVENT_COPY_COLUMNS}) FROM STDIN") as copy:
                    for payload in chunk:
                        event = event_from_dict(payload)
                        text = encode(payload).decode("utf-8")
                        copy.write_row(copy_row(event, received, "import", text, None))
            connection.commit()
            left -= len(chunk)
            seed += 1
            del history, chunk
        connection.execute("ANALYZE events")
        connection.commit()
    return url


def child(url: str, mode: str, budget_s: float) -> dict[str, Any]:
    """In the child process: 'rebuild' (all projections) or 'read' (the baseline)."""
    from cli.main import tune_gc
    from cli.reports_cmds import prepare_read_side
    from ledger.database import create_engine
    from ledger.store import open_event_store
    from projections import rebuild
    from reports import views

    tune_gc()  # as `stripe-ledger` does at start-up, for both the rebuild and the baseline
    engine = create_engine(url)
    store = open_event_store(engine)
    total = store.count()
    started = time.perf_counter()
    if mode == "read":
        read = 0
        for _event in store.iter_events(batch_events=1000):
            read += 1
            if read % 10_000 == 0 and time.perf_counter() - started > budget_s:
                break
        seconds = time.perf_counter() - started
        return {
            "events": read,
            "seconds": seconds,
            "events_s": read / seconds,
            "complete": read == total,
        }
    prepare_read_side(engine)
    stop = threading.Event()
    timer = threading.Timer(budget_s, stop.set)
    timer.start()
    done = {"events": 0}

    def progress(events: int, _total: int) -> None:
        done["events"] = events

    results = rebuild.rebuild(
        store, hooks=(views.drop_views, views.create_views), on_progress=progress, stop=stop
    )
    timer.cancel()
    seconds = time.perf_counter() - started
    return {
        "events": done["events"],
        "seconds": round(seconds, 3),
        "events_s": done["events"] / seconds,
        "complete": bool(results),
        "projections": [result.name for result in results],
    }


def _run_child(url: str, mode: str, budget_s: float) -> dict[str, Any]:
    env = dict(os.environ, LEDGER_LOG_LEVEL="warning", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.rebuild", url, mode, str(budget_s)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    peak = 0.0
    while proc.poll() is None:
        try:
            peak = max(peak, rss_mib(proc.pid)["peak_rss_mib"])
        except (OSError, KeyError):
            pass
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"rebuild child {mode} failed: {err.decode()[-2000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["peak_rss_mib"] = round(max(peak, result.pop("vmhwm_mib", 0.0)), 1)
    return result


def run(scale: Scale, services: dict[str, str]) -> dict[str, Any]:
    budget_s = float(os.environ.get("BENCH_REBUILD_BUDGET_S", "300"))
    started = time.perf_counter()
    url = fixture(services["LEDGER_DATABASE_URL"], scale.rebuild_events)
    fixture_s = time.perf_counter() - started
    rebuilt = _run_child(url, "rebuild", budget_s)
    baseline = _run_child(url, "read", budget_s)
    return {
        "store_events": scale.rebuild_events,
        "fixture_seconds": round(fixture_s, 1),
        "budget_s": budget_s,
        "rebuild": rebuilt,
        "read_json": baseline,
        "ratio": rebuilt["events_s"] / baseline["events_s"],
    }


if __name__ == "__main__":
    target, kind, budget = sys.argv[1], sys.argv[2], float(sys.argv[3])
    figures = child(target, kind, budget)
    figures["vmhwm_mib"] = rss_mib(os.getpid())["peak_rss_mib"]
    print(json.dumps(figures))
