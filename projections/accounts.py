"""The journal's chart of accounts, and where each Stripe balance transaction lands in it.

Read as three tables: the accounts; Stripe's ``reporting_category`` -> the account its gross goes
to (https://docs.stripe.com/reports/reporting-categories); a ``fee_details[].type`` -> the
expense account of that fee. Every posting's account is one of ``CHART_OF_ACCOUNTS``; a category
Stripe adds later goes to ``OTHER_ACTIVITY`` until it gets its own row, so nothing is lost.

Signs: debit positive, credit negative. A balance transaction of gross ``amount``, ``fee`` and
``net = amount - fee`` posts ``-amount`` to its category's account, ``+fee_i`` to each fee's
account and ``+net`` to ``STRIPE_PENDING``; once Stripe says it is available, ``+net`` moves on
to ``STRIPE_AVAILABLE`` (dated ``available_on``).
"""

from __future__ import annotations

# -- assets: where the money is ---------------------------------------------------------------
STRIPE_PENDING = "stripe_pending"  # in the Stripe balance, not yet available
STRIPE_AVAILABLE = "stripe_available"  # in the Stripe balance, available to pay out
PAYOUTS_IN_TRANSIT = "payouts_in_transit"  # left the Stripe balance, not yet at the bank
BANK = "bank"  # arrived at the bank account
# -- income and contra-income -----------------------------------------------------------------
REVENUE = "revenue"  # charges and payments (gross), partial-capture reversals, charge failures
REFUNDS = "refunds"  # refunds (debit) and failed refunds (credit)
APPLICATION_FEE_REVENUE = "application_fee_revenue"  # Connect platform earnings
APPLICATION_FEE_REFUNDS = "application_fee_refunds"  # refunds of platform earnings
# -- expenses ----------------------------------------------------------------------------------
PROCESSING_FEES = "processing_fees"  # Stripe's fees on a transaction (fee_details stripe_fee)
DISPUTE_FEES = "dispute_fees"  # Stripe's fees on a dispute's balance transactions
APPLICATION_FEES_PAID = "application_fees_paid"  # fee_details application_fee (connected side)
FEE_TAXES = "fee_taxes"  # fee_details tax: tax on Stripe's fees
STRIPE_FEES = "stripe_fees"  # category fee: Stripe fees billed as their own transactions
DISPUTE_LOSSES = "dispute_losses"  # disputed amounts withdrawn (debit) and reinstated (credit)
# -- Connect, funding and everything else ------------------------------------------------------
CONNECT_TRANSFERS = "connect_transfers"  # transfers to connected accounts, net of reversals
TOPUPS = "topups"  # money added to the balance from a bank (and its reversals)
RESERVED_FUNDS = "reserved_funds"  # connect- and risk-reserved funds
ADVANCES = "advances"  # Stripe Capital advances and their funding
ISSUING = "issuing"  # Stripe Issuing authorizations and transactions
TAXES = "taxes"  # category tax (Stripe Tax and similar)
ADJUSTMENTS = "adjustments"  # other_adjustment
OTHER_ACTIVITY = "other_activity"  # a category this table does not name yet
OPENING_BALANCE = "opening_balance"  # equity: the Stripe balance the ledger started from

CHART_OF_ACCOUNTS = (
    STRIPE_PENDING,
    STRIPE_AVAILABLE,
    PAYOUTS_IN_TRANSIT,
    BANK,
    REVENUE,
    REFUNDS,
    APPLICATION_FEE_REVENUE,
    APPLICATION_FEE_REFUNDS,
    PROCESSING_FEES,
    DISPUTE_FEES,
    APPLICATION_FEES_PAID,
    FEE_TAXES,
    STRIPE_FEES,
    DISPUTE_LOSSES,
    CONNECT_TRANSFERS,
    TOPUPS,
    RESERVED_FUNDS,
    ADVANCES,
    ISSUING,
    TAXES,
    ADJUSTMENTS,
    OTHER_ACTIVITY,
    OPENING_BALANCE,
)
# The accounts that together are the Stripe balance (what GET /v1/balance calls available +
# pending): drift compares their sum with Stripe's.
STRIPE_BALANCE_ACCOUNTS = (STRIPE_PENDING, STRIPE_AVAILABLE)

# reporting_category -> the account its gross amount goes to.
CATEGORY_ACCOUNTS: dict[str, str] = {
    "charge": REVENUE,
    "charge_failure": REVENUE,
    "partial_capture_reversal": REVENUE,
    "refund": REFUNDS,
    "refund_failure": REFUNDS,
    "dispute": DISPUTE_LOSSES,
    "dispute_reversal": DISPUTE_LOSSES,
    "payout": PAYOUTS_IN_TRANSIT,
    "payout_reversal": PAYOUTS_IN_TRANSIT,
    "platform_earning": APPLICATION_FEE_REVENUE,
    "platform_earning_refund": APPLICATION_FEE_REFUNDS,
    "transfer": CONNECT_TRANSFERS,
    "transfer_reversal": CONNECT_TRANSFERS,
    "connect_collection_transfer": CONNECT_TRANSFERS,
    "fee": STRIPE_FEES,
    "tax": TAXES,
    "topup": TOPUPS,
    "topup_reversal": TOPUPS,
    "connect_reserved_funds": RESERVED_FUNDS,
    "risk_reserved_funds": RESERVED_FUNDS,
    "advance": ADVANCES,
    "advance_funding": ADVANCES,
    "issuing_authorization_hold": ISSUING,
    "issuing_authorization_release": ISSUING,
    "issuing_transaction": ISSUING,
    "other_adjustment": ADJUSTMENTS,
}
# Categories of the Balance report's "Payouts" section; every other category is "activity".
PAYOUT_CATEGORIES = ("payout", "payout_reversal")
DISPUTE_CATEGORIES = ("dispute", "dispute_reversal")

# fee_details[].type -> the expense account of that part of the fee.
FEE_ACCOUNTS: dict[str, str] = {
    "stripe_fee": PROCESSING_FEES,
    "payment_method_passthrough_fee": PROCESSING_FEES,
    "application_fee": APPLICATION_FEES_PAID,
    "tax": FEE_TAXES,
    "withheld_tax": FEE_TAXES,
}

# Where Stripe's own fee on a payment or dispute lands (``fee_account`` of a stripe_fee): what
# `reconcile --balance-transactions` compares with the fees of Stripe's balance transactions.
STRIPE_FEE_ACCOUNTS = (PROCESSING_FEES, DISPUTE_FEES)

assert set(CATEGORY_ACCOUNTS.values()) <= set(CHART_OF_ACCOUNTS)
assert set(FEE_ACCOUNTS.values()) <= set(CHART_OF_ACCOUNTS)


def category_account(category: str | None) -> str:
    return CATEGORY_ACCOUNTS.get(category or "", OTHER_ACTIVITY)


def fee_account(fee_type: str | None, category: str | None) -> str:
    """A Stripe fee on a dispute is a dispute fee; otherwise the fee type's account."""
    account = FEE_ACCOUNTS.get(fee_type or "", PROCESSING_FEES)
    if account == PROCESSING_FEES and category in DISPUTE_CATEGORIES:
        return DISPUTE_FEES
    return account


# A balance transaction without reporting_category (old payloads, some fixtures): its type's.
TYPE_CATEGORIES: dict[str, str] = {
    "charge": "charge",
    "payment": "charge",
    "refund": "refund",
    "payment_refund": "refund",
    "refund_failure": "refund_failure",
    "payment_failure_refund": "refund_failure",
    "payout": "payout",
    "payout_cancel": "payout_reversal",
    "payout_failure": "payout_reversal",
    "transfer": "transfer",
    "transfer_cancel": "transfer_reversal",
    "transfer_failure": "transfer_reversal",
    "transfer_refund": "transfer_reversal",
    "application_fee": "platform_earning",
    "application_fee_refund": "platform_earning_refund",
    "stripe_fee": "fee",
    "stripe_fx_fee": "fee",
    "tax_fee": "tax",
    "topup": "topup",
    "topup_reversal": "topup_reversal",
    "adjustment": "other_adjustment",
    "connect_collection_transfer": "connect_collection_transfer",
}
