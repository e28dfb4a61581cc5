"""5. steady-state RSS of ingest, consume and project after ``rss_events`` events (100,000 full).

A fresh pipeline (the real ``stripe-ledger ingest``, ``consume`` and ``project`` processes) gets
the deliveries as fast as it takes them; once every projection is at the store's head and two
seconds passed, VmRSS (steady state) and VmHWM (peak) of each process are read from
/proc/<pid>/status. Target: <= 200 MiB each.
"""

from __future__ import annotations

import time
from typing import Any

from bench import load
from bench.common import SECRET, Scale, distinct_ids, migrated, payloads, scratch_database
from bench.pipeline import Pipeline

SETTLE_S = 2.0


def run(scale: Scale, services: dict[str, str]) -> dict[str, Any]:
    rows = payloads(scale.rss_events, seed=13)
    with scratch_database(services["LEDGER_DATABASE_URL"], "rss") as url:
        migrated(url).dispose()
        pipeline = Pipeline(url, services["LEDGER_KAFKA_BOOTSTRAP"], "rss")
        try:
            started = time.monotonic()
            result = load.post(pipeline.port, rows, secret=SECRET, concurrency=16)
            done = pipeline.wait_projected(distinct_ids(rows))
            time.sleep(SETTLE_S)
            memory = pipeline.memory()
        finally:
            pipeline.stop()
    return {
        "deliveries": len(rows),
        "ok": result.ok,
        "seconds_to_projected": round(done - started, 1),
        "processes": memory,
        "max_rss_mib": max(m["rss_mib"] for m in memory.values()),
    }
