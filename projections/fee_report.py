"""``reconcile --balance-transactions``: Stripe's fees beside the fees the journal posted.

Per account and currency, the fees of ``GET /v1/balance_transactions`` created in a window beside
the fees the journal projection posted for the *same* transactions, read from its stable view
(``proj_journal_postings``). The journal's own definitions say where to look: the entry id of a
balance transaction (``journal_rules.balance_transaction_entry_id``) and the accounts Stripe's
fee lands in (``accounts.STRIPE_FEE_ACCOUNTS``). The Events API side of reconcile is
ledger/backfill.py.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ledger.stripe_api import StripeApi
from projections.accounts import STRIPE_FEE_ACCOUNTS
from projections.journal_rules import balance_transaction_entry_id
from projections.registry import view_name

JOURNAL_POSTINGS_VIEW = view_name("journal_postings")
ENTRY_IDS_PER_QUERY_MAX = 500


@dataclass
class FeeRow:
    account: str | None
    currency: str
    transactions: int = 0
    stripe_fees: int = 0  # sum of balance_transaction.fee (minor units)
    journal_fees: int = 0  # fees the journal posted for those same transactions
    unposted: int = 0  # transactions with a fee the journal has no posting for

    @property
    def drift(self) -> int:
        return self.stripe_fees - self.journal_fees


@dataclass
class FeeReport:
    since: int
    until: int
    journal_available: bool
    rows: list[FeeRow] = field(default_factory=list)
    note: str = ""


def journal_view_exists(engine: sa.Engine) -> bool:
    inspector = sa.inspect(engine)
    return JOURNAL_POSTINGS_VIEW in inspector.get_view_names() or (
        JOURNAL_POSTINGS_VIEW in inspector.get_table_names()
    )


def _journal_fees(
    engine: sa.Engine, account: str | None, livemode: bool, entry_ids: Sequence[str]
) -> dict[str, int]:
    """entry_id -> posted fee amount, for the fee entries among ``entry_ids``."""
    if not entry_ids:
        return {}
    view = sa.table(
        JOURNAL_POSTINGS_VIEW,
        sa.column("entry_id"),
        sa.column("account_key"),
        sa.column("livemode"),
        sa.column("ledger_account"),
        sa.column("amount"),
    )
    found: dict[str, int] = defaultdict(int)
    with engine.connect() as connection:
        for start in range(0, len(entry_ids), ENTRY_IDS_PER_QUERY_MAX):
            statement = sa.select(view.c.entry_id, view.c.amount).where(
                view.c.entry_id.in_(list(entry_ids[start : start + ENTRY_IDS_PER_QUERY_MAX])),
                view.c.account_key == (account or ""),
                view.c.livemode == livemode,
                view.c.ledger_account.in_(STRIPE_FEE_ACCOUNTS),
            )
            for entry_id, amount in connection.execute(statement):
                found[entry_id] += int(amount)
    return found


def _fee_entry_id(txn: dict[str, Any]) -> str | None:
    """The journal's entry for a balance transaction whose root is its source (a charge's fee,
    a dispute's fee); None when the transaction names no source."""
    source = txn.get("source")
    if isinstance(source, dict):
        source = source.get("id")
    if not isinstance(source, str):
        return None
    return balance_transaction_entry_id(source, str(txn["id"]))


def _add_page(
    rows: dict[tuple[str | None, str], FeeRow],
    account: str | None,
    page: Sequence[dict[str, Any]],
    posted: dict[str, int],
) -> None:
    for txn in page:
        currency = str(txn.get("currency") or "?").lower()
        fee = txn.get("fee")
        fee = fee if isinstance(fee, int) and not isinstance(fee, bool) else 0
        row = rows.setdefault((account, currency), FeeRow(account, currency))
        row.transactions += 1
        row.stripe_fees += fee
        entry_id = _fee_entry_id(txn)
        row.journal_fees += posted.get(entry_id, 0) if entry_id is not None else 0
        if fee and (entry_id is None or entry_id not in posted):
            row.unposted += 1


def fee_report(
    api: StripeApi,
    engine: sa.Engine | None,
    *,
    since: int,
    now: dt.datetime,
    accounts: Sequence[str | None],
    on_page: Callable[[int], None] = lambda seen: None,
) -> FeeReport:
    """Per account and currency: the fees of Stripe's balance transactions created in
    [since, now] beside the fees the journal posted for the same transactions."""
    now_s = int(now.timestamp())
    available = engine is not None and journal_view_exists(engine)
    report = FeeReport(since=since, until=now_s, journal_available=available)
    if not available:
        report.note = (
            f"the journal view {JOURNAL_POSTINGS_VIEW} does not exist in this database (run "
            "`stripe-ledger migrate` and `stripe-ledger project`): only Stripe's fees are shown"
        )
    rows: dict[tuple[str | None, str], FeeRow] = {}
    seen = 0
    for account in accounts:
        params = {"created": {"gte": since, "lte": now_s}}
        for page in api.pages("/v1/balance_transactions", params, account):
            entry_ids = [entry_id for txn in page if (entry_id := _fee_entry_id(txn)) is not None]
            posted = (
                _journal_fees(engine, account, api.livemode, entry_ids)
                if available and engine is not None
                else {}
            )
            _add_page(rows, account, page, posted)
            seen += len(page)
            on_page(seen)
    report.rows = sorted(rows.values(), key=lambda r: (r.account or "", r.currency))
    return report
