"""Projection shards (issue 17): ``project --shard I/N`` and ``rebuild --workers N --shards N``.

- The property: for any history, any N, any batching, any interleaving of the shards' batches,
  duplicates included, the N shards' rows equal ONE fold's rows (both databases).
- Shard workers: their own checkpoints, a stale one cannot apply a batch twice, a worker with
  the wrong N is refused with a clear error, verify's fresh fold agrees per shard, and changing
  N goes through a rebuild (which may itself fill the generation with several processes).
- Killed (slow, PostgreSQL): two ``project --shard`` processes SIGKILLed at random while a
  history is imported; the reports equal a single worker's run of the same events.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import projections_cmds
from demo.history import encode, generate
from ledger.database import WRITE, create_engine, migrate
from ledger.envelope import EnvelopeError
from ledger.settings import Settings
from ledger.store import EventStore, open_event_store
from projections import rebuild, registry, shard, verify, worker
from projections.base import Counts, upcast_all
from projections.metrics import projection_lag
from projections.shard import Shard, ShardSpecError, shard_of
from reports import views
from tests.support.projection_world import World, stored, worlds
from tests.support.reliability import (
    WAIT_S_MAX,
    Db,
    Worker,
    env_for,
    extra_postgres,
    reports,
    run,
    wait_until,
)
from tests.test_projections import (
    GENERATIONS,
    _append,
    assert_books_balance,
    dump,
    project,
    rekeyed,
    sample_payloads,
    shuffled_with_duplicates,
)

HOOKS = (views.drop_views, views.create_views)
PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def engine(database_url: str) -> Any:
    engine = create_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def project_sharded(
    engine: sa.Engine, batches: list[list[Any]], generation: int, count: int, rnd: random.Random
) -> None:
    """Each batch folded by every shard in its own transaction, the shards in a random order."""
    with engine.connect().execution_options(**WRITE) as connection:
        with connection.begin():
            for projection in registry.PROJECTIONS.values():
                projection.create_tables(connection, generation)
        for batch in batches:
            order = list(range(count))
            rnd.shuffle(order)
            for index in order:
                with connection.begin():
                    for projection in registry.PROJECTIONS.values():
                        projection.apply(connection, batch, generation, shard=Shard(index, count))


# -- the property -------------------------------------------------------------------------------


@PROPERTY
@given(world=worlds(), seed=st.integers(0, 2**32 - 1), count=st.integers(2, 5))
def test_any_number_of_shards_gives_the_rows_of_one_fold(
    engine: sa.Engine, world: World, seed: int, count: int
) -> None:
    events = stored(world.events)
    one, sharded = next(GENERATIONS), next(GENERATIONS)
    project(engine, [events], one)
    rnd = random.Random(seed)
    project_sharded(engine, shuffled_with_duplicates(events, rnd), sharded, count, rnd)
    assert dump(engine, sharded) == dump(engine, one)
    assert_books_balance(engine, sharded)


def test_every_key_has_one_shard_and_the_shards_split_the_keys() -> None:
    keys = [("charge", f"ch_{n}", "", n % 2 == 0) for n in range(2000)]
    for count in (1, 2, 3, 7):
        owners = [[Shard(i, count).owns(key) for i in range(count)] for key in keys]
        assert all(sum(row) == 1 for row in owners)
        if count > 1:  # not all in one shard (CRC-32 spreads them)
            per_shard = [sum(row[i] for row in owners) for i in range(count)]
            assert min(per_shard) > len(keys) // count // 2, per_shard
    assert shard_of(("charge", "ch_1", "", False), 4) == shard_of(("charge", "ch_1", "", False), 4)


def test_route_names_the_key_the_snapshot_folds_into_for_every_sample_and_world() -> None:
    """What a shard skips undecoded it skips on ``route``'s word: wherever ``route`` names a key
    (from the event's columns alone), the snapshot of the decoded payload must fold into it.
    (The generated worlds are checked by the property above: ``apply`` asserts it per shard.)"""
    payloads = [rekeyed(name, payload) for name, payload in sample_payloads()]
    events = []
    for payload in payloads:
        try:
            events.extend(stored([payload]))
        except EnvelopeError:
            continue
    routed = 0
    for projection in registry.PROJECTIONS.values():
        for event in events:
            if event.type not in projection.handlers and event.type not in projection.fact_handlers:
                continue
            key = projection.route(event)
            found = projection.snapshot(event, upcast_all([event])[0], Counts())
            if key is not None and found is not None:
                routed += 1
                assert found.key == key, (event.event_id, key, found.key)
    assert routed >= 60, routed  # the samples exercise it (72 when written)


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("2/2", "I must be between 0 and 1"),
        ("0/0", "N must be between 1 and 64"),
        ("0/65", "N must be between 1 and 64"),
        ("a/2", "must be I/N"),
        ("1", "must be I/N"),
        ("-1/2", "must be I/N"),
    ],
)
def test_a_bad_shard_spec_is_refused_with_one_clear_line(spec: str, error: str) -> None:
    with pytest.raises(ShardSpecError, match=error):
        shard.parse(spec)
    assert shard.parse(" 1/3 ") == Shard(1, 3)


# -- shard workers, their checkpoints, and changing N ---------------------------------------------


def _shard_positions(engine: sa.Engine) -> dict[tuple[str, int], int]:
    with engine.connect() as connection:
        rows = connection.execute(sa.select(registry.projection_shards)).all()
    return {(row.name, row.shard): int(row.position) for row in rows}


def _live_dump(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as connection:
        return {
            name: projection.dump(connection, int(registry.state(connection, name).live_generation))
            for name, projection in registry.PROJECTIONS.items()
        }


def _fresh_fold_checks(store: EventStore) -> list[verify.Check]:
    return [verify.check_fresh_fold(store, p) for p in registry.PROJECTIONS.values()]


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(world=worlds(prefix="s"))
def test_shard_workers_fold_from_their_own_checkpoints_and_equal_one_worker(
    database_url: str, world: World
) -> None:
    engine = create_engine(database_url)
    migrate(engine)
    store = open_event_store(engine)
    half = len(world.events) // 2
    _append(store, world.events[:half])
    # The first shard worker registers the projections split in two; each has its checkpoints.
    first = worker.run(store, until_idle_s=0, batch_events_max=5, shard=Shard(0, 2))
    assert first.events == half
    head = store.head_position()
    positions = _shard_positions(engine)
    assert {key: p for key, p in positions.items() if key[1] == 0} == {
        (name, 0): head for name in registry.PROJECTIONS
    }
    assert {key: p for key, p in positions.items() if key[1] == 1} == {
        (name, 1): 0 for name in registry.PROJECTIONS
    }
    with engine.connect() as connection:  # as far as the slowest shard
        assert projection_lag(connection) == (head, dict.fromkeys(registry.PROJECTIONS, 0))
    assert all(check.ok for check in _fresh_fold_checks(store)), _fresh_fold_checks(store)
    _append(store, world.events)  # the second half, and the first again (dropped)
    worker.run(store, until_idle_s=0, batch_events_max=7, shard=Shard(1, 2))
    worker.run(store, until_idle_s=0, batch_events_max=3, shard=Shard(0, 2))
    head = store.head_position()
    assert set(_shard_positions(engine).values()) == {head}
    sharded = _live_dump(engine)
    # a stale shard checkpoint cannot apply a batch twice
    events = store.read(0, 10)
    journal = registry.PROJECTIONS["journal"]
    stale = worker.apply_batch(engine, journal, events, upcast_all(events), 1, 0, Shard(0, 2))
    assert stale is None
    assert _live_dump(engine) == sharded
    checks = _fresh_fold_checks(store)
    assert all(check.ok for check in checks), checks
    assert "(shard 1/2)" in checks[0].detail
    # the wrong N, or no --shard at all, is refused, naming what to run
    with pytest.raises(registry.ShardMismatch, match=r"live in 2 shard\(s\), not 3.*--shards 3"):
        worker.run(store, until_idle_s=0, shard=Shard(0, 3))
    with pytest.raises(registry.ShardMismatch, match=r"not 1: run `project` with --shard I/2"):
        worker.run(store, until_idle_s=0)
    # one fold of the same events (a rebuild into one shard) gives the same rows
    (result, *_others) = rebuild.rebuild(store, hooks=HOOKS, shards=1)
    assert result.shards == 1 and result.position == head
    assert _live_dump(engine) == sharded
    assert _shard_positions(engine) == {}
    assert worker.run(store, until_idle_s=0).events == 0  # one worker again, at the head
    engine.dispose()


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(world=worlds(prefix="r"))
def test_a_rebuild_with_two_workers_gives_the_rows_of_one_and_can_split_the_generation(
    database_url: str, world: World
) -> None:
    engine = create_engine(database_url)
    migrate(engine)
    store = open_event_store(engine)
    _append(store, world.events)
    worker.run(store, until_idle_s=0)
    one = _live_dump(engine)
    results = rebuild.rebuild(store, hooks=HOOKS, workers=2, shards=3)
    assert {r.shards for r in results} == {3}
    assert {r.events for r in results} == {len(store.event_ids())}
    assert _live_dump(engine) == one
    head = store.head_position()
    assert set(_shard_positions(engine).values()) == {head}
    assert len(_shard_positions(engine)) == 3 * len(registry.PROJECTIONS)
    assert all(check.ok for check in _fresh_fold_checks(store))
    # a plain rebuild keeps the split; three shard workers then find nothing to do
    assert {r.shards for r in rebuild.rebuild(store, hooks=HOOKS)} == {3}
    for index in range(3):
        assert worker.run(store, until_idle_s=0, shard=Shard(index, 3)).events == 0
    assert _live_dump(engine) == one
    engine.dispose()


def test_rebuild_refuses_a_worker_or_shard_count_out_of_range(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    parser = argparse.ArgumentParser()
    projections_cmds.register(parser.add_subparsers())
    for argv, error in (
        (["rebuild", "--workers", "0"], "--workers must be between 1 and 64, got 0"),
        (["rebuild", "--shards", "65"], "--shards must be between 1 and 64, got 65"),
    ):
        args = parser.parse_args(argv)
        with pytest.raises(projections_cmds.CommandError, match=error):
            args.handler(args, Settings.from_env())


# -- two shard workers SIGKILLed at random under a flow -------------------------------------------

KILL_EVENTS = 8000
KILL_CHUNKS = 8  # the history is imported in this many parts, a pause between them
KILLS = 6  # in all, on the two workers, every one while the import still runs
SEED = 20261202


def _checkpoint(db: Db) -> int:
    return int(db.value("SELECT COALESCE(MIN(checkpoint), 0) FROM report_projection_checkpoints"))


def _folding(workers: list[Worker]) -> bool:
    for process in workers:
        assert process.alive(), process.log_path.read_text()[-2000:]
    return True


@pytest.mark.slow
def test_two_shard_workers_sigkilled_at_random_give_the_reports_of_one_worker(
    postgres_url: str, postgres_admin_url: str, tmp_path: Path
) -> None:
    history = generate(SEED, KILL_EVENTS)
    lines = [encode(event) + b"\n" for event in history.events]
    parts = [tmp_path / f"part-{n}.jsonl" for n in range(KILL_CHUNKS)]
    for n, part in enumerate(parts):
        part.write_bytes(b"".join(lines[n::KILL_CHUNKS]))  # each part spans the whole history
    env = env_for(postgres_url)
    run(["migrate"], env)  # registers the projections in one shard: split them by a rebuild
    assert "split into 2 shards" in run(["rebuild", "--shards", "2"], env).stdout.decode()
    db = Db(postgres_url)
    rng = random.Random(SEED)
    incarnations = [0, 0]

    def start(index: int) -> Worker:
        incarnations[index] += 1
        log_path = tmp_path / f"project-{index}-{incarnations[index]}.log"
        return Worker(["project", "--shard", f"{index}/2", "--batch-size", "200"], env, log_path)

    importing = threading.Event()
    importing.set()
    failure: list[BaseException] = []

    def importer() -> None:
        try:
            for part in parts:
                run(["import", str(part)], env, 600)
                time.sleep(0.5)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failure.append(error)
        finally:
            importing.clear()

    workers = [start(0), start(1)]
    thread = threading.Thread(target=importer, daemon=True)
    thread.start()
    kills = 0
    try:
        while kills < KILLS:
            before = _checkpoint(db)
            wait_until(lambda b=before: _folding(workers) and _checkpoint(db) > b, "folding")
            time.sleep(rng.uniform(0.0, 0.5))
            assert importing.is_set(), f"the import ended before kill {kills + 1}"
            victim = rng.randrange(2)
            workers[victim].kill()
            kills += 1
            workers[victim] = start(victim)
        thread.join(WAIT_S_MAX)
        assert not failure, failure
        wait_until(lambda: _folding(workers) and _checkpoint(db) >= db.head(), "the head")
        for process in workers:
            process.signal(signal.SIGTERM)
        for process in workers:
            assert process.wait(WAIT_S_MAX) == 0, process.log_path.read_text()[-2000:]
    finally:
        for process in workers:
            process.kill()
    assert db.distinct_events() == len(history.events)
    run(["verify"], env, 600)  # includes the fresh fold, shard by shard
    sharded = reports(env)
    db.close()
    with extra_postgres(postgres_admin_url) as clean_url:  # one worker, the same events, no fault
        clean_env = env_for(clean_url)
        run(["migrate"], clean_env)
        for part in parts:
            run(["import", str(part)], clean_env, 600)
        run(["project", "--until-idle", "1"], clean_env, 600)
        clean = reports(clean_env)
    print("shard-kill figures:", json.dumps({"events": len(history.events), "kills": kills}))
    assert all(clean[name] for name in clean), "the single worker's run has rows in every report"
    assert sharded == clean
