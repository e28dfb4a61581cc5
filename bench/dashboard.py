"""The dashboard's page times (issue 15): each page over HTTP from a running
``stripe-ledger dashboard``, on the demo's data and on a large PostgreSQL store.

Not a test and not part of ``bench.run``: ``python -m bench.dashboard [EVENTS ...]``.
``demo`` (the default) is `make demo`'s data (seed 7, 400 events) in a SQLite file; a number N
is a PostgreSQL store of N distinct demo events (``bench.rebuild.fixture``, COPY, kept as
``bench_dashboard_N_m<newest migration>``; BENCH_FRESH=1 refills it) projected by
``stripe-ledger project``, so that the dashboard reads what a real deployment's reports
read. Each page is requested once to warm up, then ``REPEATS`` times in a row; the figures
are client-side wall times (request to last byte) in ms: median, p95 and max. The table goes
to stdout (Markdown) and bench/results/dashboard.json.
"""

from __future__ import annotations

import http.client
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    RESULTS_DIR,
    Proc,
    free_port,
    ledger_env,
    percentile,
    services_env,
    stripe_ledger,
    wait_http,
)

REPEATS = 20
PROJECT_S_MAX = 3600.0
PAGES = (
    "/",
    "/?currency=usd&mode=test&since=2026-11-01&until=2026-12-01",
    "/payouts",
    "/journal",
    "/journal?kind=charge&page=200",
    "/invoices",
    "/disputes",
    "/pipeline",
)


def time_pages(database_url: str, label: str) -> list[dict[str, Any]]:
    port = free_port()
    env = ledger_env({"LEDGER_DATABASE_URL": database_url})
    dashboard = Proc(f"dashboard-{label}", stripe_ledger("dashboard", "--port", str(port)), env)
    try:
        wait_http(port, proc=dashboard)
        out = []
        for path in PAGES:
            times_ms = []
            for attempt in range(REPEATS + 1):
                started = time.perf_counter()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                connection.close()
                assert response.status == 200, (path, response.status, body[:200])
                if attempt:  # the first one warms the caches up
                    times_ms.append((time.perf_counter() - started) * 1000)
            out.append({
                "store": label, "page": path, "bytes": len(body),
                "median_ms": round(percentile(times_ms, 0.5), 1),
                "p95_ms": round(percentile(times_ms, 0.95), 1),
                "max_ms": round(max(times_ms), 1),
            })  # fmt: skip
        return out
    finally:
        dashboard.stop()


def demo_store(workdir: Path) -> str:
    from tests.support.dashboard import build_store

    url = f"sqlite:///{workdir / 'demo.db'}"
    build_store(url)
    return url


def large_store(events: int) -> str:
    """A PostgreSQL store of ``events`` demo events, projected to its head."""
    from bench.rebuild import fixture

    url = fixture(services_env()["LEDGER_DATABASE_URL"], events, label="dashboard")
    env = ledger_env({"LEDGER_DATABASE_URL": url})
    project = Proc(f"project-{events}", stripe_ledger("project", "--until-idle", "2"), env)
    deadline = time.monotonic() + PROJECT_S_MAX
    while project.alive() and time.monotonic() < deadline:
        time.sleep(1)
    project.stop()
    return url


def main(argv: list[str]) -> int:
    results = []
    for size in argv or ["demo"]:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as workdir:
            url = demo_store(Path(workdir)) if size == "demo" else large_store(int(size))
            print(f"store {size}: ready in {time.monotonic() - started:.0f} s", file=sys.stderr)
            results += time_pages(url, size)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "dashboard.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| store | page | median ms | p95 ms | max ms | bytes |\n|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['store']} | `{r['page']}` | {r['median_ms']} | {r['p95_ms']} | "
              f"{r['max_ms']} | {r['bytes']:,} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
