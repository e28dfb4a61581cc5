"""Run the selected benchmarks and write bench/results/latest.json and latest.md.

    BENCH_SCALE=smoke|small|full  python -m bench.run [append e2e rebuild serve rss startup shards]

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

MEASUREMENTS = ("append", "e2e", "rebuild", "serve", "rss", "startup", "shards")
MIB_TARGET = 200.0
# Issue 21's targets, each a ratio to a baseline of the same run (start-up: seconds).
APPEND_RATIO_MIN = 0.6
E2E_RATIO_MIN = 1.0
REBUILD_RATIO_MIN = 0.5
SERVE_RATIO_MIN = 0.5
P99_RATIO_MAX = 5.0
P99_MS_MAX = 25.0  # where verify-only does P99_FAST_RPS or more
P99_FAST_RPS = 8_000
HELP_S_MAX = 0.3
REPORT_S_MAX = 0.6


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


def _append_rows(append: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for stream, label in ((append, "demo"), (append["small"], "small")):
        rate, copy = stream["consume"]["events_s"], stream["copy"]["events_s"]
        cpu_us, busy = (
            stream["consume"].get("consumer_cpu_us_per_event"),
            stream["consume"].get("busy_cores"),
        )
        spent = f"; consume {cpu_us} us of CPU per event, {busy} cores busy" if cpu_us else ""
        rows.append(
            _row(
                "1",
                f"append: consume Kafka -> PostgreSQL store, {label} payloads "
                f"({stream['payload_bytes_mean']:,} B, {stream['events_distinct']:,} events"
                f"{spent})",
                rate,
                "events/s",
                f"COPY {copy:,.0f} events/s",
                rate / copy,
                f">= {APPEND_RATIO_MIN}x COPY",
                rate / copy >= APPEND_RATIO_MIN,
            )
        )
    return rows


def _e2e_rows(e2e: dict[str, Any]) -> list[dict[str, Any]]:
    ledger = e2e["ledger"]
    peer = e2e.get("peer", {})
    best = peer.get("best_events_s")
    rate = ledger["throughput"]["events_s"]
    base = (
        f"stripe-sync-engine {best:,.0f} events/s (c={peer['best_concurrency']})"
        if best
        else f"peer: {peer.get('unavailable') or peer.get('skipped')}"
    )
    alone = e2e["verify_only"]
    capacity = alone["capacity"]["events_s"]
    fixed = ledger["fixed_rate"]
    p99, p99_alone = fixed["ingest_latency"]["p99_ms"], alone["fixed_rate"]["ingest_latency"]
    ratio = p99 / max(p99_alone["p99_ms"], 0.01)
    fast = capacity >= P99_FAST_RPS
    return [
        _row(
            "2",
            "e2e: POST -> ingest -> Kafka -> consume -> project",
            rate,
            "events/s",
            base,
            rate / best if best else None,
            f">= {E2E_RATIO_MIN}x peer (aim 2x)",
            rate / best >= E2E_RATIO_MIN if best else None,
        ),
        _row(
            "2",
            f"e2e: ingest latency p99, pipeline running, at {fixed['rate_rps']:,} req/s "
            f"(1/4 of verify-only's {capacity:,.0f} req/s; "
            f"p50 {fixed['ingest_latency']['p50_ms']} ms)",
            p99,
            "ms",
            f"verify-only p99 {p99_alone['p99_ms']} ms at that rate",
            ratio,
            f"<= {P99_RATIO_MAX:g}x (and <= {P99_MS_MAX:g} ms where verify-only does "
            f">= {P99_FAST_RPS:,} req/s)",
            ratio <= P99_RATIO_MAX and (p99 <= P99_MS_MAX or not fast),
        ),
        _row(
            "2",
            f"e2e: event-to-projection lag p99 at {fixed['rate_rps']:,} req/s",
            fixed["lag_p99_ms"],
            "ms",
        ),
        _row(
            "2",
            "e2e: event-to-projection lag p99, throughput phase",
            ledger["throughput"]["lag_p99_ms"],
            "ms",
        ),
    ]


def _rebuild_rows(rebuild: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for store, label in ((rebuild, "demo"), (rebuild["small"], "small")):
        rate, read = store["rebuild"]["events_s"], store["read_json"]["events_s"]
        note = "" if store["rebuild"]["complete"] else " (stopped at the time budget)"
        rows.append(
            _row(
                "3",
                f"rebuild over {store['store_events']:,} events, {label} payloads "
                f"({store['payload_bytes_mean']:,} B){note}",
                rate,
                "events/s",
                f"server-side cursor + json.loads {read:,.0f} events/s",
                rate / read,
                f">= {REBUILD_RATIO_MIN}x",
                rate / read >= REBUILD_RATIO_MIN,
            )
        )
    peak = rebuild["rebuild"]["peak_rss_mib"]
    rows.append(
        _row(
            "3",
            f"rebuild: peak RSS over {rebuild['store_events']:,} events",
            peak,
            "MiB",
            "-",
            None,
            f"<= {MIB_TARGET:g} MiB",
            peak <= MIB_TARGET,
        )
    )
    return rows


def _startup_rows(startup: dict[str, Any]) -> list[dict[str, Any]]:
    floor = startup["python_pass"]["median_s"]
    rows = []
    for key, limit in (("help", HELP_S_MAX), ("report_balances", REPORT_S_MAX)):
        figure = startup[key]
        note = f", {startup['store_events']:,}-event SQLite store" if key != "help" else ""
        rows.append(
            _row(
                "6",
                f"start-up: `{figure['argv']}`{note} (median of {figure['runs']}, "
                f"{figure['min_s']}-{figure['max_s']} s)",
                figure["median_s"],
                "s",
                f"`python -c pass` {floor} s",
                figure["median_s"] / floor,
                f"<= {limit} s",
                figure["median_s"] <= limit,
            )
        )
    return rows


def _shards_rows(shards: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 17's figures: two workers beside one, in the same run (no target: a measurement
    of how far the second core goes, docs/SCALING.md)."""
    project, rebuilt = shards["project"], shards["rebuild"]
    one, two = project["one"], project["two"]
    rows = [
        _row(
            "7",
            f"project: {one['events']:,} demo events, 2 `project --shard I/2` workers "
            "(start-up included)",
            two["events_s"],
            "events/s",
            f"1 `project` worker {one['events_s']:,.0f} events/s "
            f"({one['busy_cores']} of the cores busy; 2 workers: {two['busy_cores']})",
            project["ratio"],
        )
    ]
    first, second = rebuilt["one"], rebuilt["two"]
    note = "" if first["complete"] and second["complete"] else " (stopped at the time budget)"
    rows.append(
        _row(
            "7",
            f"rebuild --workers 2 over the {rebuilt['store_events']:,}-event store{note}",
            second["events_s"],
            "events/s",
            f"rebuild (1 worker) {first['events_s']:,.0f} events/s "
            f"({first['busy_cores']} of the cores busy; 2 workers: {second['busy_cores']})",
            rebuilt["ratio"],
        )
    )
    return rows


def summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure: value, its baseline, the ratio, the target and whether it holds."""
    rows: list[dict[str, Any]] = []
    ok = {name: r for name, r in results.items() if r.get("status") == "ok"}
    if "append" in ok:
        rows += _append_rows(ok["append"])
    if "e2e" in ok:
        rows += _e2e_rows(ok["e2e"])
    if "rebuild" in ok:
        rows += _rebuild_rows(ok["rebuild"])
    if "serve" in ok:
        rate, base = ok["serve"]["serve"]["events_s"], ok["serve"]["verify_only"]["events_s"]
        rows.append(
            _row(
                "4",
                "serve (SQLite) end to end",
                rate,
                "events/s",
                f"verify-only handler {base:,.0f} events/s",
                rate / base,
                f">= {SERVE_RATIO_MIN}x",
                rate / base >= SERVE_RATIO_MIN,
            )
        )
    if "rss" in ok:
        for name, memory in ok["rss"]["processes"].items():
            rows.append(
                _row(
                    "5",
                    f"RSS of {name} after {ok['rss']['deliveries']:,} events",
                    memory["rss_mib"],
                    "MiB",
                    f"peak {memory['peak_rss_mib']} MiB",
                    None,
                    f"<= {MIB_TARGET:g} MiB",
                    memory["rss_mib"] <= MIB_TARGET,
                )
            )
    if "startup" in ok:
        rows += _startup_rows(ok["startup"])
    if "shards" in ok:
        rows += _shards_rows(ok["shards"])
    for name in MEASUREMENTS:
        if results.get(name, {}).get("status") == "error":
            rows.append(_row("-", f"{name}: FAILED {results[name]['error'][:120]}", None, ""))
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
