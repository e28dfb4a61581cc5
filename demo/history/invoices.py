"""One invoice of a subscription along its path: created, finalized, then paid | retry_paid
(a declined attempt, then paid) | uncollectible_paid (three declines, marked uncollectible,
paid later) | void (maybe after a declined attempt, by a merchant's API call)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from demo.history.ids import DAY_S, Json, midnight_after
from demo.history.payment_objects import new_intent, payment_intent_obj
from demo.history.payments import attempt
from demo.history.world import World

if TYPE_CHECKING:  # subscriptions.py runs the cycles: a type only, no import at run time
    from demo.history.subscriptions import Subscription

RETRY_S = 3 * DAY_S  # Smart Retries, as the demo has them: three days apart
DECLINES_BEFORE_UNCOLLECTIBLE = 3
AUTO_FINALIZE_S = 3600  # a draft is finalized an hour after it is created
PERIOD_S = 30 * DAY_S
DUE_DAYS = 30  # a sent invoice's due date


@dataclass
class InvoiceState:
    """What changes along an invoice's path."""

    status: str = "draft"
    attempt_count: int = 0
    amount_paid: int = 0
    finalized_at: int | None = None
    paid_at: int | None = None
    voided_at: int | None = None
    marked_uncollectible_at: int | None = None
    next_payment_attempt: int | None = None
    payments: list[Json] = field(default_factory=list)  # InvoicePayment objects


class InvoiceCycle:
    """One invoice of ``sub`` created at ``start``; ``run()`` tells it along ``path``."""

    def __init__(
        self, world: World, sub: Subscription, start: int, *, first: bool, path: str
    ) -> None:
        customer = sub.customer
        self.world = world
        self.sub = sub
        self.start = start  # the invoice's created
        self.first = first  # the subscription's first invoice
        self.path = path
        self.scope = sub.scope
        self.customer = customer
        self.amount = sub.plan.amount
        self.id = world.ids.id("in_", sub.scope, start)
        self.number = f"{customer.invoice_prefix}-{customer.invoice_sequence:04d}"
        customer.invoice_sequence += 1
        self.line_id = "il_" + world.ids.id("", sub.scope, start)
        self.state = InvoiceState(
            next_payment_attempt=None if sub.send_invoice else start + AUTO_FINALIZE_S
        )
        self.due_date = midnight_after(start, DUE_DAYS) if sub.send_invoice else None
        self.billing_reason = "subscription_create" if first else "subscription_cycle"
        self.description = "Subscription creation" if first else "Subscription update"
        self.payment: Json = {}
        self.finalized_event_id = ""

    def run(self) -> int:
        """The invoice's events. -> the time of its last one."""
        t = self._open()
        path = self.path
        if path == "paid":
            return self._pay(t)
        if path == "retry_paid":
            return self._pay(self._fail(t, RETRY_S) + RETRY_S)
        if path == "uncollectible_paid":
            return self._uncollectible_then_paid(t)
        assert path == "void", path
        return self._void(t)

    def _emit(self, event_type: str, now: int, *, api: bool = False) -> Json:
        return self.world.emit(event_type, self.obj(now), now, self.scope, api=api)

    def _open(self) -> int:
        """invoice.created, invoice.finalized and its payment intent. -> when it is attempted."""
        world, state, scope, first = self.world, self.state, self.scope, self.first
        self._emit("invoice.created", self.start, api=first)
        t = self.start if first else self.start + AUTO_FINALIZE_S
        state.finalized_at = t
        state.status = "open"
        state.next_payment_attempt = None if self.sub.send_invoice else t
        self.finalized_event_id = self._emit("invoice.finalized", t, api=first)["id"]
        self.sub.latest_invoice = self.id
        self.intent = new_intent(world, scope, self.customer, self.amount, t, self.description)
        self.payment = {
            "id": "inpay_" + world.ids.id("", scope, t),
            "object": "invoice_payment",
            "amount_paid": None,
            "amount_requested": self.amount,
            "created": t,
            "currency": self.customer.currency,
            "invoice": self.id,
            "is_default": True,
            "livemode": False,
            "payment": {"payment_intent": self.intent.id, "type": "payment_intent"},
            "status": "open",
            "status_transitions": {"canceled_at": None, "paid_at": None},
        }
        state.payments = [self.payment]
        created = payment_intent_obj(self.intent, "requires_payment_method", None)
        world.emit("payment_intent.created", created, t, scope)
        if self.sub.send_invoice:
            return t + world.rng.randint(3600, 10 * DAY_S)  # paid on the hosted page
        return t + world.rng.randint(1, 5)

    def _fail(self, attempt_at: int, retry_in_s: int | None) -> int:
        """A declined attempt, invoice.payment_failed (the next attempt after ``retry_in_s``)."""
        _, at = attempt(self.world, self.scope, self.intent, attempt_at, api=False, fail=True)
        state = self.state
        state.attempt_count += 1
        if retry_in_s is None or self.sub.send_invoice:
            state.next_payment_attempt = None
        else:
            state.next_payment_attempt = at + retry_in_s
        self._emit("invoice.payment_failed", at)
        if not self.first:
            self.sub.set_status("past_due", at)
        return at

    def _pay(self, attempt_at: int) -> int:
        """A successful attempt: invoice.paid + invoice.payment_succeeded, the subscription
        active. The first invoice.paid of a history is delivered before its finalized."""
        world = self.world
        _, at = attempt(world, self.scope, self.intent, attempt_at, api=False)
        state = self.state
        state.attempt_count += 1
        state.amount_paid = self.amount
        state.paid_at = at
        state.status = "paid"
        state.next_payment_attempt = None
        self.payment["amount_paid"] = self.amount
        self.payment["status"] = "paid"
        self.payment["status_transitions"] = {"canceled_at": None, "paid_at": at}
        paid_event = self._emit("invoice.paid", at)
        self._emit("invoice.payment_succeeded", at)
        self.sub.set_status("active", at)
        if self.path == "paid" and self.first and world.want_invoice_reorder:
            world.want_invoice_reorder = False
            world.forced_pairs.append((self.finalized_event_id, paid_event["id"]))
        return at

    def _uncollectible_then_paid(self, t: int) -> int:
        at = t
        for attempt_number in range(1, DECLINES_BEFORE_UNCOLLECTIBLE + 1):
            last = attempt_number == DECLINES_BEFORE_UNCOLLECTIBLE
            at = self._fail(at, None if last else RETRY_S) + (0 if last else RETRY_S)
        at += DAY_S
        state = self.state
        state.status = "uncollectible"
        state.marked_uncollectible_at = at
        state.next_payment_attempt = None
        self._emit("invoice.marked_uncollectible", at)
        self.sub.set_status("unpaid", at)
        return self._pay(at + self.world.rng.randint(2 * DAY_S, 20 * DAY_S))

    def _void(self, t: int) -> int:
        """Voided by a merchant's API call, half the time after a declined attempt."""
        world = self.world
        at = t
        if world.rng.random() < 0.5:
            at = self._fail(t, RETRY_S)
        at += world.rng.randint(3600, 2 * DAY_S)
        state = self.state
        state.status = "void"
        state.voided_at = at
        state.next_payment_attempt = None
        self.payment["status"] = "canceled"
        self.payment["status_transitions"] = {"canceled_at": at, "paid_at": None}
        self._emit("invoice.voided", at, api=True)
        self.sub.set_status("active", at)
        return at

    # ---------------------------------------------------------------- the Invoice object
    def obj(self, now: int) -> Json:
        # Over 70 lines: one literal Invoice object in Stripe's key order, read best whole (its
        # line item, payments and status transitions are built below).
        state, customer, amount, invoice_id = self.state, self.customer, self.amount, self.id
        finalized = state.finalized_at is not None
        send_invoice = self.sub.send_invoice
        return {
            "id": invoice_id,
            "object": "invoice",
            "account_country": self.scope.country,
            "account_name": "Stripe Ledger Demo",
            "account_tax_ids": None,
            "amount_due": amount,
            "amount_overpaid": 0,
            "amount_paid": state.amount_paid,
            "amount_remaining": 0 if state.status == "void" else amount - state.amount_paid,
            "amount_shipping": 0,
            "application": None,
            "attempt_count": state.attempt_count,
            "attempted": state.attempt_count > 0,
            "auto_advance": state.status in ("draft", "open"),
            "automatic_tax": {
                "disabled_reason": None,
                "enabled": False,
                "liability": None,
                "provider": None,
                "status": None,
            },
            "automatically_finalizes_at": None if finalized else self.start + AUTO_FINALIZE_S,
            "billing_reason": self.billing_reason,
            "collection_method": "send_invoice" if send_invoice else "charge_automatically",
            "created": self.start,
            "currency": customer.currency,
            "custom_fields": None,
            "customer": customer.id,
            "customer_account": None,
            "customer_address": None,
            "customer_email": customer.email,
            "customer_name": customer.name,
            "customer_phone": None,
            "customer_shipping": None,
            "customer_tax_exempt": "none",
            "customer_tax_ids": [],
            "default_payment_method": None,
            "default_source": None,
            "default_tax_rates": [],
            "description": None,
            "discounts": [],
            "due_date": self.due_date,
            "effective_at": state.finalized_at,
            "ending_balance": 0 if finalized else None,
            "footer": None,
            "from_invoice": None,
            "hosted_invoice_url": f"https://invoice.stripe.com/i/{invoice_id[3:]}"
            if finalized
            else None,
            "invoice_pdf": f"https://pay.stripe.com/invoice/{invoice_id[3:]}/pdf"
            if finalized
            else None,
            "issuer": {"type": "self"},
            "last_finalization_error": None,
            "latest_revision": None,
            "lines": self._list([self._line_obj()], "lines"),
            "livemode": False,
            "metadata": {},
            "next_payment_attempt": state.next_payment_attempt,
            "number": self.number if finalized else None,
            "on_behalf_of": None,
            "parent": {
                "quote_details": None,
                "subscription_details": {"metadata": {}, "subscription": self.sub.id},
                "type": "subscription_details",
            },
            "payment_settings": {
                "default_mandate": None,
                "payment_method_options": None,
                "payment_method_types": None,
            },
            "payments": self._list(self._payments(), "payments"),
            "period_end": self.start,
            "period_start": self.start if self.first else self.start - PERIOD_S,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": None,
            "rendering": None,
            "shipping_cost": None,
            "shipping_details": None,
            "starting_balance": 0,
            "statement_descriptor": None,
            "status": state.status,
            "status_transitions": {
                "finalized_at": state.finalized_at,
                "marked_uncollectible_at": state.marked_uncollectible_at,
                "paid_at": state.paid_at,
                "voided_at": state.voided_at,
            },
            "subtotal": amount,
            "subtotal_excluding_tax": amount,
            "test_clock": None,
            "total": amount,
            "total_discount_amounts": [],
            "total_excluding_tax": amount,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": None if now == self.start else self.start,
        }

    def _list(self, data: list[Json], name: str) -> Json:
        """Stripe's list envelope of the invoice's ``name`` (all of it: one page)."""
        return {
            "object": "list",
            "data": data,
            "has_more": False,
            "total_count": len(data),
            "url": f"/v1/invoices/{self.id}/{name}",
        }

    def _payments(self) -> list[Json]:
        """Copies of the InvoicePayments as they are now (the events must not share them)."""
        return [
            dict(
                payment,
                payment=dict(payment["payment"]),
                status_transitions=dict(payment["status_transitions"]),
            )
            for payment in self.state.payments
        ]

    def _line_obj(self) -> Json:
        amount, plan, sub = self.amount, self.sub.plan, self.sub
        return {
            "id": self.line_id,
            "object": "line_item",
            "amount": amount,
            "currency": self.customer.currency,
            "description": f"1 × {plan.product_id} (at {amount} / month)",
            "discount_amounts": [],
            "discountable": True,
            "discounts": [],
            "invoice": self.id,
            "livemode": False,
            "metadata": {},
            "parent": {
                "invoice_item_details": None,
                "subscription_item_details": {
                    "invoice_item": None,
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": sub.id,
                    "subscription_item": sub.item_id,
                },
                "type": "subscription_item_details",
            },
            "period": {"end": self.start + PERIOD_S, "start": self.start},
            "pretax_credit_amounts": [],
            "pricing": {
                "price_details": {"price": plan.price_id, "product": plan.product_id},
                "type": "price_details",
                "unit_amount_decimal": str(amount),
            },
            "quantity": 1,
            "subtotal": amount,
            "taxes": [],
        }
