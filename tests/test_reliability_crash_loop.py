"""The crash loop: a realistic signed history through the real pipeline while the consumer and
the projection worker are SIGKILLed at random moments and restarted.

ingest (process) -> Kafka (real broker) -> consume (process, killed) -> PostgreSQL -> project
(process, killed). At the end: every event answered 200 is stored exactly once, every record of
the topic was consumed, ``verify`` passes, and the reports equal a clean run's (the same distinct
events imported into a fresh database and projected once, with no fault).

Sizes (docs/RELIABILITY.md): ``EVENTS`` distinct events, 15,000 by default (about 15,400
deliveries: 3% are duplicates), so that the whole reliability set fits its time budget on a
2-core machine; ``LEDGER_CRASH_LOOP_EVENTS=50000`` runs the full-size loop (about 8 minutes
there). ``KILLS_MIN`` SIGKILLs of each worker, every one while the poster is still sending.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.client import post_all
from demo.history import encode, generate
from ledger.database import create_engine, migrate
from tests.support import ingest as web
from tests.support.kafka_util import create_topic
from tests.support.reliability import (
    WAIT_S_MAX,
    Db,
    Worker,
    env_for,
    extra_postgres,
    reports,
    run,
    topic_record_count,
)

EVENTS = int(os.environ.get("LEDGER_CRASH_LOOP_EVENTS", "15000"))
KILLS_MIN = 10
SEED = 20261127


class _CrashLoop:
    """The workers of one crash loop, their SIGKILLs and restarts, and the time of each phase."""

    def __init__(self, env: dict[str, str], topic: str, db: Db, tmp_path: Path) -> None:
        self.env, self.topic, self.db, self.tmp_path = env, topic, db, tmp_path
        self.phases: dict[str, float] = {}
        self._phase_at = time.monotonic()
        self.consumers: list[Worker] = []
        self.projectors: list[Worker] = []
        self.current: dict[str, Worker] = {}
        self.kills = {"consume": 0, "project": 0}
        self.kills_during_posting = {"consume": 0, "project": 0}
        self.kills_mid_stream = {"consume": 0, "project": 0}
        self.incarnation = {"consume": 0, "project": 0}
        self.problems: list[BaseException] = []  # from the kill threads
        self.posting_done = threading.Event()

    def phase(self, name: str) -> None:
        now = time.monotonic()
        self.phases[name] = round(now - self._phase_at, 1)
        self._phase_at = now

    def start(self, kind: str) -> Worker:
        self.incarnation[kind] += 1
        n = self.incarnation[kind]
        if kind == "consume":
            # Mostly a fresh group per incarnation: the new member owns every partition at once
            # and relies on nothing but the offsets stored in the database. Every 4th reuses one
            # shared group: the SIGKILLed member's partitions move after its session timeout.
            group = "g-crash-shared" if n % 4 == 0 else f"g-crash-{n}"
            args = ["consume", "--topic", self.topic, "--group", group]
            worker = Worker(args, self.env, self.tmp_path / f"consume-{n}.log")
            self.consumers.append(worker)
        else:
            worker = Worker(["project"], self.env, self.tmp_path / f"project-{n}.log")
            self.projectors.append(worker)
        return worker

    def paced(self, deliveries: list[dict[str, object]]) -> Iterator[bytes]:
        """The deliveries, never more than (kill rounds done + 1) / (KILLS_MIN + 1) of them
        ahead of the kills: whatever the machine's speed, every kill lands while ingest is
        still taking events, and the last part is sent after the last kill."""
        total = len(deliveries)
        pace_deadline = time.monotonic() + WAIT_S_MAX * 4
        for index, event in enumerate(deliveries):
            while index >= total * (min(self.kills.values()) + 1) // (KILLS_MIN + 1):
                if self.problems or time.monotonic() > pace_deadline:
                    raise RuntimeError(f"the kill loop stalled: {self.kills}")
                time.sleep(0.01)
            yield encode(event)

    def killer(self, kind: str, seed: int) -> None:
        """Start, let it work, SIGKILL at a random moment, restart: KILLS_MIN times."""
        local = random.Random(seed)
        probe = self.db.events if kind == "consume" else self.db.min_checkpoint
        try:
            while self.kills[kind] < KILLS_MIN and not self.problems:
                before = probe()
                worker = self.current[kind]
                # Only once this incarnation did some work, so that the kill lands
                # mid-stream, inside the next batches (bounded: a worker with nothing left
                # to do is killed anyway).
                progress_deadline = time.monotonic() + 20
                while probe() == before and time.monotonic() < progress_deadline:
                    assert worker.alive(), worker.log_path.read_text()[-2000:]
                    time.sleep(0.02)
                time.sleep(local.uniform(0.0, 0.5))
                assert worker.alive(), worker.log_path.read_text()[-2000:]
                posting = not self.posting_done.is_set()
                flowing = probe() != before  # this incarnation stored / projected something
                worker.kill()
                self.kills[kind] += 1
                self.kills_during_posting[kind] += posting
                self.kills_mid_stream[kind] += flowing
                time.sleep(local.uniform(0.0, 0.3))
                self.current[kind] = self.start(kind)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            self.problems.append(error)

    def kill_while_posting(self, poster_thread: threading.Thread) -> None:
        """Both kill loops to their end while the poster sends, then the poster to its end."""
        self.current["consume"] = self.start("consume")
        self.current["project"] = self.start("project")
        try:
            killers = [
                threading.Thread(target=self.killer, args=(kind, SEED + n), daemon=True)
                for n, kind in enumerate(("consume", "project"))
            ]
            for thread in killers:
                thread.start()
            for thread in killers:
                thread.join(WAIT_S_MAX * 4)
                assert not thread.is_alive(), f"the kill loop did not finish: {self.kills}"
            if self.problems:
                raise self.problems[0]
            self.phase("kill_loop")
            poster_thread.join(WAIT_S_MAX * 3)
            assert self.posting_done.is_set(), "the poster did not finish"
            self.phase("rest_of_posting")
        finally:
            for worker in self.current.values():
                worker.kill()


def _post_under_kills(loop: _CrashLoop, history: Any, ingest_env: dict[str, str]) -> Any:
    """ingest takes the history (8 senders) while the workers are killed; the poster's result."""
    outcome: dict[str, object] = {}
    with web.serve_cli(ingest_env, loop.tmp_path / "ingest.log") as port:

        def poster() -> None:
            try:
                outcome["result"] = post_all(
                    f"http://127.0.0.1:{port}{web.WEBHOOK}",
                    loop.paced(history.deliveries),
                    web.SECRET,
                    concurrency=8,
                    timeout_s=30,
                    retries_max=5,
                )
            except BaseException as error:  # noqa: BLE001 - reported by the main thread
                outcome["error"] = error
            finally:
                loop.posting_done.set()

        poster_thread = threading.Thread(target=poster, daemon=True)
        poster_thread.start()
        loop.kill_while_posting(poster_thread)
    if "error" in outcome:
        raise AssertionError(f"poster failed: {outcome['error']!r}")
    return outcome["result"]


def _check_the_store(
    loop: _CrashLoop, history: Any, summary: dict[str, Any], kafka_bootstrap: str
) -> None:
    """Caught up with fresh incarnations: each event stored once, each record consumed."""
    env, db, topic = loop.env, loop.db, loop.topic
    distinct = {event["id"] for event in history.events}
    run(["consume", "--topic", topic, "--group", "g-crash-final", "--until-idle", "5"], env, 600)
    loop.phase("consume_catch_up")
    run(["project", "--until-idle", "2"], env, 600)
    loop.phase("project_catch_up")
    stored = db.event_ids()
    records = topic_record_count(kafka_bootstrap, topic)
    figures = {
        "events": len(distinct),
        "deliveries": len(history.deliveries),
        "accepted_200": summary["ok"],
        "topic_records": records,
        "sigkill_consume": loop.kills["consume"],
        "sigkill_project": loop.kills["project"],
        "sigkill_during_posting": loop.kills_during_posting,
        "sigkill_mid_stream": loop.kills_mid_stream,
        "stored": len(stored),
        "lost": len(distinct - set(stored)),
        "duplicates": len(stored) - len(set(stored)),
        "poster_elapsed_s": summary["elapsed_s"],
    }
    print("crash-loop figures:", json.dumps(figures), flush=True)
    # Every kill landed while ingest took events and after the incarnation did some work.
    assert loop.kills_during_posting == {"consume": KILLS_MIN, "project": KILLS_MIN}, figures
    assert loop.kills_mid_stream == {"consume": KILLS_MIN, "project": KILLS_MIN}, figures
    assert figures["lost"] == 0 and figures["duplicates"] == 0, figures
    assert set(stored) == distinct, "nothing but the accepted events"
    assert db.offsets_sum() == records, "every record of the topic was consumed"
    assert db.dead_letters() == 0
    head = db.head()
    assert db.checkpoints() and all(p == head for p in db.checkpoints().values())


def _clean_reports(loop: _CrashLoop, history: Any, postgres_admin_url: str) -> dict[str, Any]:
    """The reports of the same distinct events imported into a fresh database, projected once."""
    with extra_postgres(postgres_admin_url) as clean_url:
        clean_env = env_for(clean_url)
        run(["migrate"], clean_env)
        jsonl = loop.tmp_path / "clean.jsonl"
        with open(jsonl, "wb") as handle:
            for event in history.events:
                handle.write(encode(event) + b"\n")
        run(["import", str(jsonl)], clean_env, 600)
        loop.phase("clean_import")
        run(["project", "--until-idle", "1"], clean_env, 600)
        loop.phase("clean_project")
        return reports(clean_env)


@pytest.mark.slow
def test_sigkill_loop_of_consume_and_project_under_load_loses_and_doubles_nothing(
    postgres_url: str, postgres_admin_url: str, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    history = generate(SEED, EVENTS)
    create_topic(kafka_bootstrap, topic, partitions=3)
    migrate(create_engine(postgres_url))
    env = env_for(postgres_url, kafka_bootstrap, topic)
    loop = _CrashLoop(env, topic, Db(postgres_url), tmp_path)
    result = _post_under_kills(loop, history, env_for(postgres_url, kafka_bootstrap, topic))
    summary = result.as_dict()
    # ingest had no fault: every delivery must have been answered 200 in the end.
    assert summary["sent"] == len(history.deliveries), summary
    assert summary["ok"] == len(history.deliveries) and summary["failed"] == 0, summary
    _check_the_store(loop, history, summary, kafka_bootstrap)
    run(["verify"], env, 600)
    loop.phase("verify")
    live = reports(env)
    loop.phase("reports")
    loop.db.close()
    clean = _clean_reports(loop, history, postgres_admin_url)
    print("crash-loop phases (s):", json.dumps(loop.phases))
    assert all(clean[name] for name in clean), "the clean run has rows in every report"
    assert live == clean
