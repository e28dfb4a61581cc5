"""4. embedded ``stripe-ledger serve`` on SQLite, end to end, events/s.

``serve`` (webhook endpoint + group-committed SQLite store, with ``project`` as its child
process) gets ``serve_events`` deliveries from ``serve_concurrency`` clients; events/s =
deliveries / (first request -> every projection's checkpoint at the store's head). Baseline,
same run, same client: the same POSTs against ``bench.verify_only`` (read the body, verify the
signature, answer 200) under uvicorn with serve's options.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import load, verify_only
from bench.common import (
    SECRET,
    STORED_SQL,
    Proc,
    Scale,
    distinct_ids,
    free_port,
    ledger_env,
    payloads,
    percentile,
    stripe_ledger,
    wait_http,
)
from bench.pipeline import PROJECTIONS


def _projected(engine: sa.Engine, expected: int) -> bool:
    with engine.connect() as connection:
        head = connection.execute(sa.text(STORED_SQL)).scalar() or 0  # = events stored
        rows: dict[str, int] = {
            name: position
            for name, position in connection.execute(
                sa.text("SELECT name, position FROM projection_state")
            )
        }
    return head >= expected and all(rows.get(name, -1) >= head for name in PROJECTIONS)


def run_serve(rows: list[bytes], concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        path = Path(tmp) / "serve.db"
        url = f"sqlite:///{path}"
        port = free_port()
        env = ledger_env({"LEDGER_DATABASE_URL": url})
        proc = Proc("serve", stripe_ledger("serve", "--port", str(port)), env)
        try:
            wait_http(port, proc=proc)
            engine = sa.create_engine(url, poolclass=sa.NullPool)
            expected = distinct_ids(rows)
            result = load.post(port, rows, secret=SECRET, concurrency=concurrency)
            while not _projected(engine, expected):
                proc.check()
                time.sleep(0.02)
            done = time.monotonic()
            engine.dispose()
            memory = proc.memory()
        finally:
            proc.stop()
    seconds = done - result.started
    return {
        "deliveries": len(rows),
        "ok": result.ok,
        "seconds": round(seconds, 3),
        "events_s": len(rows) / seconds,
        "ingest_only_events_s": len(rows) / result.elapsed_s,
        "p50_ms": round(percentile(result.latencies_s, 0.5) * 1000, 2),
        "p99_ms": round(percentile(result.latencies_s, 0.99) * 1000, 2),
        "rss": memory,
    }


def run_verify_only(rows: list[bytes], concurrency: int) -> dict[str, Any]:
    with verify_only.running() as port:
        result = load.post(port, rows, secret=SECRET, concurrency=concurrency)
    return {
        "deliveries": len(rows),
        "ok": result.ok,
        "seconds": round(result.elapsed_s, 3),
        "events_s": result.ok / result.elapsed_s,
        "p50_ms": round(percentile(result.latencies_s, 0.5) * 1000, 2),
        "p99_ms": round(percentile(result.latencies_s, 0.99) * 1000, 2),
    }


def run(scale: Scale, services: dict[str, str]) -> dict[str, Any]:
    rows = payloads(scale.serve_events, seed=11)
    served = run_serve(rows, scale.serve_concurrency)
    baseline = run_verify_only(rows, scale.serve_concurrency)
    return {
        "serve": served,
        "verify_only": baseline,
        "ratio": served["events_s"] / baseline["events_s"],
    }
