"""The Stripe objects of a payment: payment intent, charge and its balance transaction, refund
(payments.py tells the stories that emit them)."""

from __future__ import annotations

from dataclasses import dataclass

from demo.history.ids import Json, midnight_after
from demo.history.model import Charge, Customer, Scope
from demo.history.money import processing_fee, settled
from demo.history.world import World

CLIENT_SECRET_CHARS = 25


@dataclass
class Intent:
    """A payment intent: what every one of its snapshots shares."""

    id: str
    customer: Customer
    amount: int
    currency: str
    created: int
    description: str | None
    secret: str


def new_intent(
    world: World, scope: Scope, customer: Customer, amount: int, t: int, description: str | None
) -> Intent:
    """A fresh payment intent's id and client secret, created at ``t`` (not emitted)."""
    pi_id = world.ids.id("pi_", scope, t, "3")
    secret = world.ids.chars(CLIENT_SECRET_CHARS)
    return Intent(pi_id, customer, amount, customer.currency, t, description, secret)


def payment_intent_obj(
    intent: Intent, status: str, latest_charge: str | None, error_charge: str | None = None
) -> Json:
    customer = intent.customer
    return {
        "id": intent.id,
        "object": "payment_intent",
        "amount": intent.amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": intent.amount if status == "succeeded" else 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": {"allow_redirects": "always", "enabled": True},
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{intent.id}_secret_{intent.secret}",
        "confirmation_method": "automatic",
        "created": intent.created,
        "currency": intent.currency,
        "customer": customer.id,
        "description": intent.description,
        "excluded_payment_method_types": None,
        "last_payment_error": None if error_charge is None else _card_declined(error_charge),
        "latest_charge": latest_charge,
        "livemode": False,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None if status == "requires_payment_method" else customer.payment_method,
        "payment_method_configuration_details": None,
        "payment_method_options": {
            "card": {
                "installments": None,
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            }
        },
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": customer.email,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }


def _card_declined(charge_id: str) -> Json:
    return {
        "charge": charge_id,
        "code": "card_declined",
        "decline_code": "generic_decline",
        "doc_url": "https://docs.stripe.com/error-codes/card-declined",
        "message": "Your card was declined.",
        "type": "card_error",
    }


def charge_bt(world: World, charge: Charge) -> Json:
    """The charge's balance transaction: the settled amount, Stripe's fee (and the platform's
    application fee of a direct charge on the connected account), pending for two days."""
    currency, gross, rate = settled(charge.scope.account, charge.currency, charge.amount)
    fee_details: list[Json] = [
        {
            "amount": processing_fee(gross, currency),
            "application": None,
            "currency": currency,
            "description": "Stripe processing fees",
            "type": "stripe_fee",
        }
    ]
    if charge.application_fee is not None:
        fee_details.append(
            {
                "amount": charge.application_fee[1],
                "application": world.application,
                "currency": charge.currency,
                "description": "Application fee",
                "type": "application_fee",
            }
        )
    fee = sum(item["amount"] for item in fee_details)
    return {
        "id": world.ids.id("txn_", charge.scope, charge.created, "3"),
        "object": "balance_transaction",
        "amount": gross,
        "available_on": midnight_after(charge.created, 2),
        "balance_type": "payments",
        "created": charge.created,
        "currency": currency,
        "description": charge.description,
        "exchange_rate": rate,
        "fee": fee,
        "fee_details": fee_details,
        "net": gross - fee,
        "reporting_category": "charge",
        "source": charge.id,
        "status": "pending",
        "type": "charge",
    }


def charge_obj(world: World, charge: Charge) -> Json:
    customer = charge.customer
    succeeded = charge.status == "succeeded"
    fee = charge.application_fee
    # An id, as in every real webhook: the fee is in the balance transaction itself.
    bt = None if charge.balance_transaction is None else charge.balance_transaction["id"]
    return {
        "id": charge.id,
        "object": "charge",
        "amount": charge.amount,
        "amount_captured": charge.amount if succeeded else 0,
        "amount_refunded": charge.amount_refunded,
        "application": world.application if fee else None,
        "application_fee": fee[0] if fee else None,
        "application_fee_amount": fee[1] if fee else None,
        "balance_transaction": bt,
        "billing_details": _billing_details(customer),
        "calculated_statement_descriptor": "STRIPE-LEDGER DEMO",
        "captured": succeeded,
        "created": charge.created,
        "currency": charge.currency,
        "customer": customer.id,
        "description": charge.description,
        "disputed": charge.disputed,
        "failure_balance_transaction": None,
        "failure_code": charge.failure_code,
        "failure_message": "Your card was declined." if charge.failure_code else None,
        "fraud_details": {},
        "livemode": False,
        "metadata": {},
        "on_behalf_of": None,
        "outcome": _outcome(world, succeeded),
        "paid": succeeded,
        "payment_intent": charge.payment_intent,
        "payment_method": customer.payment_method,
        "payment_method_details": {"card": _card_details(charge, succeeded), "type": "card"},
        "radar_options": {},
        "receipt_email": customer.email,
        "receipt_number": None,
        "receipt_url": f"https://pay.stripe.com/receipts/payment/{charge.id[3:]}",
        "refunded": charge.amount_refunded == charge.amount and succeeded,
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": charge.status,
        "transfer_data": None,
        "transfer_group": None,
    }


def _billing_details(customer: Customer) -> Json:
    address = dict.fromkeys(("city", "country", "line1", "line2", "postal_code", "state"))
    return {
        "address": address,
        "email": customer.email,
        "name": customer.name,
        "phone": None,
        "tax_id": None,
    }


def _outcome(world: World, succeeded: bool) -> Json:
    return {
        "advice_code": None,
        "network_advice_code": None,
        "network_decline_code": None,
        "network_status": "approved_by_network" if succeeded else "declined_by_network",
        "reason": None if succeeded else "generic_decline",
        "risk_level": "normal",
        "risk_score": world.rng.randint(5, 60),
        "seller_message": "Payment complete."
        if succeeded
        else "The bank did not return any further details with this decline.",
        "type": "authorized" if succeeded else "issuer_declined",
    }


def _card_details(charge: Charge, succeeded: bool) -> Json:
    brand, last4, exp_month, exp_year = charge.customer.card
    return {
        "amount_authorized": charge.amount if succeeded else None,
        "authorization_code": None,
        "brand": brand,
        "checks": {
            "address_line1_check": None,
            "address_postal_code_check": None,
            "cvc_check": "pass",
        },
        "country": "JP" if charge.currency == "jpy" else "US",
        "exp_month": exp_month,
        "exp_year": exp_year,
        "extended_authorization": {"status": "disabled"},
        "fingerprint": charge.customer.id[4:20],
        "funding": "credit",
        "incremental_authorization": {"status": "unavailable"},
        "installments": None,
        "last4": last4,
        "mandate": None,
        "multicapture": {"status": "unavailable"},
        "network": brand,
        "network_token": {"used": False},
        "network_transaction_id": None,
        "overcapture": {"maximum_amount_capturable": charge.amount, "status": "unavailable"},
        "regulated_status": "unregulated",
        "three_d_secure": None,
        "wallet": None,
    }


def refund_obj(
    refund_id: str, charge: Charge, amount: int, created: int, bt_id: str, ref: str | None
) -> Json:
    return {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": bt_id,
        "charge": charge.id,
        "created": created,
        "currency": charge.currency,
        "destination_details": {
            "card": {
                "reference": ref,
                "reference_status": "available" if ref else "pending",
                "reference_type": "acquirer_reference_number",
                "type": "refund",
            },
            "type": "card",
        },
        "metadata": {},
        "payment_intent": charge.payment_intent,
        "reason": "requested_by_customer",
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }
