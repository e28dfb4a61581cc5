"""Run the selected benchmarks and write bench/results/latest.json and latest.md.

    BENCH_SCALE=smoke|small|full  python -m bench.run [append e2e rebuild serve rss]

Every figure stands beside its baseline measured in the same run. No figure is asserted: this
is a measurement, not a test (tests/test_bench_smoke.py only checks the result is well formed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import common

MEASUREMENTS = ("append", "e2e", "rebuild", "serve", "rss")
MIB_TARGET = 200.0


def _measure(name: str, scale: common.Scale, services: dict[str, str]) -> dict[str, Any]:
    module = __import__(f"bench.{name}", fromlist=["run"])
    started = time.monotonic()
    try:
        figures = module.run(scale, services)
        status = "ok"
    except Exception as error:  # noqa: BLE001 - one failed benchmark must not hide the others
        figures = {"error": f"{type(error).__name__}: {error}"[:2000]}
        traceback.print_exc()
        status = "error"
    return {"status": status, "wall_s": round(time.monotonic() - started, 1), **figures}


def _row(
    number: str,
    what: str,
    value: float | None,
    unit: str,
    baseline: str = "-",
    ratio: float | None = None,
    target: str = "-",
    holds: bool | None = None,
) -> dict[str, Any]:
    return {
        "number": number,
        "measurement": what,
        "value": None if value is None else round(value, 2),
        "unit": unit,
        "baseline": baseline,
        "ratio": None if ratio is None else round(ratio, 3),
        "target": target,
        "holds": holds,
    }


def summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure: value, its baseline, the ratio, the target and whether it holds."""
    rows: list[dict[str, Any]] = []
    append = results.get("append", {})
    if append.get("status") == "ok":
        rate, copy = append["consume"]["events_s"], append["copy"]["events_s"]
        rows.append(
            _row(
                "1",
                "append: consume Kafka -> PostgreSQL store",
                rate,
                "events/s",
                f"COPY {copy:,.0f} events/s",
                rate / copy,
                ">= 0.5x COPY",
                rate / copy >= 0.5,
            )
        )
    e2e = results.get("e2e", {})
    if e2e.get("status") == "ok":
        ledger = e2e["ledger"]
        peer = e2e.get("peer", {})
        best = peer.get("best_events_s")
        rate = ledger["throughput"]["events_s"]
        base = (
            f"stripe-sync-engine {best:,.0f} events/s (c={peer['best_concurrency']})"
            if best
            else f"peer: {peer.get('unavailable') or peer.get('skipped')}"
        )
        rows.append(
            _row(
                "2",
                "e2e: POST -> ingest -> Kafka -> consume -> project",
                rate,
                "events/s",
                base,
                rate / best if best else None,
                ">= 3x peer",
                rate / best >= 3 if best else None,
            )
        )
        fixed = ledger["fixed_rate"]
        p99 = fixed["ingest_latency"]["p99_ms"]
        rows.append(
            _row(
                "2",
                f"e2e: ingest latency p50 at {fixed['rate_rps']} req/s",
                fixed["ingest_latency"]["p50_ms"],
                "ms",
            )
        )
        rows.append(
            _row(
                "2",
                f"e2e: ingest latency p99 at {fixed['rate_rps']} req/s",
                p99,
                "ms",
                "-",
                None,
                "<= 25 ms at 500 req/s",
                p99 <= 25 if fixed["rate_rps"] >= 500 else None,
            )
        )
        alone = ledger.get("fixed_rate_ingest_alone")
        if alone:
            p99_alone = alone["ingest_latency"]["p99_ms"]
            rows.append(
                _row(
                    "2",
                    f"e2e: ingest latency p99 at {alone['rate_rps']} req/s, ingest alone "
                    "(consume, project paused)",
                    p99_alone,
                    "ms",
                    f"p50 {alone['ingest_latency']['p50_ms']} ms",
                    None,
                    "(diagnostic)",
                    None,
                )
            )
        rows.append(
            _row(
                "2",
                f"e2e: event-to-projection lag p99 at {fixed['rate_rps']} req/s",
                fixed["lag_p99_ms"],
                "ms",
            )
        )
        rows.append(
            _row(
                "2",
                "e2e: event-to-projection lag p99, throughput phase",
                ledger["throughput"]["lag_p99_ms"],
                "ms",
            )
        )
    rebuild = results.get("rebuild", {})
    if rebuild.get("status") == "ok":
        rate, read = rebuild["rebuild"]["events_s"], rebuild["read_json"]["events_s"]
        note = "" if rebuild["rebuild"]["complete"] else " (stopped at the time budget)"
        rows.append(
            _row(
                "3",
                f"rebuild over {rebuild['store_events']:,} events{note}",
                rate,
                "events/s",
                f"read + JSON decode {read:,.0f} events/s",
                rate / read,
                ">= 30,000/s and >= 0.5x",
                rate >= 30_000 and rate / read >= 0.5,
            )
        )
        peak = rebuild["rebuild"]["peak_rss_mib"]
        rows.append(
            _row("3", "rebuild: peak RSS", peak, "MiB", "-", None, "<= 1024 MiB", peak <= 1024)
        )
    serve = results.get("serve", {})
    if serve.get("status") == "ok":
        rate, base = serve["serve"]["events_s"], serve["verify_only"]["events_s"]
        rows.append(
            _row(
                "4",
                "serve (SQLite) end to end",
                rate,
                "events/s",
                f"verify-only handler {base:,.0f} events/s",
                rate / base,
                ">= 2,000/s and >= 0.5x",
                rate >= 2000 and rate / base >= 0.5,
            )
        )
    rss = results.get("rss", {})
    if rss.get("status") == "ok":
        for name, memory in rss["processes"].items():
            rows.append(
                _row(
                    "5",
                    f"RSS of {name} after {rss['deliveries']:,} events",
                    memory["rss_mib"],
                    "MiB",
                    f"peak {memory['peak_rss_mib']} MiB",
                    None,
                    "<= 200 MiB",
                    memory["rss_mib"] <= MIB_TARGET,
                )
            )
    for name in MEASUREMENTS:
        if results.get(name, {}).get("status") == "error":
            rows.append(
                _row(
                    "-",
                    f"{name}: FAILED {results[name]['error'][:120]}",
                    None,
                    "",
                )
            )
    return rows


def markdown(report: dict[str, Any]) -> str:
    m, v = report["machine"], report["versions"]
    lines = [
        "# stripe-ledger benchmarks",
        "",
        f"Run {report['started_at']} at BENCH_SCALE={report['scale']} "
        f"({report['wall_s']:.0f} s). Machine: {m['cores']} cores ({m['cpu']}), "
        f"{m['memory_gib']} GiB memory, Linux {m['kernel']}.",
        "",
        "Versions: " + ", ".join(f"{key} {value}" for key, value in v.items()) + ".",
        "",
        "| # | measurement | value | unit | baseline (same run) | ratio | target | holds |",
        "|---|---|---:|---|---|---:|---|---|",
    ]
    for row in report["summary"]:
        value = "-" if row["value"] is None else f"{row['value']:,}"
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}x"
        holds = {True: "yes", False: "**no**", None: "-"}[row["holds"]]
        lines.append(
            f"| {row['number']} | {row['measurement']} | {value} | {row['unit']} | "
            f"{row['baseline']} | {ratio} | {row['target']} | {holds} |"
        )
    lines += [
        "",
        "All figures, with the raw counts behind them: `latest.json`. Context: "
        "docs/PERFORMANCE.md.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("measurements", nargs="*", choices=[*MEASUREMENTS, []], default=[])
    parser.add_argument("--scale", default=None, help="smoke | small | full (or BENCH_SCALE)")
    parser.add_argument("--out", default=str(common.RESULTS_DIR), help="results directory")
    args = parser.parse_args(argv)
    scale = common.scale(args.scale)
    selected = args.measurements or list(MEASUREMENTS)
    services = common.services_env()
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    results: dict[str, Any] = {}
    for name in selected:
        print(f"[bench] {name} at scale {scale.name} ...", file=sys.stderr, flush=True)
        results[name] = _measure(name, scale, services)
        print(
            f"[bench] {name}: {results[name]['status']} in {results[name]['wall_s']} s",
            file=sys.stderr,
            flush=True,
        )
    report: dict[str, Any] = {
        "scale": scale.name,
        "started_at": started_at,
        "wall_s": round(time.monotonic() - started, 1),
        "machine": common.machine(),
        "versions": common.versions(services.get("LEDGER_DATABASE_URL")),
        "summary": [],
        "results": results,
    }
    peer = results.get("e2e", {}).get("peer", {})
    if isinstance(peer, dict) and peer.get("package"):
        report["versions"]["peer"] = peer["package"]
    report["summary"] = summary(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("latest.json", json.dumps(report, indent=2, default=str) + "\n"),
        ("latest.md", markdown(report)),
    ):
        tmp = out / f"{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)
    print(markdown(report))
    return 0 if all(r["status"] == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
