"""2. end to end: signed POSTs -> ingest -> Kafka -> consume -> project, until every projection
reflects every event. Baseline: @supabase/stripe-sync-engine on the same events (bench.peer).

First the verify-only handler (``bench.verify_only``) alone: its capacity (``e2e_capacity_events``
POSTs from ``e2e_concurrency`` clients as fast as they are answered) and then its latency at a
quarter of that capacity (open loop, ``e2e_rate_s`` seconds). Then, on one running pipeline
(after a warm-up of 200 events):

- throughput: ``e2e_events`` deliveries from ``e2e_concurrency`` clients as fast as they are
  answered; events/s = deliveries / (first request -> all three projections at the store's
  head). Ingest latency percentiles of this phase are reported too (a saturated server).
- fixed rate: the same quarter of verify-only's capacity, the same payloads, the same duration,
  open loop, with consume and project running: ingest's p99 against verify-only's p99 at that
  rate is issue 21's latency target (<= 5x, and <= 25 ms where verify-only does >= 8,000
  requests/s), with the event-to-projection lag (ingest receive time -> the lowest projection
  checkpoint covers the event).
"""

from __future__ import annotations

from typing import Any

from bench import load, verify_only
from bench.common import (
    SECRET,
    Scale,
    distinct_ids,
    migrated,
    payloads,
    percentile,
    scratch_database,
)
from bench.pipeline import LagSampler, Pipeline

WARMUP_EVENTS = 200


def _ms(values: list[float], fraction: float) -> float:
    return round(percentile(values, fraction) * 1000, 2)


def _latency(result: load.LoadResult) -> dict[str, Any]:
    return {
        "requests": result.sent,
        "ok": result.ok,
        "statuses": result.statuses,
        "retries": result.retries,
        "p50_ms": _ms(result.latencies_s, 0.50),
        "p99_ms": _ms(result.latencies_s, 0.99),
        "max_ms": _ms(result.latencies_s, 1.0),
    }


RATE_FRACTION = 0.25  # issue 21: the fixed rate is 1/4 of the same run's verify-only capacity
RATE_CLIENTS_MIN = 16


def _post_at_rate(port: int, rows: list[bytes], rate_rps: float, scale: Scale) -> load.LoadResult:
    """The fixed-rate phase's load: open loop at ``rate_rps``."""
    concurrency = max(RATE_CLIENTS_MIN, scale.e2e_concurrency)
    return load.post(port, rows, secret=SECRET, concurrency=concurrency, rate_rps=rate_rps)


def _rate_figures(result: load.LoadResult, rate_rps: float) -> dict[str, Any]:
    return {
        "rate_rps": round(rate_rps, 1),
        "seconds": round(result.elapsed_s, 3),
        "achieved_rps": round(result.ok / result.elapsed_s, 1),
        "ingest_latency": _latency(result),
    }


def run_verify_only(scale: Scale) -> tuple[dict[str, Any], list[bytes]]:
    """Verify-only's capacity, then its latency at RATE_FRACTION of it; and the rate's rows."""
    capacity_rows = payloads(scale.e2e_capacity_events, seed=12)
    with verify_only.running() as port:
        burst = load.post(port, capacity_rows, secret=SECRET, concurrency=scale.e2e_concurrency)
        capacity_rps = burst.ok / burst.elapsed_s
        rate_rps = capacity_rps * RATE_FRACTION
        pool = payloads(scale.e2e_rate_events_max, seed=8)
        rated = pool[: max(1, min(len(pool), int(rate_rps * scale.e2e_rate_s)))]
        at_rate = _post_at_rate(port, rated, rate_rps, scale)
    figures = {
        "capacity": {
            "deliveries": len(capacity_rows),
            "events_s": capacity_rps,
            "ingest_latency": _latency(burst),
        },
        "fixed_rate": _rate_figures(at_rate, rate_rps),
    }
    return figures, rated


def run_ledger(
    scale: Scale, services: dict[str, str], rated: list[bytes], rate_rps: float
) -> dict[str, Any]:
    warm = payloads(WARMUP_EVENTS, seed=99)
    main = payloads(scale.e2e_events, seed=7)
    with scratch_database(services["LEDGER_DATABASE_URL"], "e2e") as url:
        migrated(url).dispose()
        pipeline = Pipeline(url, services["LEDGER_KAFKA_BOOTSTRAP"], "e2e")
        try:
            expected = distinct_ids(warm)
            load.post(pipeline.port, warm, secret=SECRET, concurrency=8)
            pipeline.wait_projected(expected)
            with pipeline.engine.connect() as connection:
                before = pipeline.head(connection)
            expected += distinct_ids(main)
            with LagSampler(pipeline) as sampler:
                burst = load.post(
                    pipeline.port, main, secret=SECRET, concurrency=scale.e2e_concurrency
                )
                done = pipeline.wait_projected(expected)
            seconds = done - burst.started
            throughput = {
                "deliveries": len(main),
                "distinct_events": distinct_ids(main),
                "seconds": round(seconds, 3),
                "events_s": len(main) / seconds,
                "ingest_only_events_s": len(main) / burst.elapsed_s,
                "ingest_latency": _latency(burst),
                "lag_p50_ms": _ms(sampler.lags_s(before), 0.50),
                "lag_p99_ms": _ms(sampler.lags_s(before), 0.99),
            }
            with pipeline.engine.connect() as connection:
                before = pipeline.head(connection)
            expected += distinct_ids(rated)
            with LagSampler(pipeline) as sampler:
                steady = _post_at_rate(pipeline.port, rated, rate_rps, scale)
                pipeline.wait_projected(expected)
            lags = sampler.lags_s(before)
            fixed_rate = {
                **_rate_figures(steady, rate_rps),
                "lag_p50_ms": _ms(lags, 0.50),
                "lag_p99_ms": _ms(lags, 0.99),
            }
            memory = pipeline.memory()
        finally:
            pipeline.stop()
    return {"throughput": throughput, "fixed_rate": fixed_rate, "rss": memory}


def run(scale: Scale, services: dict[str, str]) -> dict[str, Any]:
    alone, rated = run_verify_only(scale)
    rate_rps = alone["fixed_rate"]["rate_rps"]
    result: dict[str, Any] = {
        "verify_only": alone,
        "ledger": run_ledger(scale, services, rated, rate_rps),
    }
    ingest_p99 = result["ledger"]["fixed_rate"]["ingest_latency"]["p99_ms"]
    result["p99_vs_verify_only"] = ingest_p99 / max(
        alone["fixed_rate"]["ingest_latency"]["p99_ms"], 0.01
    )
    if scale.peer:
        from bench import peer

        try:
            result["peer"] = peer.run(scale, services)
        except peer.PeerUnavailable as error:
            result["peer"] = {"unavailable": str(error)}
    else:
        result["peer"] = {"skipped": f"not run at BENCH_SCALE={scale.name}"}
    peer_rate = result["peer"].get("best_events_s") if isinstance(result["peer"], dict) else None
    ledger_rate = result["ledger"]["throughput"]["events_s"]
    result["ratio_vs_peer"] = ledger_rate / peer_rate if peer_rate else None
    return result
