"""What each dashboard page shows, read from the ``report_*`` views only (the reporting role
can read nothing else). Every list is paged (``LIMIT n + 1`` tells whether a next page
exists, without counting the whole view) and every aggregate is grouped into a bounded set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from reports import periods
from reports.dashboard.filters import DAY_S, Filters

PAGE_ROWS = 50
LATEST_EVENTS = 20
GROUPS_MAX = 500  # rows of an aggregate table (scopes x categories ...)
CHART_DAYS_MAX = 366
DEAD_LETTERS_SHOWN = 10
ERROR_CHARS_MAX = 300
PARTITIONS_MAX = 500

Row = dict[str, Any]


@dataclass
class Page:
    rows: list[Row]
    has_next: bool


def _where(
    f: Filters, time_column: str | None = None, currency: bool = True, prefix: str = ""
) -> tuple[str, dict[str, Any]]:
    """The WHERE clause of the page's filters: every value a bound parameter."""
    clauses = ["1 = 1"]
    params: dict[str, Any] = {}
    if f.account == "platform":
        clauses.append(f"{prefix}account IS NULL")
    elif f.account is not None:
        clauses.append(f"{prefix}account = :account")
        params["account"] = f.account
    if f.livemode is not None:
        clauses.append(f"{prefix}livemode = :livemode")
        params["livemode"] = f.livemode
    if currency and f.currency is not None:
        clauses.append(f"{prefix}currency = :currency")
        params["currency"] = f.currency
    if time_column is not None and f.since_s is not None:
        clauses.append(f"{prefix}{time_column} >= :since")
        params["since"] = f.since_s
    if time_column is not None and f.until_s is not None:
        clauses.append(f"{prefix}{time_column} < :until")
        params["until"] = f.until_s
    return " AND ".join(clauses), params


def _rows(connection: sa.Connection, sql: str, params: dict[str, Any]) -> list[Row]:
    return [dict(row._mapping) for row in connection.execute(sa.text(sql), params)]


def _page(connection: sa.Connection, sql: str, params: dict[str, Any], f: Filters,
          size: int = PAGE_ROWS) -> Page:  # fmt: skip
    rows = _rows(connection, f"{sql} LIMIT {size + 1} OFFSET {(f.page - 1) * size}", params)
    return Page(rows[:size], len(rows) > size)


def scope_order(prefix: str = "") -> str:
    # The same order on both databases (they sort NULLs differently): platform first.
    return f"{prefix}livemode, COALESCE({prefix}account, ''), {prefix}currency"


def balances(connection: sa.Connection, f: Filters) -> list[Row]:
    where, params = _where(f)
    return _rows(connection, f"SELECT * FROM report_balances WHERE {where} "
                 f"ORDER BY {scope_order()} LIMIT {GROUPS_MAX}", params)  # fmt: skip


def activity(connection: sa.Connection, f: Filters) -> list[Row]:
    """The period's balance transactions by reporting category (the Balance report's
    activity), per account, mode and currency."""
    where, params = _where(f, "created_utc")
    sql = (
        "SELECT account, livemode, currency, reporting_category, COUNT(*) AS count, "
        "CAST(SUM(gross) AS BIGINT) AS gross, CAST(SUM(fee) AS BIGINT) AS fee, "
        f"CAST(SUM(net) AS BIGINT) AS net FROM report_balance_itemized WHERE {where} "
        "GROUP BY account, livemode, currency, reporting_category "
        f"ORDER BY {scope_order()}, reporting_category LIMIT {GROUPS_MAX}"
    )
    return _rows(connection, sql, params)


def daily_balance_moves(connection: sa.Connection, f: Filters) -> list[Row]:
    """Per scope and UTC day, the net move of the Stripe balance (pending + available), from
    the opening balance on where there is one (as report_balances counts it). Unbounded in
    time on purpose: a day's balance is the sum of every earlier day; the chart shows a
    bounded window of it."""
    where, params = _where(f, prefix="j.")
    until = ""
    if f.until_s is not None:
        until, params["until"] = "AND j.posted_at < :until ", f.until_s
    sql = (
        "SELECT j.account, j.livemode, j.currency, CAST(j.posted_at / 86400 AS BIGINT) AS day, "
        "CAST(SUM(j.amount) AS BIGINT) AS amount FROM report_journal AS j "
        "LEFT JOIN report_opening_balances AS o ON COALESCE(o.account, '') = "
        "COALESCE(j.account, '') AND o.livemode = j.livemode AND o.currency = j.currency "
        f"WHERE {where} AND j.ledger_account IN ('stripe_pending', 'stripe_available') "
        f"AND j.posted_at IS NOT NULL {until}"
        "AND (o.as_of IS NULL OR j.posted_at >= o.as_of) "
        "GROUP BY j.account, j.livemode, j.currency, CAST(j.posted_at / 86400 AS BIGINT) "
        f"ORDER BY {scope_order('j.')}, day"
    )
    return _rows(connection, sql, params)


def latest_events(connection: sa.Connection, f: Filters) -> Page:
    where, params = _where(f, "created", currency=False)
    sql = (
        "SELECT position, event_id, account, livemode, type, created, object_id "
        f"FROM report_events WHERE {where} ORDER BY position DESC"
    )
    return _page(connection, sql, params, f, LATEST_EVENTS)


def payouts(connection: sa.Connection, f: Filters) -> Page:
    where, params = _where(f, "arrival_date")
    sql = (
        f"SELECT * FROM report_payout_reconciliation WHERE {where} "
        "ORDER BY arrival_date DESC, payout_id"
    )
    return _page(connection, sql, params, f)


def _status_totals(
    connection: sa.Connection, f: Filters, view: str, time_column: str, sums: Sequence[str]
) -> list[Row]:
    """Per currency and status of ``view``'s rows in the filters: their count and ``sums``
    (SQL expressions with their names), at most GROUPS_MAX groups."""
    where, params = _where(f, time_column)
    sql = (
        f"SELECT currency, status, COUNT(*) AS count, {', '.join(sums)} "
        f"FROM {view} WHERE {where} GROUP BY currency, status "
        f"ORDER BY currency, status LIMIT {GROUPS_MAX}"
    )
    return _rows(connection, sql, params)


def payout_totals(connection: sa.Connection, f: Filters) -> list[Row]:
    sums = (
        "CAST(SUM(amount) AS BIGINT) AS amount",
        "SUM(CASE WHEN bt_count > 0 AND reconciled = 1 THEN 1 ELSE 0 END) AS reconciled",
        "SUM(CASE WHEN bt_count > 0 AND reconciled = 0 THEN 1 ELSE 0 END) AS unreconciled",
        "SUM(CASE WHEN bt_count = 0 THEN 1 ELSE 0 END) AS not_synced",
    )
    return _status_totals(connection, f, "report_payout_reconciliation", "arrival_date", sums)


def postings(connection: sa.Connection, f: Filters) -> Page:
    where, params = _where(f, "posted_at")
    for key in ("ledger_account", "kind"):
        if key in f.extra:
            where += f" AND {key} = :{key}"
            params[key] = f.extra[key]
    sql = (
        "SELECT posted_at, entry_id, kind, ledger_account, amount, currency, account, livemode, "
        f"estimated FROM report_journal WHERE {where} "
        "ORDER BY posted_at DESC, entry_id, ledger_account"
    )
    return _page(connection, sql, params, f)


def trial_balance(connection: sa.Connection, f: Filters) -> list[Row]:
    """Per scope and ledger account: debits, credits, balance, of the postings before
    ``until`` (all of them without it): the CLI's ``report trial-balance --as-of``."""
    columns, rows = periods.trial_balance(connection.engine, f.until_s, f.account, f.livemode)
    found = [dict(zip(columns, row, strict=True)) for row in rows]
    return [r for r in found if f.currency in (None, r["currency"])][:GROUPS_MAX]


def invoice_funnel(connection: sa.Connection, f: Filters) -> list[Row]:
    sums = tuple(
        f"CAST(SUM(COALESCE({name}, 0)) AS BIGINT) AS {name}"
        for name in ("amount_due", "amount_paid", "amount_remaining")
    )
    return _status_totals(connection, f, "report_invoices", "finalized_at", sums)


def invoice_aging(connection: sa.Connection, f: Filters) -> list[Row]:
    where, params = _where(f)
    return _rows(connection, f"SELECT * FROM report_invoice_aging WHERE {where} "
                 f"ORDER BY {scope_order()}, bucket LIMIT {GROUPS_MAX}", params)  # fmt: skip


def invoices(connection: sa.Connection, f: Filters) -> Page:
    where, params = _where(f, "finalized_at")
    sql = (
        "SELECT invoice_id, account, livemode, customer, status, currency, amount_due, "
        f"amount_paid, due_date, finalized_at FROM report_invoices WHERE {where} "
        "ORDER BY COALESCE(finalized_at, 0) DESC, invoice_id"
    )
    return _page(connection, sql, params, f)


def invoice_history(connection: sa.Connection, f: Filters, invoice_id: str) -> list[Row]:
    where, params = _where(f, currency=False)
    params["invoice_id"] = invoice_id
    sql = (
        "SELECT invoice_id, account, livemode, status, reached_at FROM report_invoice_history "
        f"WHERE {where} AND invoice_id = :invoice_id ORDER BY reached_at, status LIMIT 50"
    )
    return _rows(connection, sql, params)


def open_disputes(connection: sa.Connection, f: Filters) -> Page:
    where, params = _where(f)
    sql = (
        f"SELECT * FROM report_open_disputes WHERE {where} ORDER BY "
        "CASE WHEN evidence_due_by IS NULL THEN 1 ELSE 0 END, evidence_due_by, dispute_id"
    )
    return _page(connection, sql, params, f)


def dispute_totals(connection: sa.Connection, f: Filters) -> list[Row]:
    sums = tuple(
        f"CAST(SUM({name}) AS BIGINT) AS {name}"
        for name in ("amount", "funds_withdrawn", "funds_reinstated", "dispute_fees")
    )
    return _status_totals(connection, f, "report_disputes", "created", sums)


def pipeline(connection: sa.Connection) -> dict[str, Any]:
    """Store head, checkpoints with lag, dead letters (count, latest reasons), offsets."""
    head = _rows(connection, "SELECT * FROM report_store_position", {})
    dead_count = connection.execute(sa.text("SELECT COUNT(*) FROM report_dead_letters")).scalar()
    latest_dead = _latest_errors(
        connection,
        'SELECT id, topic, "partition", "offset", error, received_at FROM report_dead_letters '
        "ORDER BY id DESC",
    )
    failed = _latest_errors(
        connection,
        "SELECT projection, position, event_id, error FROM report_projection_failures "
        "ORDER BY position DESC",
    )
    failed_count = connection.execute(
        sa.text("SELECT COUNT(*) FROM report_projection_failures")
    ).scalar()
    return {
        "not_projected": int(failed_count or 0),
        "latest_not_projected": failed,
        "head": head[0] if head else None,
        "checkpoints": _rows(connection, "SELECT * FROM report_projection_checkpoints "
                             "ORDER BY projection", {}),  # fmt: skip
        "dead_letters": int(dead_count or 0),
        "latest_dead_letters": latest_dead,
        "offsets": _rows(connection, "SELECT * FROM report_consumer_offsets ORDER BY topic, "
                         f'"partition" LIMIT {PARTITIONS_MAX}', {}),  # fmt: skip
    }


def _latest_errors(connection: sa.Connection, ordered_sql: str) -> list[Row]:
    """The first DEAD_LETTERS_SHOWN rows of ``ordered_sql``, each ``error`` cut to
    ERROR_CHARS_MAX characters."""
    rows = _rows(connection, f"{ordered_sql} LIMIT {DEAD_LETTERS_SHOWN}", {})
    for row in rows:
        row["error"] = str(row["error"])[:ERROR_CHARS_MAX]
    return rows


def day_of(unix_s: int) -> int:
    return unix_s // DAY_S
