"""Each page's figures, from queries.py, shaped for its template: money formatted by its
currency, timestamps as UTC text, charts drawn. One function per page; the Overview's and the
Journal's slow aggregates run beside the rest on connections of their own (``_aside``): on a
large store the page then takes as long as its slowest query, not their sum."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import sqlalchemy as sa

from reports.dashboard import charts, queries
from reports.dashboard.filters import DAY_S, Filters
from reports.money import format_amount

INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")
AGING_BUCKETS = ("not_due", "1-30", "31-60", "61-90", "90+", "no_due_date")
Context = dict[str, Any]
QUERIES_ASIDE_MAX = 4  # threads (and so connections) running aggregates beside a page's own
_ASIDE = ThreadPoolExecutor(max_workers=QUERIES_ASIDE_MAX, thread_name_prefix="dashboard-aside")


def _aside(engine: sa.Engine, query: Callable[[sa.Connection, Filters], Any],
           f: Filters) -> Future[Any]:  # fmt: skip
    def run() -> Any:
        with engine.connect() as connection:
            return query(connection, f)

    return _ASIDE.submit(run)


def money(amount: int | None, currency: str | None) -> str:
    if amount is None:
        return "—"
    return format_amount(int(amount), currency or "usd")


def when(unix_s: int | None) -> str:
    if unix_s is None:
        return "—"
    return dt.datetime.fromtimestamp(int(unix_s), dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def stamp(value: Any) -> str:
    """A stored timestamp (a datetime on PostgreSQL, ISO text on SQLite) as UTC text."""
    if value is None:
        return "—"
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return aware.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{str(value)[:19]} UTC"


def day_text(day: int) -> str:
    return dt.datetime.fromtimestamp(day * DAY_S, dt.UTC).strftime("%Y-%m-%d")


def scope(account: str | None, livemode: Any) -> str:
    return f"{account or 'platform'} · {'live' if livemode else 'test'}"


def overview(connection: sa.Connection, f: Filters) -> Context:
    balances = _aside(connection.engine, queries.balances, f)
    moves = _aside(connection.engine, queries.daily_balance_moves, f)
    activity = queries.activity(connection, f)
    events = queries.latest_events(connection, f)
    return {
        "balances": balances.result(),
        "activity": activity,
        "charts": balance_charts(moves.result(), f),
        "events": events,
    }


def balance_charts(moves: list[queries.Row], f: Filters) -> list[Context]:
    """Per currency: the daily end-of-day balance of each scope over a bounded window of days
    (the period asked, else the data's span; at most CHART_DAYS_MAX, the latest ones)."""
    by_currency: dict[str, dict[str, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
    for row in moves:
        name = scope(row["account"], row["livemode"])
        by_currency[row["currency"]][name][int(row["day"])] = int(row["amount"])
    out = []
    for currency in sorted(by_currency)[: charts.SERIES_MAX]:
        scopes = by_currency[currency]
        days_seen = [day for moves_by_day in scopes.values() for day in moves_by_day]
        first = f.since_s // DAY_S if f.since_s is not None else min(days_seen)
        last = f.until_s // DAY_S - 1 if f.until_s is not None else max(days_seen)
        first = max(first, last - queries.CHART_DAYS_MAX + 1)
        days = list(range(first, last + 1))
        series = []
        for name in sorted(scopes)[: charts.SERIES_MAX]:
            moves_by_day = scopes[name]
            running = sum(v for day, v in moves_by_day.items() if day < first)
            values = []
            for day in days:
                running += moves_by_day.get(day, 0)
                values.append(running)
            series.append((name, values))
        labels = [day_text(day) for day in days]
        out.append({
            "currency": currency,
            "svg": charts.line_chart(f"Balance per day, {currency.upper()}", labels, series,
                                     partial(format_amount, currency=currency)),
            "names": [name for name, _ in series],
            "rows": [(label, [money(v[i], currency) for _, v in series])
                     for i, label in enumerate(labels)],
        })  # fmt: skip
    return out


def payouts(connection: sa.Connection, f: Filters) -> Context:
    page = queries.payouts(connection, f)
    for row in page.rows:
        row["reconciles"] = reconcile_text(row)
    return {"payouts": page, "totals": queries.payout_totals(connection, f)}


def reconcile_text(row: queries.Row) -> str:
    if int(row["bt_count"]) == 0:
        return "not synced" if row["automatic"] else "manual payout: no transactions"
    if row["reconciled"]:
        return "yes"
    return f"no: transactions net {money(row['bt_net'], row['currency'])}"


def journal(connection: sa.Connection, f: Filters) -> Context:
    pending = _aside(connection.engine, queries.trial_balance, f)
    postings = queries.postings(connection, f)
    trial = pending.result()
    totals: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"debits": 0,
                                                                         "credits": 0})  # fmt: skip
    for row in trial:
        key = (scope(row["account"], row["livemode"]), row["currency"])
        totals[key]["debits"] += int(row["debits"])
        totals[key]["credits"] += int(row["credits"])
    return {
        "postings": postings,
        "trial": trial,
        "trial_totals": [
            {"scope": key[0], "currency": key[1], **sums,
             "balanced": sums["debits"] == sums["credits"]}
            for key, sums in totals.items()
        ],  # fmt: skip
    }


def invoices(connection: sa.Connection, f: Filters) -> Context:
    funnel = queries.invoice_funnel(connection, f)
    rank = {status: i for i, status in enumerate(INVOICE_STATUSES)}
    funnel.sort(key=lambda r: (r["currency"] or "", rank.get(r["status"], 99), r["status"] or ""))
    counts: dict[str, int] = defaultdict(int)
    for row in funnel:
        counts[row["status"] or "unknown"] += int(row["count"])
    bars = [(status, counts[status], str(counts[status]))
            for status in sorted(counts, key=lambda s: rank.get(s, 99))]  # fmt: skip
    aging = queries.invoice_aging(connection, f)
    buckets = {bucket: i for i, bucket in enumerate(AGING_BUCKETS)}
    aging.sort(key=lambda r: (r["livemode"], r["account"] or "", r["currency"] or "",
                              buckets.get(r["bucket"], 99)))  # fmt: skip
    invoice_id = f.extra.get("invoice")
    return {
        "funnel": funnel,
        "funnel_svg": charts.bar_chart("Invoices by status", bars),
        "aging": aging,
        "invoices": queries.invoices(connection, f),
        "invoice_id": invoice_id,
        "history": queries.invoice_history(connection, f, invoice_id) if invoice_id else [],
    }


def time_left(hours: int | None) -> str:
    if hours is None:
        return "no deadline"
    days, rest = divmod(abs(int(hours)), 24)
    text = f"{days}d {rest}h" if days else f"{rest}h"
    return f"overdue by {text}" if int(hours) < 0 else f"{text} left"


def disputes(connection: sa.Connection, f: Filters) -> Context:
    page = queries.open_disputes(connection, f)
    for row in page.rows:
        row["time_left"] = time_left(row["hours_left"])
    totals = queries.dispute_totals(connection, f)
    counts: dict[str, int] = defaultdict(int)
    for row in totals:
        counts[row["status"] or "unknown"] += int(row["count"])
    bars = [(status, count, str(count)) for status, count in sorted(counts.items())]
    return {"open": page, "totals": totals,
            "totals_svg": charts.bar_chart("Disputes by status", bars)}  # fmt: skip


def pipeline(connection: sa.Connection, f: Filters) -> Context:
    return queries.pipeline(connection)


PAGES = {
    "overview": (overview, ()),
    "payouts": (payouts, ()),
    "journal": (journal, ("ledger_account", "kind")),
    "invoices": (invoices, ("invoice",)),
    "disputes": (disputes, ()),
    "pipeline": (pipeline, ()),
}
