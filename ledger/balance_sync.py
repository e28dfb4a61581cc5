"""``balance-sync``: Stripe's balance transactions into the event store, as immutable facts.

There is no webhook for balance transactions, so they are fetched: ``GET
/v1/balance_transactions`` over ``created`` ranges with ``expand[]=data.source`` (newest first,
pages of 100), and, for every automatic payout seen, ``GET /v1/balance_transactions?payout=po_``
so that each transaction the payout paid out is stored with its ``automatic_payout_id``. Each
page's facts (ledger/balance_facts.py) and the move of the scope's cursor are ONE transaction
(``EventStore.append(also=...)``): a run killed at any instruction resumes at its last stored
page, and nothing is stored twice (a fact's id is a hash of its content).

The cursor (table ``balance_sync_cursors``, one row per key mode and account) holds the
``created`` ranges already read, and ``unsettled_from``: the oldest ``created`` of a transaction
last seen pending (or of a payout not yet paid or failed). Every pass reads again from there to
now, so pending -> available is stored as a new fact; settled ranges are never read twice.

At the end of a complete pass the scope's Balance (``GET /v1/balance``) is stored, and on the
first complete pass the opening balance at ``since``: per currency, the balance now minus the
nets of every transaction created since (docs/BALANCE_SYNC.md).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa

from ledger.backfill import LIST_LAG_S, Interval, gaps, known_ids, merge_intervals
from ledger.balance_facts import (
    BALANCE_TRANSACTION_FACT,
    balance_fact,
    bt_fact,
    opening_balances,
    opening_fact,
    opening_fact_id,
)
from ledger.database import WRITE
from ledger.envelope import EnvelopeError, StripeEvent
from ledger.logs import get_logger
from ledger.schema import balance_sync_cursors as cursors_table
from ledger.schema import events as events_table
from ledger.store import EventStore, Incoming
from ledger.stripe_api import StripeApi

TRANSACTIONS_PATH = "/v1/balance_transactions"
EXPAND_SOURCE = {"expand": ["data.source"]}
RUN_S_MAX_DEFAULT = 3600  # one run stops (resumably) after this long; the next one continues
PAYOUT_MEMBERS_MAX = 100_000  # transactions listed for one payout before the run refuses
INTERVALS_MAX = 10_000  # ranges in one cursor; merged ranges stay a handful in practice
NETS_READ_BATCH_ROWS_MAX = 1000
SHOWN_CHARS_MAX = 200  # of a malformed balance transaction, in the error that names it
UNSETTLED_PAYOUT_STATUSES = ("pending", "in_transit")

log = get_logger("ledger.balance_sync")


class BalanceSyncError(Exception):
    """Stripe answered something the sync cannot store; the message is safe to show."""


# -- the cursor -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    account: str | None
    livemode: bool
    intervals: tuple[Interval, ...] = ()
    unsettled_from: int | None = None
    opening_stored: bool = False
    complete_passes: int = 0

    @property
    def key(self) -> str:
        return scope_key(self.account, self.livemode)

    def covered_settled(self) -> list[Interval]:
        """The ranges a pass need not read: read before, and older than anything unsettled."""
        if self.unsettled_from is None:
            return list(self.intervals)
        top = self.unsettled_from - 1
        return [(lo, min(hi, top)) for lo, hi in self.intervals if lo <= top]

    def with_range(self, lo: int, hi: int) -> Cursor:
        merged = tuple(merge_intervals([*self.intervals, (lo, hi)]))
        assert len(merged) <= INTERVALS_MAX, f"cursor {self.key}: {len(merged)} ranges"
        return replace(self, intervals=merged)


def scope_key(account: str | None, livemode: bool) -> str:
    """Test and live data never share a cursor: the key mode is part of the scope."""
    return f"{'live' if livemode else 'test'} {account or 'platform'}"


def _cursor_from_row(row: Any) -> Cursor:
    return Cursor(
        account=row.account,
        livemode=bool(row.livemode),
        intervals=tuple((int(lo), int(hi)) for lo, hi in json.loads(row.intervals)),
        unsettled_from=row.unsettled_from,
        opening_stored=bool(row.opening_stored),
        complete_passes=int(row.complete_passes),
    )


def _select_cursor(key: str) -> sa.Select[Any]:
    return sa.select(cursors_table).where(cursors_table.c.scope_key == key)


def load_cursor(engine: sa.Engine, account: str | None, livemode: bool) -> Cursor:
    with engine.connect() as connection:
        row = connection.execute(_select_cursor(scope_key(account, livemode))).first()
    return _cursor_from_row(row) if row is not None else Cursor(account, livemode)


def _save_cursor(
    connection: sa.Connection,
    account: str | None,
    livemode: bool,
    change: Callable[[Cursor], Cursor],
) -> Cursor:
    """Read the stored cursor (locked), apply ``change``, write it back: in the caller's
    transaction, so it moves exactly when that transaction's facts are stored."""
    key = scope_key(account, livemode)
    statement = _select_cursor(key)
    if connection.dialect.name == "postgresql":
        statement = statement.with_for_update()
    row = connection.execute(statement).first()
    before = _cursor_from_row(row) if row is not None else Cursor(account, livemode)
    after = change(before)
    assert (after.account, after.livemode) == (account, livemode)
    values = {
        "account": account,
        "livemode": livemode,
        "intervals": json.dumps([list(i) for i in after.intervals]),
        "unsettled_from": after.unsettled_from,
        "opening_stored": after.opening_stored,
        "complete_passes": after.complete_passes,
        "updated_at": dt.datetime.now(dt.UTC),
    }
    if row is None:
        connection.execute(sa.insert(cursors_table).values(scope_key=key, **values))
    else:
        connection.execute(
            sa.update(cursors_table).where(cursors_table.c.scope_key == key).values(**values)
        )
    return after


def forget_cursor(engine: sa.Engine, account: str | None, livemode: bool) -> None:
    """--restart: read the whole window again (the facts stay: appends are idempotent)."""
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        connection.execute(
            sa.delete(cursors_table).where(
                cursors_table.c.scope_key == scope_key(account, livemode)
            )
        )


# -- one page ---------------------------------------------------------------------------------


def _min_or(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def unsettled(bt: Mapping[str, Any]) -> bool:
    """Still able to change: pending funds, or a payout that has not arrived or failed yet."""
    if bt.get("status") == "pending":
        return True
    source = bt.get("source")
    return (
        isinstance(source, Mapping)
        and source.get("object") == "payout"
        and source.get("status") in UNSETTLED_PAYOUT_STATUSES
    )


def automatic_payout_id(bt: Mapping[str, Any]) -> str | None:
    """The payout of a ``type: payout`` transaction whose (expanded) payout is automatic."""
    source = bt.get("source")
    if bt.get("type") != "payout" or not isinstance(source, Mapping):
        return None
    payout_id = source.get("id")
    if source.get("automatic") is True and isinstance(payout_id, str):
        return payout_id
    return None


def _created(bt: Mapping[str, Any]) -> int:
    created = bt.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        raise BalanceSyncError(
            f"Stripe listed a balance transaction without 'created': {str(bt)[:SHOWN_CHARS_MAX]}"
        )
    return created


def _adding(lo: int, hi: int) -> Callable[[Cursor], Cursor]:
    return lambda cursor: cursor.with_range(lo, hi)


@dataclass
class SyncTotals:
    scopes: int = 0
    complete_scopes: int = 0
    pages: int = 0
    listed: int = 0  # transactions listed over created ranges
    payouts: int = 0  # automatic payouts whose transactions were listed
    payout_listed: int = 0  # transactions listed under those payouts
    appended: int = 0  # new facts (transactions, balances, openings)
    known: int = 0  # facts already stored
    openings: int = 0
    interrupted: bool = False
    stop_reason: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Pass:
    """One pass over one scope: what it has read so far."""

    api: StripeApi
    store: EventStore
    account: str | None
    fetched_s: int
    totals: SyncTotals
    should_stop: Callable[[], bool]
    unsettled_min: int | None = None
    payouts_seen: set[str] = field(default_factory=set)

    @property
    def livemode(self) -> bool:
        return self.api.livemode

    def fact(self, bt: Mapping[str, Any], payout_id: str | None) -> StripeEvent:
        if not isinstance(bt.get("id"), str):
            raise BalanceSyncError(
                f"Stripe listed a balance transaction without an id: {str(bt)[:SHOWN_CHARS_MAX]}"
            )
        try:
            return bt_fact(
                bt,
                automatic_payout_id=payout_id,
                fetched_s=self.fetched_s,
                livemode=self.livemode,
                account=self.account,
                api_version=self.api.api_version,
            )
        except EnvelopeError as error:
            raise BalanceSyncError(f"balance transaction {bt.get('id')!r}: {error}") from None

    def payout_members(self, payout_id: str) -> list[StripeEvent]:
        facts: list[StripeEvent] = []
        params = {"payout": payout_id, **EXPAND_SOURCE}
        for page in self.api.pages(TRANSACTIONS_PATH, params, self.account):
            facts.extend(self.fact(bt, payout_id) for bt in page)
            if len(facts) > PAYOUT_MEMBERS_MAX:
                raise BalanceSyncError(
                    f"payout {payout_id} lists more than {PAYOUT_MEMBERS_MAX} transactions"
                )
        self.totals.payouts += 1
        self.totals.payout_listed += len(facts)
        return facts

    def store_page(self, page: Sequence[Mapping[str, Any]], mark: Interval | None) -> None:
        """The page's facts, its payouts' members and the cursor's move: one transaction."""
        facts = [self.fact(bt, None) for bt in page]
        page_unsettled = min((_created(bt) for bt in page if unsettled(bt)), default=None)
        self.unsettled_min = _min_or(self.unsettled_min, page_unsettled)
        for bt in page:
            payout_id = automatic_payout_id(bt)
            if payout_id is not None and payout_id not in self.payouts_seen:
                self.payouts_seen.add(payout_id)
                facts.extend(self.payout_members(payout_id))

        def move(cursor: Cursor) -> Cursor:
            moved = cursor if mark is None else cursor.with_range(*mark)
            return replace(moved, unsettled_from=_min_or(moved.unsettled_from, page_unsettled))

        self._append(facts, move)
        self.totals.listed += len(page)

    def _append(self, facts: Sequence[StripeEvent], move: Callable[[Cursor], Cursor]) -> None:
        received = dt.datetime.now(dt.UTC)

        def save(connection: sa.Connection) -> None:
            _save_cursor(connection, self.account, self.livemode, move)

        result = self.store.append(
            [Incoming(fact, "backfill", received) for fact in facts], also=save
        )
        self.totals.appended += result.appended
        self.totals.known += result.duplicates

    def walk(self, windows: Sequence[Interval], mark_top: int, deadline: float) -> bool:
        """Read ``windows`` newest first; False when stopped (signal or run time) mid-way."""
        for lo, hi in windows:
            mark_hi = min(hi, mark_top)
            params = {"created": {"gte": lo, "lte": hi}, **EXPAND_SOURCE}
            for page in self.api.pages(TRANSACTIONS_PATH, params, self.account):
                oldest = min((_created(bt) for bt in page), default=None)
                # Everything newer than the page's oldest second is stored (that second may
                # continue on the next page).
                mark = (max(lo, oldest + 1), mark_hi) if oldest is not None else None
                self.store_page(page, mark if mark and mark[0] <= mark[1] else None)
                self.totals.pages += 1
                if self.should_stop() or time.monotonic() > deadline:
                    return False
            if lo <= mark_hi:
                self._append([], _adding(lo, mark_hi))
        return True


# -- the end of a pass: balance and opening ---------------------------------------------------


def stored_nets(
    store: EventStore, account: str | None, livemode: bool, since_s: int
) -> dict[str, int]:
    """Per currency, the net of every distinct transaction of the scope created >= since_s, as
    stored (a transaction stored in several versions counts once: its net never changes)."""
    statement = sa.select(events_table.c.payload).where(
        events_table.c.type == BALANCE_TRANSACTION_FACT,
        events_table.c.livemode == livemode,
        events_table.c.account.is_(None) if account is None else events_table.c.account == account,
    )
    nets: dict[str, int] = {}
    seen: set[str] = set()
    with store.engine.connect() as connection:
        rows = connection.execution_options(yield_per=NETS_READ_BATCH_ROWS_MAX).execute(statement)
        for (payload,) in rows:
            bt = payload["data"]["object"]
            if bt["id"] in seen or _created(bt) < since_s:
                continue
            seen.add(bt["id"])
            net = bt.get("net")
            if not isinstance(net, int) or isinstance(net, bool):
                raise BalanceSyncError(f"stored balance transaction {bt['id']} has no integer net")
            currency = str(bt.get("currency") or "").lower()
            nets[currency] = nets.get(currency, 0) + net
    return nets


def _close_only(run: _Pass) -> None:
    """A range that ends before now: GET /v1/balance would answer for now, not for its end, so
    neither the balance nor the opening is stored; the pass still completes its range."""
    settled_from = run.unsettled_min

    def close(cursor: Cursor) -> Cursor:
        return replace(
            cursor, unsettled_from=settled_from, complete_passes=cursor.complete_passes + 1
        )

    run._append([], close)
    run.totals.complete_scopes += 1
    warning = "the range ends before now (--until): no balance or opening balance stored"
    if warning not in run.totals.warnings:
        run.totals.warnings.append(warning)


def _finish(run: _Pass, since_s: int, clock: Callable[[], int]) -> None:
    """Store the Balance (and, the first time, the opening) and close the pass's cursor."""
    if clock() + LIST_LAG_S < int(time.time()):
        _close_only(run)
        return
    balance = run.api.get("/v1/balance", {}, run.account)
    if balance.get("livemode", run.livemode) is not run.livemode:
        raise BalanceSyncError(
            "GET /v1/balance answered for the other mode than the key's: test and live never mix"
        )
    fetched_s = clock()
    cursor = load_cursor(run.store.engine, run.account, run.livemode)
    facts = [
        balance_fact(
            balance,
            fetched_s=fetched_s,
            livemode=run.livemode,
            account=run.account,
            api_version=run.api.api_version,
        )
    ]
    opening_id = opening_fact_id(run.account, run.livemode)
    # The first opening wins (its id has no hash); after --restart it is already stored.
    if not cursor.opening_stored and not known_ids(run.store.engine, [opening_id]):
        nets = stored_nets(run.store, run.account, run.livemode, since_s)
        facts.append(
            opening_fact(
                opening_balances(balance, nets),
                since_s=since_s,
                fetched_s=fetched_s,
                livemode=run.livemode,
                account=run.account,
                api_version=run.api.api_version,
            )
        )
        run.totals.openings += 1
    settled_from = run.unsettled_min

    def close(cursor: Cursor) -> Cursor:
        # Every transaction at or after the pass's old unsettled_from was read again in this
        # pass, so the oldest unsettled one it saw is exact.
        return replace(
            cursor,
            unsettled_from=settled_from,
            opening_stored=True,
            complete_passes=cursor.complete_passes + 1,
        )

    run._append(facts, close)
    run.totals.complete_scopes += 1


def sync_scope(
    api: StripeApi,
    store: EventStore,
    *,
    account: str | None,
    since_s: int,
    totals: SyncTotals,
    deadline: float,
    clock: Callable[[], int],
    should_stop: Callable[[], bool] = lambda: False,
) -> bool:
    """One pass over one scope; True when it completed (balance and opening stored)."""
    now_s = clock()
    cursor = load_cursor(store.engine, account, api.livemode)
    run = _Pass(api, store, account, now_s, totals, should_stop)
    totals.scopes += 1
    if not run.walk(gaps(since_s, now_s, cursor.covered_settled()), now_s - LIST_LAG_S, deadline):
        return False
    # Transactions created while the pass ran would make the balance disagree with the nets:
    # read up to the second the balance is fetched in (usually one empty page).
    finished_s = clock()
    if finished_s > now_s and not run.walk([(now_s + 1, finished_s)], now_s - LIST_LAG_S, deadline):
        return False
    _finish(run, since_s, clock)
    return True


def balance_sync(
    api: StripeApi,
    store: EventStore,
    *,
    accounts: Sequence[str | None],
    since_s: int,
    run_s_max: float = RUN_S_MAX_DEFAULT,
    clock: Callable[[], int] = lambda: int(time.time()),
    should_stop: Callable[[], bool] = lambda: False,
    on_page: Callable[[SyncTotals], None] = lambda totals: None,
) -> SyncTotals:
    """One pass over each scope (None = the platform); stops resumably on ``should_stop`` or
    after ``run_s_max`` seconds, at a page boundary."""
    assert run_s_max > 0
    totals = SyncTotals()
    deadline = time.monotonic() + run_s_max

    def stop() -> bool:
        on_page(totals)
        return should_stop()

    for account in accounts:
        if should_stop() or time.monotonic() > deadline:
            totals.interrupted = True
            break
        done = sync_scope(
            api,
            store,
            account=account,
            since_s=since_s,
            totals=totals,
            deadline=deadline,
            clock=clock,
            should_stop=stop,
        )
        if not done:
            totals.interrupted = True
            break
    if totals.interrupted:
        totals.stop_reason = (
            "stop requested" if should_stop() else f"run-time limit ({run_s_max:.0f}s) reached"
        )
    return totals


__all__ = [
    "BalanceSyncError",
    "Cursor",
    "SyncTotals",
    "balance_sync",
    "forget_cursor",
    "load_cursor",
    "scope_key",
    "stored_nets",
    "sync_scope",
    "unsettled",
]
