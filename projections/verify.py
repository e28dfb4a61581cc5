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
from projections.worker import fold
from reports.money import format_amount, parse_major

VERIFY_BATCH_EVENTS = 2000
SCRATCH_GENERATION = 999_999  # tables of the throw-away fold; never committed
FAILURES_SHOWN_MAX = 20


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
            live = checksum(projection.dump(connection, int(row.live_generation)))
            projection.create_scratch_tables(connection, SCRATCH_GENERATION)
            position, checkpoint = 0, int(row.position)
            while position < checkpoint:
                events = [
                    e for e in store.read(position, VERIFY_BATCH_EVENTS) if e.position <= checkpoint
                ]
                if not events:
                    break
                fold(
                    connection,
                    projection,
                    events,
                    upcast_all(events),
                    SCRATCH_GENERATION,
                    record=False,
                )
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


_STRIPE_ACCOUNTS = "('stripe_pending', 'stripe_available')"


def check_journal_equals_balance_transactions(connection: sa.Connection) -> Check:
    name = "journal = balance transactions"
    bts, entries = _live_table(connection, "balance_transactions"), None
    if bts is None:
        return Check(name, True, "no journal yet")
    entries = _live_table(connection, "journal_entries")
    postings = _live_table(connection, "journal_postings")
    assert entries is not None and postings is not None
    scope = "account_key, livemode, currency"
    stripe = {
        tuple(row[:4]): int(row[4])
        for row in connection.exec_driver_sql(
            f"SELECT {scope}, reporting_category, SUM(net) FROM {bts.name} "
            f"GROUP BY {scope}, reporting_category"
        )
    }
    posted = {
        tuple(row[:4]): int(row[4])
        for row in connection.exec_driver_sql(
            f"SELECT p.account_key, p.livemode, p.currency, e.kind, SUM(p.amount) "
            f"FROM {postings.name} p JOIN {entries.name} e ON e.entry_id = p.entry_id "
            "AND e.account_key = p.account_key AND e.livemode = p.livemode "
            f"WHERE e.balance_transaction_id IS NOT NULL AND e.kind <> 'available' "
            f"AND p.ledger_account IN {_STRIPE_ACCOUNTS} "
            "GROUP BY p.account_key, p.livemode, p.currency, e.kind"
        )
    }
    failures = [
        f"{key[0] or 'platform'} {'live' if key[1] else 'test'} {key[2]} {key[3]}: "
        f"balance transactions net {stripe.get(key, 0)}, journal {posted.get(key, 0)}"
        for key in sorted(set(stripe) | set(posted), key=str)
        if stripe.get(key, 0) != posted.get(key, 0)
    ]
    twice = connection.exec_driver_sql(
        f"SELECT balance_transaction_id FROM {bts.name} GROUP BY balance_transaction_id, "
        "account_key, livemode HAVING COUNT(*) > 1"
    ).all()
    failures += [f"{row[0]}: posted under two objects" for row in twice]
    count = connection.execute(sa.select(sa.func.count()).select_from(bts)).scalar()
    return Check(name, not failures, f"{count} balance transactions", failures[:FAILURES_SHOWN_MAX])


def check_payouts_reconcile(connection: sa.Connection) -> Check:
    name = "automatic payouts reconcile"
    rows = connection.execute(
        sa.text(
            "SELECT payout_id, currency, amount, bt_count, bt_net, reconciled "
            "FROM report_payout_reconciliation WHERE bt_count > 0"
        )
    ).all()
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
    rows = connection.execute(
        sa.text(
            "SELECT r.account, r.livemode, r.currency, r.drift, b.event_id FROM report_balances r "
            f"JOIN {table.name} b ON b.currency = r.currency AND b.livemode = r.livemode "
            "AND b.account_key = COALESCE(r.account, '') WHERE r.drift IS NOT NULL"
        )
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
            connection.execute(sa.text("SELECT 1 FROM projection_state WHERE 1 = 0")).all()
    except sa.exc.ProgrammingError as error:
        if "permission denied" in str(error.orig or error).lower():
            return False
        raise
    return True


_REPORT_SCOPE = "account, livemode, currency"


def _report_checks(connection: sa.Connection) -> list[Check]:
    """The checks the report views alone can make: every entry balances, the trial balance's
    debits equal its credits, the journal equals the balance transactions."""
    unbalanced = connection.execute(
        sa.text(
            f"SELECT entry_id, {_REPORT_SCOPE}, SUM(amount) FROM report_journal "
            f"GROUP BY entry_id, {_REPORT_SCOPE} HAVING SUM(amount) <> 0"
        )
    ).all()
    entries = [f"{r[0]} ({r[3]}): postings sum to {r[4]}" for r in unbalanced]
    trial = connection.execute(
        sa.text(
            f"SELECT {_REPORT_SCOPE}, SUM(debits), SUM(credits) FROM report_trial_balance "
            f"GROUP BY {_REPORT_SCOPE} HAVING SUM(debits) <> SUM(credits)"
        )
    ).all()
    sides = [f"{r[0] or 'platform'} {r[2]}: debits {r[3]} != credits {r[4]}" for r in trial]
    stripe = {
        tuple(r[:4]): int(r[4])
        for r in connection.execute(
            sa.text(
                f"SELECT {_REPORT_SCOPE}, reporting_category, SUM(net) "
                f"FROM report_balance_itemized GROUP BY {_REPORT_SCOPE}, reporting_category"
            )
        )
    }
    posted = {
        tuple(r[:4]): int(r[4])
        for r in connection.execute(
            sa.text(
                f"SELECT {_REPORT_SCOPE}, kind, SUM(amount) FROM report_journal "
                "WHERE balance_transaction_id IS NOT NULL AND kind <> 'available' "
                f"AND ledger_account IN {_STRIPE_ACCOUNTS} GROUP BY {_REPORT_SCOPE}, kind"
            )
        )
    }
    differ = [
        f"{key[0] or 'platform'} {'live' if key[1] else 'test'} {key[2]} {key[3]}: "
        f"balance transactions net {stripe.get(key, 0)}, journal {posted.get(key, 0)}"
        for key in sorted(set(stripe) | set(posted), key=str)
        if stripe.get(key, 0) != posted.get(key, 0)
    ]
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
