"""Period close: a month whose books never change again, and late facts as adjustments.

``close_period`` freezes the journal's postings up to the end of a month (everything before it
that no earlier close froze) into ``closed_postings``. From then on the books of one account and
mode are, for any instant before the watermark (the end of the last closed month), those frozen
rows, and after it the live journal. A fact that arrives later and changes an entry dated before
the watermark (a late event, a balance transaction synced after the close) is not rewritten
into the closed month: the difference between the live entry and its frozen rows posts as an
ADJUSTMENT entry dated at the watermark, the first instant of the first open period, naming the
entry it adjusts. Each adjustment is the difference of two balanced entries, so it balances,
and frozen + adjustments + live-after-watermark sums to the live journal: the books still tie
to the trial balance of today, and a closed month's export is byte-identical forever.

Months close in order (the first close freezes all history before its end); only the last
closed month can be reopened, and every close and reopen is logged in ``period_close_log``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from ledger.database import WRITE

PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
CLOSED_POSTINGS_MAX = 5_000_000  # the same bound as an export: one read in memory
LOG_DETAIL_CHARS_MAX = 500  # of a period_close_log row's detail
POSTING_COLUMNS = (
    "currency", "posted_at", "entry_id", "kind", "ledger_account", "amount",
    "automatic_payout_id", "object_type", "object_id", "estimated",
)  # fmt: skip


class PeriodError(ValueError):
    """A period that cannot be closed or reopened: one line, nothing changed."""


@dataclass(frozen=True)
class Posting:
    currency: str
    posted_at: int
    entry_id: str
    kind: str
    ledger_account: str
    amount: int
    automatic_payout_id: str | None
    object_type: str | None
    object_id: str | None
    estimated: bool
    adjustment: bool = False  # a late change of an entry dated in a closed period


@dataclass(frozen=True)
class Closure:
    period: str
    since_s: int
    until_s: int
    closed_at_s: int
    postings: int
    digest: str


def parse_period(text: str) -> tuple[int, int]:
    """``2026-11`` -> [since, until) in unix s, UTC."""
    match = PERIOD.match(text.strip())
    if not match:
        raise PeriodError(f"not a month: {text!r} (e.g. 2026-11)")
    year, month = int(match[1]), int(match[2])
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)
    return int(start.timestamp()), int(end.timestamp())


def period_of(instant: int) -> str:
    return dt.datetime.fromtimestamp(instant, dt.UTC).strftime("%Y-%m")


def _key(account: str | None) -> str:
    return account or ""


def closures(connection: sa.Connection, account: str | None, livemode: bool) -> list[Closure]:
    rows = connection.execute(
        sa.text(
            "SELECT period, since_s, until_s, closed_at_s, postings, digest FROM closed_periods "
            "WHERE account_key = :key AND livemode = :livemode ORDER BY since_s"
        ),
        {"key": _key(account), "livemode": livemode},
    )
    return [Closure(*row) for row in rows]


def _live(connection: sa.Connection, account: str | None, livemode: bool) -> list[Posting]:
    scope = "account IS NULL" if account is None else "account = :account"
    rows = connection.execute(
        sa.text(
            "SELECT currency, COALESCE(posted_at, 0), entry_id, kind, ledger_account, amount, "
            f"automatic_payout_id, object_type, object_id, estimated FROM report_journal "
            f"WHERE {scope} AND livemode = :livemode LIMIT :rows_max"
        ),
        {"account": account, "livemode": livemode, "rows_max": CLOSED_POSTINGS_MAX + 1},
    ).all()
    if len(rows) > CLOSED_POSTINGS_MAX:
        raise PeriodError(f"more than {CLOSED_POSTINGS_MAX} postings: beyond this tool's bound")
    return [posting_of(row) for row in rows]


def posting_of(row: Iterable[Any], adjustment: bool = False) -> Posting:
    values = list(row)
    return Posting(
        str(values[0]), int(values[1]), str(values[2]), str(values[3]), str(values[4]),
        int(values[5]), values[6], values[7], values[8], bool(values[9]), adjustment,
    )  # fmt: skip


def _frozen(connection: sa.Connection, account: str | None, livemode: bool) -> list[Posting]:
    rows = connection.execute(
        sa.text(
            f"SELECT {', '.join(POSTING_COLUMNS)}, adjustment FROM closed_postings "
            "WHERE account_key = :key AND livemode = :livemode"
        ),
        {"key": _key(account), "livemode": livemode},
    ).all()
    return [posting_of(row[:-1], bool(row[-1])) for row in rows]


def _sums(postings: Iterable[Posting]) -> dict[tuple[str, str, str], int]:
    out: dict[tuple[str, str, str], int] = defaultdict(int)
    for p in postings:
        out[p.entry_id, p.currency, p.ledger_account] += p.amount
    return out


def adjustments(live: list[Posting], frozen: list[Posting], watermark: int) -> list[Posting]:
    """Live entries dated before the watermark minus what was frozen of them, posted at the
    watermark: one balanced adjustment per changed entry and currency."""
    before = [p for p in live if p.posted_at < watermark]
    now, then = _sums(before), _sums(frozen)
    example: dict[str, Posting] = {p.entry_id: p for p in frozen}
    example.update({p.entry_id: p for p in before})
    out = []
    for key in sorted(set(now) | set(then)):
        delta = now.get(key, 0) - then.get(key, 0)
        if delta:
            entry_id, currency, ledger_account = key
            out.append(replace(
                example[entry_id], currency=currency, ledger_account=ledger_account,
                amount=delta, posted_at=watermark, adjustment=True,
            ))  # fmt: skip
    return out


def effective_postings(
    connection: sa.Connection, account: str | None, livemode: bool
) -> list[Posting] | None:
    """The books of one scope: frozen rows, adjustments at the watermark, the live journal
    after it. None when no month of the scope is closed (the books are the live journal)."""
    closed = closures(connection, account, livemode)
    if not closed:
        return None
    watermark = closed[-1].until_s
    live = _live(connection, account, livemode)
    frozen = _frozen(connection, account, livemode)
    after = [p for p in live if p.posted_at >= watermark]
    return frozen + adjustments(live, frozen, watermark) + after


def digest(postings: Iterable[Posting]) -> str:
    lines = sorted(
        "|".join(str(getattr(p, name)) for name in (*POSTING_COLUMNS, "adjustment"))
        for p in postings
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def close_period(
    engine: sa.Engine, period: str, account: str | None, livemode: bool, now_s: int
) -> Closure:
    """Freeze the books of one scope up to the end of ``period``; in one transaction."""
    since, until = parse_period(period)
    if until > now_s:
        raise PeriodError(f"{period} has not ended yet: it can be closed from {period_of(until)}")
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        closed = closures(connection, account, livemode)
        if closed and closed[-1].until_s >= until:
            raise PeriodError(f"already closed through {closed[-1].period}")
        if closed and closed[-1].until_s != since:
            raise PeriodError(f"close {period_of(closed[-1].until_s)} first: months close in order")
        books = effective_postings(connection, account, livemode)
        if books is None:
            books = _live(connection, account, livemode)
        watermark = closed[-1].until_s if closed else None
        fresh = [
            p for p in books
            if p.posted_at < until and (watermark is None or p.posted_at >= watermark)
        ]  # fmt: skip
        if fresh:
            connection.execute(
                sa.text(
                    "INSERT INTO closed_postings (account_key, livemode, period, "
                    f"{', '.join(POSTING_COLUMNS)}, adjustment) VALUES (:key, :livemode, "
                    f":period, {', '.join(':' + name for name in POSTING_COLUMNS)}, :adjustment)"
                ),
                [
                    {"key": _key(account), "livemode": livemode, "period": period,
                     **{name: getattr(p, name) for name in (*POSTING_COLUMNS, "adjustment")}}
                    for p in fresh
                ],
            )  # fmt: skip
        closure = Closure(period, since, until, now_s, len(fresh), digest(fresh))
        connection.execute(
            sa.text(
                "INSERT INTO closed_periods (account_key, livemode, period, since_s, until_s, "
                "closed_at_s, postings, digest) VALUES (:key, :livemode, :period, :since, "
                ":until, :at, :postings, :digest)"
            ),
            {"key": _key(account), "livemode": livemode, "period": period, "since": since,
             "until": until, "at": now_s, "postings": len(fresh), "digest": closure.digest},
        )  # fmt: skip
        _log(connection, account, livemode, period, "close", now_s,
             f"{len(fresh)} postings frozen, sha256 {closure.digest}")  # fmt: skip
    return closure


def reopen_period(
    engine: sa.Engine, period: str, account: str | None, livemode: bool, now_s: int
) -> int:
    """Unfreeze the last closed month (its rows return to the live journal); logged."""
    parse_period(period)
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        closed = closures(connection, account, livemode)
        if not closed or period not in {c.period for c in closed}:
            raise PeriodError(f"{period} is not closed")
        if closed[-1].period != period:
            raise PeriodError(f"reopen {closed[-1].period} first: only the last closed month")
        params = {"key": _key(account), "livemode": livemode, "period": period}
        where = "account_key = :key AND livemode = :livemode AND period = :period"
        removed = connection.execute(sa.text(f"DELETE FROM closed_postings WHERE {where}"), params)
        connection.execute(sa.text(f"DELETE FROM closed_periods WHERE {where}"), params)
        _log(connection, account, livemode, period, "reopen", now_s,
             f"{removed.rowcount} frozen postings released")  # fmt: skip
    return int(removed.rowcount)


def _log(
    connection: sa.Connection,
    account: str | None,
    livemode: bool,
    period: str,
    action: str,
    at_s: int,
    detail: str,
) -> None:
    connection.execute(
        sa.text(
            "INSERT INTO period_close_log (account_key, livemode, period, action, at_s, detail) "
            "VALUES (:key, :livemode, :period, :action, :at, :detail)"
        ),
        {"key": _key(account), "livemode": livemode, "period": period, "action": action,
         "at": at_s, "detail": detail[:LOG_DETAIL_CHARS_MAX]},
    )  # fmt: skip


def frozen_trial_balance(
    connection: sa.Connection, as_of: int, account: str | None, livemode: bool | None
) -> tuple[set[tuple[str | None, bool]], list[tuple[Any, ...]]]:
    """The scopes whose books are frozen at ``as_of`` (up to their watermark) and their trial
    balance rows from the frozen postings: account, livemode, currency, ledger account, debits,
    credits, balance. After the watermark the books equal the live journal (see above)."""
    marks = connection.execute(
        sa.text(
            "SELECT account_key, livemode, MAX(until_s) FROM closed_periods "
            "GROUP BY account_key, livemode"
        )  # fmt: skip
    ).all()
    scopes: set[tuple[str | None, bool]] = set()
    rows: list[tuple[Any, ...]] = []
    for key, mode, watermark in marks:
        scope = (key or None, bool(mode))
        wanted = (account is None or (account == "platform" and not key) or account == key) and (
            livemode is None or livemode == bool(mode)
        )
        if not wanted or as_of > int(watermark):  # at the watermark: exactly the frozen rows
            continue
        scopes.add(scope)
        sums = connection.execute(
            sa.text(
                "SELECT currency, ledger_account, "
                "CAST(SUM(CASE WHEN amount > 0 THEN amount ELSE 0 END) AS BIGINT), "
                "CAST(SUM(CASE WHEN amount < 0 THEN -amount ELSE 0 END) AS BIGINT), "
                "CAST(SUM(amount) AS BIGINT) FROM closed_postings WHERE account_key = :key "
                "AND livemode = :livemode AND posted_at < :as_of "
                "GROUP BY currency, ledger_account"
            ),
            {"key": key, "livemode": bool(mode), "as_of": as_of},
        )
        rows += [(*scope, *row) for row in sums]
    return scopes, rows
