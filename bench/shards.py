"""Issue 17: projection shards and rebuild workers, each beside the one-worker figure of the
same run (docs/SCALING.md uses them as the inputs of its arithmetic).

- ``project``: a fresh PostgreSQL store of N demo events (COPY, none projected yet), folded by
  1 ``project`` and, on a second store filled the same way, by 2 ``project --shard I/2``
  processes side by side; events/s from the workers' start (start-up included) until every
  projection checkpoint (the slowest shard's) is at the store's head.
- ``rebuild``: ``stripe-ledger rebuild`` and ``stripe-ledger rebuild --workers 2`` over the
  rebuild benchmark's kept store (1,000,000 demo events at full), one after the other, each
  stopped after ``BENCH_SHARDS_BUDGET_S`` (default 200) and measured on what it had folded.

On this 2-core machine the PostgreSQL server shares the cores with the workers: a second
worker can add at most what the server and the first worker leave idle.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

import sqlalchemy as sa

from bench import rebuild
from bench.common import (
    Proc,
    Scale,
    busy_cores,
    cpu_s,
    ledger_env,
    machine_ticks,
    migrated,
    scratch_database,
    stripe_ledger,
)

POLL_S = 0.2
WAIT_S_MAX = 1800.0  # a projection run that has not reached the head by then is a failure


def _checkpoint(engine: sa.Engine) -> tuple[int, int]:
    """(store head, the lowest checkpoint of any projection and shard)."""
    with engine.connect() as connection:
        head = connection.execute(sa.text("SELECT COALESCE(MAX(position), 0) FROM events"))
        low = connection.execute(
            sa.text("SELECT COALESCE(MIN(checkpoint), 0) FROM report_projection_checkpoints")
        )
        return int(head.scalar() or 0), int(low.scalar() or 0)


def _project(admin_url: str, events: int, shards: int) -> dict[str, Any]:
    with scratch_database(admin_url, f"shards{shards}") as url:
        env = ledger_env({"LEDGER_DATABASE_URL": url})
        engine = migrated(url)
        if shards > 1:  # split the (still empty) projections before the events arrive
            split = subprocess.run(
                stripe_ledger("rebuild", "--shards", str(shards)), env=env, capture_output=True
            )
            if split.returncode != 0:
                raise RuntimeError(f"rebuild --shards failed: {split.stderr.decode()[-2000:]}")
        rebuild.fill_store(url, events, False, f"shards{shards}")  # COPY, none projected
        argv = [
            stripe_ledger("project", *(("--shard", f"{i}/{shards}") if shards > 1 else ()))
            for i in range(shards)
        ]
        started, ticks = time.perf_counter(), machine_ticks()
        workers = [Proc(f"project-{i}", args, env) for i, args in enumerate(argv)]
        try:
            deadline = started + WAIT_S_MAX
            while True:
                head, low = _checkpoint(engine)
                if head and low >= head:
                    break
                for worker in workers:
                    worker.check()
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{shards} shard(s) not at the head after {WAIT_S_MAX} s")
                time.sleep(POLL_S)
            seconds = time.perf_counter() - started
            busy = busy_cores(ticks, machine_ticks())
            worker_cpu_s = sum(cpu_s(worker.pid) for worker in workers)
        finally:
            for worker in workers:
                worker.stop()
            engine.dispose()
    return {
        "shards": shards,
        "events": events,
        "seconds": round(seconds, 3),
        "events_s": events / seconds,
        "busy_cores": busy,  # the whole machine: the workers, PostgreSQL, the rest
        "worker_cpu_us_per_event": round(worker_cpu_s / events * 1e6, 1),
    }


def _rebuild(admin_url: str, events: int, workers: int, budget_s: float) -> dict[str, Any]:
    args = ("--workers", str(workers)) if workers > 1 else ()
    if events >= rebuild.KEPT_STORE_EVENTS_MIN:  # the rebuild benchmark's kept store
        return _timed_rebuild(rebuild.fixture(admin_url, events), events, budget_s, args)
    with scratch_database(admin_url, f"rebuild{workers}") as url:
        rebuild.fill_store(url, events, False, f"rebuild{workers}")
        return _timed_rebuild(url, events, budget_s, args)


def _timed_rebuild(url: str, events: int, budget_s: float, args: tuple[str, ...]) -> dict[str, Any]:
    ticks = machine_ticks()
    figures = rebuild.run_rebuild(url, events, budget_s, args)
    workers = int(args[1]) if args else 1
    return {"workers": workers, **figures, "busy_cores": busy_cores(ticks, machine_ticks())}


def run(scale: Scale, services: dict[str, str]) -> dict[str, Any]:
    admin_url = services["LEDGER_DATABASE_URL"]
    budget_s = float(os.environ.get("BENCH_SHARDS_BUDGET_S", "200"))
    project_events = scale.append_events
    one, two = _project(admin_url, project_events, 1), _project(admin_url, project_events, 2)
    rebuild_one = _rebuild(admin_url, scale.rebuild_events, 1, budget_s)
    rebuild_two = _rebuild(admin_url, scale.rebuild_events, 2, budget_s)
    return {
        "budget_s": budget_s,
        "project": {"one": one, "two": two, "ratio": two["events_s"] / one["events_s"]},
        "rebuild": {
            "store_events": scale.rebuild_events,
            "one": rebuild_one,
            "two": rebuild_two,
            "ratio": rebuild_two["events_s"] / rebuild_one["events_s"],
        },
    }
