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


@pytest.mark.slow
def test_sigkill_loop_of_consume_and_project_under_load_loses_and_doubles_nothing(
    postgres_url: str, postgres_admin_url: str, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    phases: dict[str, float] = {}
    clock = {"at": time.monotonic()}

    def phase(name: str) -> None:
        now = time.monotonic()
        phases[name] = round(now - clock["at"], 1)
        clock["at"] = now

    history = generate(SEED, EVENTS)
    distinct = {event["id"] for event in history.events}
    create_topic(kafka_bootstrap, topic, partitions=3)
    migrate(create_engine(postgres_url))
    env = env_for(postgres_url, kafka_bootstrap, topic)
    db = Db(postgres_url)
    consumers: list[Worker] = []
    projectors: list[Worker] = []
    kills = {"consume": 0, "project": 0}
    problems: list[BaseException] = []  # from the kill threads
    incarnation = {"consume": 0, "project": 0}

    def start(kind: str) -> Worker:
        incarnation[kind] += 1
        n = incarnation[kind]
        if kind == "consume":
            # Mostly a fresh group per incarnation: the new member owns every partition at once
            # and relies on nothing but the offsets stored in the database. Every 4th reuses one
            # shared group: the SIGKILLed member's partitions move after its session timeout.
            group = "g-crash-shared" if n % 4 == 0 else f"g-crash-{n}"
            args = ["consume", "--topic", topic, "--group", group]
            worker = Worker(args, env, tmp_path / f"consume-{n}.log")
            consumers.append(worker)
        else:
            worker = Worker(["project"], env, tmp_path / f"project-{n}.log")
            projectors.append(worker)
        return worker

    ingest_env = env_for(postgres_url, kafka_bootstrap, topic)
    outcome: dict[str, object] = {}
    posting_done = threading.Event()

    with web.serve_cli(ingest_env, tmp_path / "ingest.log") as port:

        def paced() -> Iterator[bytes]:
            """The deliveries, never more than (kill rounds done + 1) / (KILLS_MIN + 1) of them
            ahead of the kills: whatever the machine's speed, every kill lands while ingest is
            still taking events, and the last part is sent after the last kill."""
            total = len(history.deliveries)
            pace_deadline = time.monotonic() + WAIT_S_MAX * 4
            for index, event in enumerate(history.deliveries):
                while index >= total * (min(kills.values()) + 1) // (KILLS_MIN + 1):
                    if problems or time.monotonic() > pace_deadline:
                        raise RuntimeError(f"the kill loop stalled: {kills}")
                    time.sleep(0.01)
                yield encode(event)

        def poster() -> None:
            try:
                outcome["result"] = post_all(
                    f"http://127.0.0.1:{port}{web.WEBHOOK}",
                    paced(),
                    web.SECRET,
                    concurrency=8,
                    timeout_s=30,
                    retries_max=5,
                )
            except BaseException as error:  # noqa: BLE001 - reported by the main thread
                outcome["error"] = error
            finally:
                posting_done.set()

        poster_thread = threading.Thread(target=poster, daemon=True)
        poster_thread.start()
        kills_during_posting = {"consume": 0, "project": 0}
        kills_mid_stream = {"consume": 0, "project": 0}
        current: dict[str, Worker] = {}

        def killer(kind: str, seed: int) -> None:
            """Start, let it work, SIGKILL at a random moment, restart: KILLS_MIN times."""
            local = random.Random(seed)
            probe = db.events if kind == "consume" else db.min_checkpoint
            try:
                while kills[kind] < KILLS_MIN and not problems:
                    before = probe()
                    worker = current[kind]
                    # Only once this incarnation did some work, so that the kill lands
                    # mid-stream, inside the next batches (bounded: a worker with nothing left
                    # to do is killed anyway).
                    progress_deadline = time.monotonic() + 20
                    while probe() == before and time.monotonic() < progress_deadline:
                        assert worker.alive(), worker.log_path.read_text()[-2000:]
                        time.sleep(0.02)
                    time.sleep(local.uniform(0.0, 0.5))
                    assert worker.alive(), worker.log_path.read_text()[-2000:]
                    posting = not posting_done.is_set()
                    flowing = probe() != before  # this incarnation stored / projected something
                    worker.kill()
                    kills[kind] += 1
                    kills_during_posting[kind] += posting
                    kills_mid_stream[kind] += flowing
                    time.sleep(local.uniform(0.0, 0.3))
                    current[kind] = start(kind)
            except BaseException as error:  # noqa: BLE001 - reported by the main thread
                problems.append(error)

        current["consume"] = start("consume")
        current["project"] = start("project")
        try:
            killers = [
                threading.Thread(target=killer, args=(kind, SEED + n), daemon=True)
                for n, kind in enumerate(("consume", "project"))
            ]
            for thread in killers:
                thread.start()
            for thread in killers:
                thread.join(WAIT_S_MAX * 4)
                assert not thread.is_alive(), f"the kill loop did not finish: {kills}"
            if problems:
                raise problems[0]
            phase("kill_loop")
            poster_thread.join(WAIT_S_MAX * 3)
            assert posting_done.is_set(), "the poster did not finish"
            phase("rest_of_posting")
        finally:
            for worker in current.values():
                worker.kill()

    if "error" in outcome:
        raise AssertionError(f"poster failed: {outcome['error']!r}")
    result = outcome["result"]
    summary = result.as_dict()  # type: ignore[attr-defined]
    # ingest had no fault: every delivery must have been answered 200 in the end.
    assert summary["sent"] == len(history.deliveries), summary
    assert summary["ok"] == len(history.deliveries) and summary["failed"] == 0, summary

    # Catch up with fresh incarnations, to idle, and check everything.
    run(["consume", "--topic", topic, "--group", "g-crash-final", "--until-idle", "5"], env, 600)
    phase("consume_catch_up")
    run(["project", "--until-idle", "2"], env, 600)
    phase("project_catch_up")
    stored = db.event_ids()
    records = topic_record_count(kafka_bootstrap, topic)
    figures = {
        "events": len(distinct),
        "deliveries": len(history.deliveries),
        "accepted_200": summary["ok"],
        "topic_records": records,
        "sigkill_consume": kills["consume"],
        "sigkill_project": kills["project"],
        "sigkill_during_posting": kills_during_posting,
        "sigkill_mid_stream": kills_mid_stream,
        "stored": len(stored),
        "lost": len(distinct - set(stored)),
        "duplicates": len(stored) - len(set(stored)),
        "poster_elapsed_s": summary["elapsed_s"],
    }
    print("crash-loop figures:", json.dumps(figures), flush=True)
    # Every kill landed while ingest took events and after the incarnation did some work.
    assert kills_during_posting == {"consume": KILLS_MIN, "project": KILLS_MIN}, figures
    assert kills_mid_stream == {"consume": KILLS_MIN, "project": KILLS_MIN}, figures
    assert figures["lost"] == 0 and figures["duplicates"] == 0, figures
    assert set(stored) == distinct, "nothing but the accepted events"
    assert db.offsets_sum() == records, "every record of the topic was consumed"
    assert db.dead_letters() == 0
    head = db.head()
    assert db.checkpoints() and all(p == head for p in db.checkpoints().values())
    run(["verify"], env, 600)
    phase("verify")
    live = reports(env)
    phase("reports")
    db.close()

    with extra_postgres(postgres_admin_url) as clean_url:
        clean_env = env_for(clean_url)
        run(["migrate"], clean_env)
        jsonl = tmp_path / "clean.jsonl"
        with open(jsonl, "wb") as handle:
            for event in history.events:
                handle.write(encode(event) + b"\n")
        run(["import", str(jsonl)], clean_env, 600)
        phase("clean_import")
        run(["project", "--until-idle", "1"], clean_env, 600)
        phase("clean_project")
        clean = reports(clean_env)
    print("crash-loop phases (s):", json.dumps(phases))
    assert all(clean[name] for name in clean), "the clean run has rows in every report"
    assert live == clean
