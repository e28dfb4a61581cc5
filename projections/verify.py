"""``stripe-ledger verify``: the ledger's invariants, checked against the database as it is.

1. Every journal entry balances: its postings sum to zero (per entry and currency).
2. Every balance equals the sum of its postings.
3. Every live projection equals a fresh fold of the whole store up to its checkpoint
   (a checksum per projection). The fresh fold runs in a transaction that is rolled back, so
   verify leaves no trace.
4. The journal equals the balance transactions: per account, mode, currency and reporting
   category, the net the journal posted from balance transactions equals theirs; each balance
   transaction is posted once.
5. Every automatic payout whose balance transactions are synced reconciles: their net equals
   the payout's amount.
6. Drift against Stripe's latest balance snapshot, in major units with the currency. Where the
   snapshot came from balance-sync (so the balance transactions up to it are synced), a drift
   above ``--drift-tolerance`` fails; a webhook-only snapshot is shown, not judged (its fees are
   unknown until balance-sync runs).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ledger.store import EventStore
from projections import registry
from projections.base import Projection, upcast_all
from projections.shard import Shard
from projections.worker import fold
from reports.money import format_amount, parse_major

VERIFY_BATCH_EVENTS_MAX = 2000
SCRATCH_GENERATION = 999_999  # tables of the throw-away fold; never committed
FAILURES_SHOWN_MAX = 20


def _view(name: str, *columns: str) -> sa.TableClause:
    """A report view verify reads (reports/sql/), with the columns it reads of it."""
    return sa.table(name, *(sa.column(column) for column in columns))


_SCOPE = ("account", "livemode", "currency")
REPORT_BALANCES = _view(
    "report_balances", *_SCOPE, "ledger_balance", "stripe_available", "stripe_pending", "drift"
)
REPORT_JOURNAL = _view(
    "report_journal", "entry_id", *_SCOPE, "amount", "kind", "balance_transaction_id",
    "ledger_account",
)  # fmt: skip
REPORT_TRIAL_BALANCE = _view("report_trial_balance", *_SCOPE, "debits", "credits")
REPORT_BALANCE_ITEMIZED = _view("report_balance_itemized", *_SCOPE, "reporting_category", "net")
REPORT_PAYOUT_RECONCILIATION = _view(
    "report_payout_reconciliation", "payout_id", "currency", "amount", "bt_count", "bt_net",
    "reconciled",
)  # fmt: skip


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    failures: list[str] = field(default_factory=list)
    skipped: bool = False  # could not run with this role's rights (said in ``detail``)


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
            generation = int(row.live_generation)
            live = checksum(projection.dump(connection, generation))
            projection.create_scratch_tables(connection, SCRATCH_GENERATION)
            # Each shard has folded up to its own checkpoint: the fresh fold does the same.
            checkpoints = _shard_checkpoints(connection, projection.name, generation, row)
            for shard, checkpoint in checkpoints.items():
                _fold_up_to(connection, store, projection, checkpoint, shard)
            fresh = checksum(projection.dump(connection, SCRATCH_GENERATION))
        finally:
            transaction.rollback()
    at = ", ".join(
        f"{checkpoint}" if shard is None else f"{checkpoint} (shard {shard})"
        for shard, checkpoint in checkpoints.items()
    )
    detail = f"live {live}, fresh {fresh} at position {at}"
    return Check(name, live == fresh, detail, [] if live == fresh else [detail])


def _shard_checkpoints(
    connection: sa.Connection, name: str, generation: int, row: Any
) -> dict[Shard | None, int]:
    """The checkpoint of each shard of the live generation (None: not sharded)."""
    shards = int(row.shards)
    if shards == 1:
        return {None: int(row.position)}
    found: dict[Shard | None, int] = {}
    for index in range(shards):
        position = registry.shard_position(connection, name, generation, index)
        assert position is not None, (name, generation, index)
        found[Shard(index, shards)] = position
    return found


def _fold_up_to(
    connection: sa.Connection,
    store: EventStore,
    projection: Projection,
    checkpoint: int,
    shard: Shard | None,
) -> None:
    position = 0
    while position < checkpoint:
        events = [
            e for e in store.read(position, VERIFY_BATCH_EVENTS_MAX) if e.position <= checkpoint
        ]
        if not events:
            break
        payloads = upcast_all(events)
        scratch = SCRATCH_GENERATION
        fold(connection, projection, events, payloads, scratch, record=False, shard=shard)
        position = events[-1].position


def drift_lines(connection: sa.Connection) -> list[str]:
    view = REPORT_BALANCES.c
    with_drift = sa.select(REPORT_BALANCES).where(view.drift.is_not(None))
    if connection.execute(with_drift.limit(1)).first() is None:
        return ["no Stripe balance snapshot yet: no drift to show"]
    rows = connection.execute(with_drift.order_by(view.livemode, view.account, view.currency)).all()
    return [
        f"{r.account or 'platform'} {'live' if r.livemode else 'test'}: "
        f"ledger {format_amount(int(r.ledger_balance), r.currency)}, stripe "
        f"{format_amount(int(r.stripe_available), r.currency)} + "
        f"{format_amount(int(r.stripe_pending), r.currency)} pending, "
        f"drift {format_amount(int(r.drift), r.currency)}"
        for r in rows
    ]


def check_every_event_projected(connection: sa.Connection) -> Check:
    """Events a live projection could not fold (recorded by the worker, skipped): reported, and
    verify fails, until someone looks at them (the store cannot drop them)."""
    failures = registry.projection_failures
    live = registry.projection_state
    rows = connection.execute(
        sa.select(failures.c.name, failures.c.position, failures.c.event_id, failures.c.error)
        .join(
            live,
            sa.and_(
                live.c.name == failures.c.name, live.c.live_generation == failures.c.generation
            ),
        )
        .order_by(failures.c.position, failures.c.name)
    ).all()
    lines = [f"{r.name}: position {r.position} {r.event_id}: {r.error}" for r in rows]
    return Check(
        "every stored event projected",
        not lines,
        f"{len(lines)} event(s) a projection could not fold",
        lines[:FAILURES_SHOWN_MAX],
    )


def _live_table(connection: sa.Connection, logical: str) -> sa.Table | None:
    journal = registry.PROJECTIONS.get("journal")
    row = registry.state(connection, "journal") if journal else None
    if journal is None or row is None:
        return None
    return journal.cached_tables(int(row.live_generation))[logical]


# The journal's accounts that hold money at Stripe (what balance transactions move).
STRIPE_ACCOUNTS = ("stripe_pending", "stripe_available")


def _bt_nets(bts: sa.TableClause, account: sa.ColumnElement[Any]) -> sa.Select[Any]:
    """Net of balance transactions per (account, mode, currency, reporting category): of the
    projection's table or of the report view (whose account column is named differently)."""
    scope = (account, bts.c.livemode, bts.c.currency, bts.c.reporting_category)
    return sa.select(*scope, sa.func.sum(bts.c.net)).group_by(*scope)


def _differences(
    stripe: dict[tuple[Any, ...], int], posted: dict[tuple[Any, ...], int]
) -> list[str]:
    return [
        f"{key[0] or 'platform'} {'live' if key[1] else 'test'} {key[2]} {key[3]}: "
        f"balance transactions net {stripe.get(key, 0)}, journal {posted.get(key, 0)}"
        for key in sorted(set(stripe) | set(posted), key=str)
        if stripe.get(key, 0) != posted.get(key, 0)
    ]


def _sums(connection: sa.Connection, statement: sa.Select[Any]) -> dict[tuple[Any, ...], int]:
    """{first four columns: int(fifth)} of ``statement``'s rows."""
    return {tuple(row[:4]): int(row[4]) for row in connection.execute(statement)}


def check_journal_equals_balance_transactions(connection: sa.Connection) -> Check:
    name = "journal = balance transactions"
    bts = _live_table(connection, "balance_transactions")
    if bts is None:
        return Check(name, True, "no journal yet")
    entries = _live_table(connection, "journal_entries")
    postings = _live_table(connection, "journal_postings")
    assert entries is not None and postings is not None
    scope = (postings.c.account_key, postings.c.livemode, postings.c.currency, entries.c.kind)
    key = ("entry_id", "account_key", "livemode")  # a posting's entry
    posted = (
        sa.select(*scope, sa.func.sum(postings.c.amount))
        .select_from(postings.join(entries, sa.and_(*(entries.c[k] == postings.c[k] for k in key))))
        .where(
            entries.c.balance_transaction_id.is_not(None),
            entries.c.kind != "available",
            postings.c.ledger_account.in_(STRIPE_ACCOUNTS),
        )
        .group_by(*scope)
    )
    failures = _differences(
        _sums(connection, _bt_nets(bts, bts.c.account_key)), _sums(connection, posted)
    )
    twice = connection.execute(
        sa.select(bts.c.balance_transaction_id)
        .group_by(bts.c.balance_transaction_id, bts.c.account_key, bts.c.livemode)
        .having(sa.func.count() > 1)
    ).all()
    failures += [f"{row[0]}: posted under two objects" for row in twice]
    count = connection.execute(sa.select(sa.func.count()).select_from(bts)).scalar()
    return Check(name, not failures, f"{count} balance transactions", failures[:FAILURES_SHOWN_MAX])


def check_payouts_reconcile(connection: sa.Connection) -> Check:
    name = "automatic payouts reconcile"
    view = REPORT_PAYOUT_RECONCILIATION
    rows = connection.execute(sa.select(view).where(view.c.bt_count > 0)).all()
    failures = [
        f"{r.payout_id}: amount {format_amount(int(r.amount or 0), r.currency or 'usd')}, "
        f"its {r.bt_count} balance transactions net "
        f"{format_amount(int(r.bt_net), r.currency or 'usd')}"
        for r in rows
        if not r.reconciled
    ]
    return Check(
        name,
        not failures,
        f"{len(rows)} payouts with synced balance transactions, {len(failures)} do not reconcile",
        failures[:FAILURES_SHOWN_MAX],
    )


@dataclass
class Drift:
    lines: list[str]
    over_tolerance: list[str]


def check_drift(connection: sa.Connection, tolerance: str) -> Drift:
    """Drift per scope in major units; over the tolerance where balance-sync took the snapshot."""
    lines = drift_lines(connection)
    over: list[str] = []
    table = _live_table(connection, "stripe_balances")
    if table is None:
        return Drift(lines, over)
    view, live = REPORT_BALANCES.c, table.c
    rows = connection.execute(
        sa.select(view.account, view.livemode, view.currency, view.drift, live.event_id)
        .select_from(
            REPORT_BALANCES.join(
                table,
                sa.and_(
                    live.currency == view.currency,
                    live.livemode == view.livemode,
                    live.account_key == sa.func.coalesce(view.account, ""),
                ),
            )
        )
        .where(view.drift.is_not(None))
    ).all()
    for r in rows:
        limit = parse_major(tolerance, r.currency)
        if str(r.event_id).startswith("bal_") and abs(int(r.drift)) > limit:
            over.append(
                f"{r.account or 'platform'} {'live' if r.livemode else 'test'}: drift "
                f"{format_amount(int(r.drift), r.currency)} exceeds the tolerance "
                f"{format_amount(limit, r.currency)}"
            )
    return Drift(lines, over)


def can_read_store(engine: sa.Engine) -> bool:
    """False for a role that may read only the report views (``ledger_reporting``)."""
    try:
        with engine.connect() as connection:
            state = registry.projection_state
            connection.execute(sa.select(state.c.name).where(sa.false())).all()
    except sa.exc.ProgrammingError as error:
        if "permission denied" in str(error.orig or error).lower():
            return False
        raise
    return True


def _report_checks(connection: sa.Connection) -> list[Check]:
    """The checks the report views alone can make: every entry balances, the trial balance's
    debits equal its credits, the journal equals the balance transactions."""
    journal, trial = REPORT_JOURNAL.c, REPORT_TRIAL_BALANCE.c
    scope = (journal.account, journal.livemode, journal.currency)
    unbalanced = connection.execute(
        sa.select(journal.entry_id, *scope, sa.func.sum(journal.amount))
        .group_by(journal.entry_id, *scope)
        .having(sa.func.sum(journal.amount) != 0)
    ).all()
    entries = [f"{r[0]} ({r[3]}): postings sum to {r[4]}" for r in unbalanced]
    trial_scope = (trial.account, trial.livemode, trial.currency)
    uneven = connection.execute(
        sa.select(*trial_scope, sa.func.sum(trial.debits), sa.func.sum(trial.credits))
        .group_by(*trial_scope)
        .having(sa.func.sum(trial.debits) != sa.func.sum(trial.credits))
    ).all()
    sides = [f"{r[0] or 'platform'} {r[2]}: debits {r[3]} != credits {r[4]}" for r in uneven]
    posted = (
        sa.select(*scope, journal.kind, sa.func.sum(journal.amount))
        .where(
            journal.balance_transaction_id.is_not(None),
            journal.kind != "available",
            journal.ledger_account.in_(STRIPE_ACCOUNTS),
        )
        .group_by(*scope, journal.kind)
    )
    itemized = REPORT_BALANCE_ITEMIZED
    differ = _differences(
        _sums(connection, _bt_nets(itemized, itemized.c.account)), _sums(connection, posted)
    )
    return [
        Check("journal entries balance", not entries, f"{len(entries)} unbalanced", entries),
        Check("trial balance: debits = credits", not sides, f"{len(sides)} differ", sides),
        Check("journal = balance transactions", not differ, f"{len(differ)} differ", differ),
    ]


def verify_reports(engine: sa.Engine) -> tuple[list[Check], list[str]]:
    """verify for a role that may read only the report views: what they can show is checked;
    what needs the event store is said to be skipped, never silently passed."""
    with engine.connect() as connection:
        checks = _report_checks(connection)
        checks.append(check_payouts_reconcile(connection))
        lines = drift_lines(connection)
    needs = "needs read access to the event store and the projections' tables"
    checks.append(Check("live = fresh fold of the store", True, needs, skipped=True))
    checks.append(
        Check("drift within tolerance (balance-sync snapshots)", True, needs, skipped=True)
    )
    return checks, lines


def verify(store: EventStore, drift_tolerance: str = "0") -> tuple[list[Check], list[str]]:
    if not can_read_store(store.engine):
        return verify_reports(store.engine)
    with store.engine.connect() as connection:
        checks = [
            check_entries_balance(connection),
            check_balances_match_postings(connection),
            check_every_event_projected(connection),
        ]
    checks += [check_fresh_fold(store, projection) for projection in registry.get()]
    with store.engine.connect() as connection:
        checks.append(check_journal_equals_balance_transactions(connection))
        checks.append(check_payouts_reconcile(connection))
        drift = check_drift(connection, drift_tolerance)
    checks.append(
        Check(
            "drift within tolerance (balance-sync snapshots)",
            not drift.over_tolerance,
            f"tolerance {drift_tolerance} in major units",
            drift.over_tolerance,
        )
    )
    return checks, drift.lines
