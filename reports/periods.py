"""Reports over a period: the Balance report summary between two instants, the trial balance as
of an instant, and the time-filtered journal and itemized views.

Periods are half-open, ``[since, until)`` in unix seconds (UTC), like Stripe's report runs
(``interval_start`` inclusive, ``interval_end`` exclusive). ``as_of`` counts what was posted
before that instant. Everything reads the ``report_*`` views only, so the reporting role can
run it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from ledger.timespec import parse_instant as parse_instant  # --since/--until of the reports
from reports import closing

PAYOUT_CATEGORIES = ("payout", "payout_reversal")
# view name -> its column holding when the row happened (unix s)
TIME_COLUMNS = {"journal": "posted_at", "balance_itemized": "created_utc"}
SUMMARY_COLUMNS = [
    "account",
    "livemode",
    "currency",
    "starting_balance",
    "activity_gross",
    "activity_fee",
    "activity_net",
    "payouts",
    "ending_balance",
]
Scope = tuple[str | None, bool, str]
Rows = tuple[list[str], list[tuple[Any, ...]]]


def scope_filter(account: str | None, livemode: bool | None) -> tuple[str, dict[str, Any]]:
    """SQL over a report view's account/livemode columns; 'platform' is the NULL account."""
    clauses: list[str] = ["1 = 1"]
    params: dict[str, Any] = {}
    if account == "platform":
        clauses.append("account IS NULL")
    elif account is not None:
        clauses.append("account = :account")
        params["account"] = account
    if livemode is not None:
        clauses.append("livemode = :livemode")
        params["livemode"] = livemode
    return " AND ".join(clauses), params


def balance_summary(
    engine: sa.Engine,
    since: int | None,
    until: int | None,
    account: str | None = None,
    livemode: bool | None = None,
) -> Rows:
    """Stripe's Balance summary for ``[since, until)``: starting balance (the opening balance
    plus every balance transaction before ``since``), activity by gross/fee/net (all but
    payouts), payouts, ending balance = starting + activity net + payouts."""
    where, params = scope_filter(account, livemode)
    totals: dict[Scope, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SUMMARY_COLUMNS[3:], 0))
    with engine.connect() as connection:
        openings = connection.execute(
            sa.text(f"SELECT account, livemode, currency, as_of, amount "
                    f"FROM report_opening_balances WHERE {where}"),
            params,
        ).all()  # fmt: skip
        opened = {}
        for row in openings:
            scope = (row.account, bool(row.livemode), row.currency)
            opened[scope] = int(row.as_of)
            totals[scope]["starting_balance"] += int(row.amount)
        itemized = connection.execute(
            sa.text(f"SELECT account, livemode, currency, created_utc, reporting_category, "
                    f"gross, fee, net FROM report_balance_itemized WHERE {where}"),
            params,
        ).all()  # fmt: skip
    for row in itemized:
        scope = (row.account, bool(row.livemode), row.currency)
        created = int(row.created_utc or 0)
        if scope in opened and created < opened[scope]:
            continue  # before the opening balance: already in it
        if until is not None and created >= until:
            continue
        figures = totals[scope]
        if since is not None and created < since:
            figures["starting_balance"] += int(row.net)
        elif row.reporting_category in PAYOUT_CATEGORIES:
            figures["payouts"] += int(row.net)
        else:
            figures["activity_gross"] += int(row.gross)
            figures["activity_fee"] += int(row.fee)
            figures["activity_net"] += int(row.net)
    rows = []
    for scope in sorted(totals, key=lambda s: (s[1], s[0] or "", s[2])):
        figures = totals[scope]
        figures["ending_balance"] = (
            figures["starting_balance"] + figures["activity_net"] + figures["payouts"]
        )
        rows.append((*scope, *(figures[name] for name in SUMMARY_COLUMNS[3:])))
    return SUMMARY_COLUMNS, rows


def trial_balance(
    engine: sa.Engine, as_of: int | None, account: str | None = None, livemode: bool | None = None
) -> Rows:
    """Debits, credits and balance per ledger account of the postings before ``as_of``."""
    where, params = scope_filter(account, livemode)
    if as_of is not None:
        where += " AND COALESCE(posted_at, 0) < :as_of"
        params["as_of"] = as_of
    sql = (
        "SELECT account, livemode, currency, ledger_account, "
        "CAST(SUM(CASE WHEN amount > 0 THEN amount ELSE 0 END) AS BIGINT) AS debits, "
        "CAST(SUM(CASE WHEN amount < 0 THEN -amount ELSE 0 END) AS BIGINT) AS credits, "
        "CAST(SUM(amount) AS BIGINT) AS balance "
        f"FROM report_journal WHERE {where} "
        "GROUP BY account, livemode, currency, ledger_account "
        "ORDER BY livemode, COALESCE(account, ''), currency, ledger_account"
    )
    with engine.connect() as connection:
        result = connection.execute(sa.text(sql), params)
        columns, rows = list(result.keys()), [tuple(row) for row in result]
        if as_of is None:
            return columns, rows
        # a closed month stays as it was at its close (reports/closing.py)
        frozen, frozen_rows = closing.frozen_trial_balance(connection, as_of, account, livemode)
    if not frozen:
        return columns, rows
    rows = [row for row in rows if (row[0], bool(row[1])) not in frozen] + frozen_rows
    rows.sort(key=lambda row: (bool(row[1]), row[0] or "", row[2], row[3]))
    return columns, rows
