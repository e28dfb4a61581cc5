"""A deterministic, realistic Stripe event history for demos, tests and benchmarks.

``generate(seed, events)`` tells "stories" (a customer pays, a charge is refunded, a subscription's
invoices are paid, fail, become uncollectible or are voided, a dispute is won or lost, a payout
is paid, fails or is canceled, the balance is reported) until about ``events`` distinct events
exist, as Stripe v1 snapshot events of API version 2026-07-29.dahlia. ``DemoHistory.deliveries``
is the order a webhook endpoint would see them in: mostly by ``created``, with neighbours
swapped, some events delayed and about 3% delivered twice (Stripe delivers at least once).

Webhooks carry what Stripe's carry: ``charge.balance_transaction`` is the ``txn_...`` id (Stripe
never expands it in a webhook), refunds and payouts name theirs by id, and disputes embed their
``balance_transactions`` list as Stripe sends it. The balance transactions Stripe would hold for
the history (charges with their fee_details, refunds, dispute withdrawals and reinstatements
with the dispute fee, payouts, their cancellations and failures, and the application fee the
platform takes of each direct charge on the connected account; the US platform's EUR charges
settle in USD with their exchange_rate) are in
``DemoHistory.balance_transactions``, with each automatic payout's members, the objects their
``source`` names and the final Balance per account: the demo serves them with the stand-in
Stripe API (demo/standin.py) to ``balance-sync``. Every transaction's net sums, per account and
currency, to that Balance, and every automatic payout's members (its own transaction aside) sum
to its amount. Automatic payouts pay out available transactions only.

One deliberate departure from Stripe's defaults:

* ``invoice.payments`` (InvoicePayment objects, 2025-03-31.basil and later) is included, as an
  ``expand[]=payments`` would; invoices have no top-level ``charge``, ``payment_intent`` or
  ``subscription``: the subscription is ``invoice.parent.subscription_details.subscription``.

Everything derives from ``random.Random(seed)`` and a fixed clock starting 2026-11-01T00:00:00Z:
the same ``(seed, events)`` gives byte-identical output (pinned by digests in
tests/test_demo_history.py). Money is integers in minor units (JPY is zero-decimal: 3000 is
3000 yen). The events are plain dicts; ``deliveries`` holds the same dict objects as ``events``
(duplicates are copies): treat them as read-only.

The modules, one per story: ``ids`` (ids and the clock), ``model`` (the history and the
builder's records), ``money`` (fees, settlement), ``world`` (the state every story takes),
``customers``, ``payment_objects`` and ``payments`` (intents, charges, application fees,
refunds), ``disputes``, ``subscriptions`` and ``invoices``, ``payouts``, ``balances`` (snapshots
and the API's final state), ``deliveries`` (the delivery order), ``builder`` (the coordinator).
``python -m demo.history`` writes a history as JSON lines.
"""

from demo.history.builder import EVENTS_MAX, encode, generate, generate_before, iter_payloads
from demo.history.ids import API_VERSION, BASE_TIMESTAMP, DAY_S
from demo.history.model import DemoHistory

__all__ = [
    "API_VERSION",
    "BASE_TIMESTAMP",
    "DAY_S",
    "EVENTS_MAX",
    "DemoHistory",
    "encode",
    "generate",
    "generate_before",
    "iter_payloads",
]
