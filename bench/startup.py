"""6. start-up of the CLI, measured on its own: wall time of whole commands, median of N runs.

- ``stripe-ledger --help`` (target <= 0.3 s): nothing but the parser;
- ``stripe-ledger report balances`` on a small SQLite store (the demo's first 1,000 deliveries,
  imported and projected beforehand; target <= 0.6 s): start-up plus one small query.

Baseline, same run: ``python -c pass`` with the same interpreter (the floor no command beats).
Each run is a fresh process (``subprocess.run``, output discarded); the median of
``startup_runs`` runs is reported with the lowest and the highest.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import Scale, ledger_env, payloads, stripe_ledger

STORE_EVENTS = 1_000
COMMAND_TIMEOUT_S = 120


def _run(argv: Sequence[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        list(argv),
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=COMMAND_TIMEOUT_S,
    )
    return time.perf_counter() - started


def _timed(argv: Sequence[str], env: dict[str, str], runs: int) -> dict[str, Any]:
    _run(argv, env)  # once unmeasured: the files are in the page cache for every measured run
    seconds = [_run(argv, env) for _ in range(runs)]
    return {
        "argv": " ".join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv)),
        "runs": runs,
        "median_s": round(statistics.median(seconds), 4),
        "min_s": round(min(seconds), 4),
        "max_s": round(max(seconds), 4),
    }


def _small_store(directory: Path) -> dict[str, str]:
    """A SQLite store of the demo's first deliveries, migrated, imported and projected."""
    env = ledger_env({"LEDGER_DATABASE_URL": f"sqlite:///{directory / 'startup.db'}"})
    events = directory / "events.jsonl"
    events.write_bytes(b"\n".join(payloads(STORE_EVENTS, seed=5)) + b"\n")
    for argv in (["migrate"], ["import", str(events)], ["project", "--until-idle", "0"]):
        subprocess.run(stripe_ledger(*argv), env=env, check=True, capture_output=True, timeout=600)
    return env


def run(scale: Scale, services: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        env = _small_store(Path(tmp))
        floor = _timed([sys.executable, "-c", "pass"], env, scale.startup_runs)
        help_ = _timed(stripe_ledger("--help"), env, scale.startup_runs)
        report = _timed(stripe_ledger("report", "balances"), env, scale.startup_runs)
    return {
        "store_events": STORE_EVENTS,
        "python_pass": floor,
        "help": help_,
        "report_balances": report,
    }
