"""2. end to end: signed POSTs -> ingest -> Kafka -> consume -> project, until every projection
reflects every event. Baseline: @supabase/stripe-sync-engine on the same events (bench.peer).

Two phases on one running pipeline (after a warm-up of 200 events):

- throughput: ``e2e_events`` deliveries from ``e2e_concurrency`` clients as fast as they are
  answered; events/s = deliveries / (first request -> all three projections at the store's
  head). Ingest latency percentiles of this phase are reported too (a saturated server).
- fixed rate: ``e2e_rate_rps`` requests/s for ``e2e_rate_s`` seconds, open loop; the ingest
  latency target (p99 <= 25 ms at 500 requests/s) is read here, with the event-to-projection
  lag (ingest receive time -> the lowest projection checkpoint covers the event).
- the same fixed rate against ingest alone (consume and project paused with SIGSTOP), to show
  what the latency is when ingest does not share the 2 cores with the rest of the pipeline.
"""

from __future__ import annotations

from typing import Any

from bench import load
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


def _post_at_rate(pipeline: Pipeline, rows: list[bytes], scale: Scale) -> load.LoadResult:
    """The fixed-rate phase's load: open loop at ``e2e_rate_rps``."""
    concurrency = max(16, scale.e2e_concurrency)
    return load.post(
        pipeline.port, rows, secret=SECRET, concurrency=concurrency, rate_rps=scale.e2e_rate_rps
    )


def _rate_figures(result: load.LoadResult, scale: Scale) -> dict[str, Any]:
    return {
        "rate_rps": scale.e2e_rate_rps,
        "seconds": round(result.elapsed_s, 3),
        "achieved_rps": round(result.ok / result.elapsed_s, 1),
        "ingest_latency": _latency(result),
    }


def run_ledger(scale: Scale, services: dict[str, str]) -> dict[str, Any]:
    warm = payloads(WARMUP_EVENTS, seed=99)
    main = payloads(scale.e2e_events, seed=7)
    rated = payloads(int(scale.e2e_rate_rps * scale.e2e_rate_s), seed=8)
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
                steady = _post_at_rate(pipeline, rated, scale)
                pipeline.wait_projected(expected)
            lags = sampler.lags_s(before)
            fixed_rate = {
                **_rate_figures(steady, scale),
                "lag_p50_ms": _ms(lags, 0.50),
                "lag_p99_ms": _ms(lags, 0.99),
            }
            # The same rate against ingest alone (consume and project stopped with SIGSTOP, so
            # they take no CPU; Kafka and PostgreSQL still run): how much of the latency above is
            # the two cores being shared with the rest of the pipeline.
            alone_rows = payloads(int(scale.e2e_rate_rps * scale.e2e_rate_s), seed=9)
            pipeline.pause("consume", "project")
            try:
                alone = _post_at_rate(pipeline, alone_rows, scale)
            finally:
                pipeline.resume("consume", "project")
            expected += distinct_ids(alone_rows)
            pipeline.wait_projected(expected)
            fixed_rate_alone = _rate_figures(alone, scale)
            memory = pipeline.memory()
        finally:
            pipeline.stop()
    return {
        "throughput": throughput,
        "fixed_rate": fixed_rate,
        "fixed_rate_ingest_alone": fixed_rate_alone,
        "rss": memory,
    }


def run(scale: Scale, services: dict[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {"ledger": run_ledger(scale, services)}
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
