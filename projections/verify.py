"""``stripe-ledger verify``: the ledger's invariants, checked against the database as it is.

1. Every journal entry balances: its postings sum to zero (per entry and currency).
2. Every balance equals the sum of its postings.
3. Every live projection equals a fresh fold of the whole store up to its checkpoint
   (a checksum per projection). The fresh fold runs in a transaction that is rolled back, so
   verify leaves no trace.
4. Drift against Stripe's latest balance snapshots is reported (not an invariant: fees that no
   event carries make honest drift).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ledger.store import EventStore
from projections import registry
from projections.base import Projection

VERIFY_BATCH_EVENTS = 2000
SCRATCH_GENERATION = 999_999  # tables of the throw-away fold; never committed
FAILURES_SHOWN_MAX = 20


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    failures: list[str] = field(default_factory=list)


def checksum(dump: dict[str, list[dict[str, Any]]]) -> str:
    text = json.dumps(dump, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _journal_tables(connection: sa.Connection) -> tuple[sa.Table, sa.Table] | None:
    journal = registry.PROJECTIONS.get("journal")
    row = registry.state(connection, "journal") if journal else None
    if journal is None or row is None:
        return None
    tables = journal.cached_tables(int(row.live_generation))
    return tables["journal_postings"], tables["balances"]


def check_entries_balance(connection: sa.Connection) -> Check:
    found = _journal_tables(connection)
    if found is None:
        return Check("journal entries balance", True, "no journal yet")
    postings, _ = found
    unbalanced = connection.execute(
        sa.select(
            postings.c.entry_id,
            postings.c.account_key,
            postings.c.livemode,
            postings.c.currency,
            sa.func.sum(postings.c.amount).label("total"),
        )
        .group_by(
            postings.c.entry_id, postings.c.account_key, postings.c.livemode, postings.c.currency
        )
        .having(sa.func.sum(postings.c.amount) != 0)
    ).all()
    entries = connection.execute(
        sa.select(sa.func.count(sa.distinct(postings.c.entry_id)))
    ).scalar()
    failures = [f"{r.entry_id} ({r.currency}): postings sum to {r.total}" for r in unbalanced]
    return Check(
        "journal entries balance",
        not failures,
        f"{entries} entries, {len(failures)} unbalanced",
        failures[:FAILURES_SHOWN_MAX],
    )


def check_balances_match_postings(connection: sa.Connection) -> Check:
    found = _journal_tables(connection)
    if found is None:
        return Check("balances = sum of postings", True, "no journal yet")
    postings, balances = found
    keys = ("account_key", "livemode", "currency", "ledger_account")
    summed = {
        tuple(row[:4]): int(row[4])
        for row in connection.execute(
            sa.select(*(postings.c[k] for k in keys), sa.func.sum(postings.c.amount)).group_by(
                *(postings.c[k] for k in keys)
            )
        )
    }
    stored = {
        tuple(row[:4]): int(row[4])
        for row in connection.execute(sa.select(*(balances.c[k] for k in keys), balances.c.amount))
    }
    failures = []
    for key in sorted(set(summed) | set(stored), key=str):
        if summed.get(key, 0) != stored.get(key, 0):
            failures.append(f"{key}: balance {stored.get(key, 0)} != postings {summed.get(key, 0)}")
    return Check(
        "balances = sum of postings",
        not failures,
        f"{len(stored)} balances, {len(failures)} differ",
        failures[:FAILURES_SHOWN_MAX],
    )


def check_fresh_fold(store: EventStore, projection: Projection) -> Check:
    """Fold the store into scratch tables in a transaction that is rolled back; compare."""
    name = f"{projection.name} = fresh fold of the store"
    # Not WRITE: the scratch tables are TEMPORARY, so the database itself is only read (a
    # read-only SQLite file, a read-only role) and SQLite takes no write lock on it.
    options: dict[str, Any] = {}
    if store.engine.dialect.name == "postgresql":  # one snapshot for live rows and the store
        options["isolation_level"] = "REPEATABLE READ"
    with store.engine.connect().execution_options(**options) as connection:
        transaction = connection.begin()
        try:
            row = registry.state(connection, projection.name)
            if row is None:
                return Check(name, True, "not built yet")
            live = checksum(projection.dump(connection, int(row.live_generation)))
            projection.create_scratch_tables(connection, SCRATCH_GENERATION)
            position, checkpoint = 0, int(row.position)
            while position < checkpoint:
                events = [
                    e for e in store.read(position, VERIFY_BATCH_EVENTS) if e.position <= checkpoint
                ]
                if not events:
                    break
                projection.apply(connection, events, SCRATCH_GENERATION)
                position = events[-1].position
            fresh = checksum(projection.dump(connection, SCRATCH_GENERATION))
        finally:
            transaction.rollback()
    detail = f"live {live}, fresh {fresh} at position {checkpoint}"
    return Check(name, live == fresh, detail, [] if live == fresh else [detail])


def drift_lines(connection: sa.Connection) -> list[str]:
    exists = connection.execute(
        sa.text("SELECT 1 FROM report_balances WHERE drift IS NOT NULL LIMIT 1")
    ).first()
    if exists is None:
        return ["no Stripe balance snapshot yet: no drift to show"]
    rows = connection.execute(
        sa.text(
            "SELECT account, livemode, currency, ledger_balance, stripe_available, "
            "stripe_pending, drift FROM report_balances WHERE drift IS NOT NULL "
            "ORDER BY livemode, account, currency"
        )
    ).all()
    return [
        f"{r.account or 'platform'} {'live' if r.livemode else 'test'} {r.currency}: "
        f"ledger {r.ledger_balance}, stripe {r.stripe_available} + {r.stripe_pending} pending, "
        f"drift {r.drift}"
        for r in rows
    ]


def verify(store: EventStore) -> tuple[list[Check], list[str]]:
    with store.engine.connect() as connection:
        checks = [check_entries_balance(connection), check_balances_match_postings(connection)]
    checks += [check_fresh_fold(store, projection) for projection in registry.get()]
    with store.engine.connect() as connection:
        drift = drift_lines(connection)
    return checks, drift
