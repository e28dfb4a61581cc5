"""Helpers for the dashboard's tests (no tests here): a projected demo store, a running
``stripe-ledger dashboard`` process, and the report figures the pages must show."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from demo.history import generate
from ledger.database import create_engine, migrate
from ledger.store import open_event_store
from projections import worker
from reports.read_side import prepare_read_side
from tests.support.kafka_util import cli_env
from tests.support.reliability import Worker, start_http_worker
from tests.test_rebuild_reports import _load

DEMO_SEED, DEMO_EVENTS = 7, 400  # what `make demo` posts: the screenshots show the same data


CLOSING_TYPES = ("charge.dispute.closed", "charge.dispute.funds_reinstated")


def build_store(url: str, seed: int = DEMO_SEED, events: int = DEMO_EVENTS,
                open_disputes: int = 0) -> None:  # fmt: skip
    """Migrate, load a demo history, project it; a SQLite file is left checkpointed (no -wal),
    so that a read-only opener sees everything in the main file. ``open_disputes``: hold back
    the closing events of that many disputes (every demo dispute closes), so that they are
    still open, each with its own evidence deadline."""
    engine = create_engine(url)
    try:
        migrate(engine)
        prepare_read_side(engine)
        store = open_event_store(engine)
        deliveries = generate(seed=seed, events=events).deliveries
        disputes = sorted({e["data"]["object"]["id"] for e in deliveries
                           if e["type"] == "charge.dispute.created"})  # fmt: skip
        held = set(disputes[:open_disputes])
        _load(store, [e for e in deliveries if e["type"] not in CLOSING_TYPES
                      or e["data"]["object"]["id"] not in held])  # fmt: skip
        worker.run(store, until_idle_s=0)
        if engine.dialect.name == "sqlite":
            with engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def dashboard(url: str, log_path: Path, host: str = "127.0.0.1",
              **env: str) -> Iterator[tuple[Worker, int]]:  # fmt: skip
    """``stripe-ledger dashboard --host HOST --port N`` over ``url``; yields once /readyz is 200,
    stops it by its own pid afterwards."""
    process, port = start_http_worker("dashboard", cli_env(url, **env), log_path,
                                      extra=["--host", host])  # fmt: skip
    try:
        yield process, port
    finally:
        process.kill()


def execute(url: str, *statements: str) -> None:
    """Run ``statements`` in one transaction (the tests' own set-up, never the dashboard)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)
    finally:
        engine.dispose()


def rows(url: str, sql: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.text(sql))]
    finally:
        engine.dispose()
