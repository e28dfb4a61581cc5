"""Dispute stories: a charge disputed, funds withdrawn with the dispute fee, evidence
submitted, then lost, or won with the funds (all or a share) reinstated."""

from __future__ import annotations

from dataclasses import dataclass

from demo.history.ids import DAY_S, Json, midnight_after
from demo.history.model import Charge
from demo.history.money import settled
from demo.history.world import World

DISPUTE_FEE = {"usd": 1500, "eur": 2000, "jpy": 1500}  # in the settlement currency
RESPONSE_DAYS = 14  # evidence is due by the end of the 14th day
DISPUTE_REASONS = (
    "fraudulent",
    "product_not_received",
    "duplicate",
    "subscription_canceled",
    "product_unacceptable",
    "credit_not_processed",
    "general",
)
EVIDENCE_KEYS = (
    "access_activity_log",
    "billing_address",
    "cancellation_policy",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_communication",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "customer_signature",
    "duplicate_charge_documentation",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "receipt",
    "refund_policy",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "service_documentation",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_documentation",
    "shipping_tracking_number",
    "uncategorized_file",
    "uncategorized_text",
)


@dataclass
class Dispute:
    """What every snapshot of one dispute shares."""

    id: str
    charge: Charge
    amount: int  # in the charge's currency: what was not refunded
    reason: str
    created: int
    due_by: int


def dispute_bt(world: World, dispute: Dispute, amount: int, fee: int, t: int) -> Json:
    """A withdrawal (``amount`` < 0) or reinstatement: ``amount`` in the charge's currency,
    ``fee`` already in the settlement currency."""
    charge = dispute.charge
    withdrawal = amount < 0
    currency, amount_settled, rate = settled(charge.scope.account, charge.currency, amount)
    return {
        "id": world.ids.id("txn_", charge.scope, t),
        "object": "balance_transaction",
        "amount": amount_settled,
        "available_on": midnight_after(t, 2),
        "balance_type": "payments",
        "created": t,
        "currency": currency,
        "description": f"Chargeback {'withdrawal' if withdrawal else 'reversal'} for {charge.id}",
        "exchange_rate": rate,
        "fee": fee,
        "fee_details": [
            {
                "amount": fee,
                "application": None,
                "currency": currency,
                "description": "Dispute fee",
                "type": "stripe_fee",
            }
        ],
        "net": amount_settled - fee,
        "reporting_category": "dispute" if withdrawal else "dispute_reversal",
        "source": dispute.id,
        "status": "pending",
        "type": "adjustment",
    }


def dispute_obj(dispute: Dispute, status: str, bts: list[Json], submissions: int, now: int) -> Json:
    """The dispute at ``now``: its balance transactions embedded (copies), as Stripe sends them."""
    charge = dispute.charge
    evidence: Json = dict.fromkeys(EVIDENCE_KEYS)
    evidence["enhanced_evidence"] = {}
    if submissions:
        evidence["customer_email_address"] = charge.customer.email
        evidence["customer_name"] = charge.customer.name
        evidence["uncategorized_text"] = "Customer received the goods; see receipt."
    return {
        "id": dispute.id,
        "object": "dispute",
        "amount": dispute.amount,
        "balance_transactions": [
            {**bt, "fee_details": [dict(item) for item in bt["fee_details"]]} for bt in bts
        ],
        "charge": charge.id,
        "created": dispute.created,
        "currency": charge.currency,
        "enhanced_eligibility_types": [],
        "evidence": evidence,
        "evidence_details": {
            "due_by": dispute.due_by,
            "enhanced_eligibility": {},
            "has_evidence": submissions > 0,
            "past_due": now > dispute.due_by and submissions == 0,
            "submission_count": submissions,
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": charge.payment_intent,
        "payment_method_details": {
            "card": {
                "brand": charge.customer.card[0],
                "case_type": "chargeback",
                "network_reason_code": "10.4" if dispute.reason == "fraudulent" else "13.1",
            },
            "type": "card",
        },
        "reason": dispute.reason,
        "status": status,
    }


def dispute_story(
    world: World, charge: Charge, t: int, outcome: str, reinstate_share: int = 100
) -> None:
    """created + funds_withdrawn (same second), updated (evidence), closed won/lost,
    and for a won dispute funds_reinstated (same second as closed)."""
    scope = charge.scope
    dispute_id = world.ids.id("dp_", scope, t)
    fee = DISPUTE_FEE[settled(scope.account, charge.currency, 0)[0]]  # in the settled one
    dispute = Dispute(
        id=dispute_id,
        charge=charge,
        amount=charge.amount - charge.amount_refunded,
        reason=world.rng.choice(DISPUTE_REASONS),
        created=t,
        due_by=midnight_after(t, RESPONSE_DAYS) - 1,
    )
    charge.disputed = True
    world.emit("charge.dispute.created", dispute_obj(dispute, "needs_response", [], 0, t), t, scope)
    withdrawal = dispute_bt(world, dispute, -dispute.amount, fee, t)
    world.emit(
        "charge.dispute.funds_withdrawn",
        dispute_obj(dispute, "needs_response", [withdrawal], 0, t),
        t,
        scope,
        effect=("dispute", withdrawal["currency"], withdrawal["net"], t),
    )
    world.book(scope, withdrawal)
    t2 = t + world.rng.randint(2 * DAY_S, 10 * DAY_S)
    world.emit(
        "charge.dispute.updated",
        dispute_obj(dispute, "under_review", [withdrawal], 1, t2),
        t2,
        scope,
        api=True,
        previous={"status": "needs_response", "evidence_details": {"has_evidence": False}},
    )
    t3 = t2 + world.rng.randint(20 * DAY_S, 60 * DAY_S)
    world.emit(
        "charge.dispute.closed", dispute_obj(dispute, outcome, [withdrawal], 1, t3), t3, scope
    )
    if outcome != "won":
        return
    back = dispute.amount * reinstate_share // 100
    fee_back = fee * reinstate_share // 100
    reinstatement = dispute_bt(world, dispute, back, -fee_back, t3)
    world.emit(
        "charge.dispute.funds_reinstated",
        dispute_obj(dispute, "won", [withdrawal, reinstatement], 1, t3),
        t3,
        scope,
        effect=("dispute", reinstatement["currency"], reinstatement["net"], t3),
    )
    world.book(scope, reinstatement)
