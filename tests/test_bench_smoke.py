"""The benchmark harness at its smoke size: it runs end to end and writes a well-formed result.

Benchmarks are not tests: nothing here asserts a speed. This only checks that `make bench` would
produce bench/results/latest.{json,md} with every measurement, positive figures, baselines from
the same run, the machine and the versions. (The peer, installed from npm, is not run at this
size.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import run

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]


def test_smoke_run_writes_a_well_formed_result(
    services: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in services.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))

    assert run.main(["--scale", "smoke", "--out", str(tmp_path)]) == 0

    report = json.loads((tmp_path / "latest.json").read_text())
    assert report["scale"] == "smoke"
    assert report["machine"]["cores"] >= 1 and report["machine"]["memory_gib"] > 0
    assert {"python", "postgresql", "sqlite", "stripe-ledger"} <= set(report["versions"])
    results = report["results"]
    assert set(results) == set(run.MEASUREMENTS)
    assert all(result["status"] == "ok" for result in results.values()), results

    assert results["append"]["consume"]["events_s"] > 0
    assert results["append"]["copy"]["events_s"] > 0
    ledger = results["e2e"]["ledger"]
    assert ledger["throughput"]["events_s"] > 0
    assert ledger["fixed_rate"]["ingest_latency"]["p99_ms"] > 0
    assert (
        ledger["fixed_rate"]["ingest_latency"]["ok"]
        == ledger["fixed_rate"]["ingest_latency"]["requests"]
    )
    assert results["rebuild"]["rebuild"]["events_s"] > 0
    assert results["rebuild"]["read_json"]["events_s"] > 0
    assert results["rebuild"]["rebuild"]["peak_rss_mib"] > 0
    assert results["serve"]["serve"]["events_s"] > 0
    assert results["serve"]["verify_only"]["events_s"] > 0
    # issue 21: both payload sizes, verify-only's latency at the rate, start-up on its own
    for stream in (results["append"]["small"], results["rebuild"]["small"]):
        assert stream["payload_bytes_mean"] > 0
    assert results["append"]["small"]["consume"]["events_s"] > 0
    assert results["append"]["small"]["copy"]["events_s"] > 0
    assert results["rebuild"]["small"]["rebuild"]["events_s"] > 0
    assert results["rebuild"]["small"]["read_json"]["events_s"] > 0
    alone = results["e2e"]["verify_only"]
    assert alone["capacity"]["events_s"] > 0
    assert alone["fixed_rate"]["ingest_latency"]["p99_ms"] > 0
    assert alone["fixed_rate"]["rate_rps"] == ledger["fixed_rate"]["rate_rps"]
    for key in ("python_pass", "help", "report_balances"):
        assert results["startup"][key]["median_s"] > 0
    for memory in results["rss"]["processes"].values():
        assert memory["rss_mib"] > 0 and memory["peak_rss_mib"] >= memory["rss_mib"]

    rows = report["summary"]
    assert {row["number"] for row in rows} >= {"1", "2", "3", "4", "5", "6"}
    assert all(row["value"] is not None and row["value"] > 0 for row in rows)
    markdown = (tmp_path / "latest.md").read_text()
    assert "| # | measurement | value | unit | baseline (same run) | ratio | target | holds |" in (
        markdown
    )
    assert f"{report['machine']['cores']} cores" in markdown
    assert len([line for line in markdown.splitlines() if line.startswith("| ")]) == len(rows) + 1
