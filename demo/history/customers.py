"""Customers of a demo history: names by currency, a card each, ``customer.created``."""

from __future__ import annotations

from demo.history.ids import Json
from demo.history.model import Customer, Scope
from demo.history.world import World

FIRST_NAMES = ("Ada", "Grace", "Alan", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen")
JP_NAMES = ("山田 太郎", "佐藤 花子", "鈴木 一郎", "高橋 美咲", "田中 健", "伊藤 さくら")
EU_NAMES = ("Zoë Müller", "Émile Dupont", "Jürgen Weiß", "Søren Kjær", "Inès Garcia")
CARDS = (("visa", "4242"), ("mastercard", "4444"), ("amex", "8431"), ("visa", "1881"))
RECENT_CUSTOMERS_MAX = 50  # a returning customer is one of the account's latest this many


def customer_obj(customer: Customer, created: int) -> Json:
    return {
        "id": customer.id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": created,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": customer.email,
        "invoice_prefix": customer.invoice_prefix,
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": customer.payment_method,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": customer.name,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": ["ja"] if customer.currency == "jpy" else ["en"],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def new_customer(world: World, scope: Scope, created: int, currency: str | None = None) -> Customer:
    """A customer of ``scope`` (in ``currency``, or one of the account's), customer.created."""
    rng = world.rng
    currency = currency or world.currency(scope)
    if currency == "jpy":
        name = rng.choice(JP_NAMES)
    elif currency == "eur":
        name = rng.choice(EU_NAMES)
    else:
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    customer_id = world.ids.short_id("cus_")
    brand, last4 = rng.choice(CARDS)
    customer = Customer(
        id=customer_id,
        currency=currency,
        name=name,
        email=f"{customer_id[4:12].lower()}@example.com",
        payment_method=world.ids.id("pm_", scope, created),
        card=(brand, last4, rng.randint(1, 12), rng.randint(2027, 2032)),
        invoice_prefix=f"{rng.getrandbits(32):08X}",
    )
    scope.customers.append(customer)
    world.emit("customer.created", customer_obj(customer, created), created, scope, api=True)
    return customer


def pick_customer(
    world: World, scope: Scope, created: int, currency: str | None = None
) -> Customer:
    """A returning customer half of the time (if there is one in ``currency``), else a new one."""
    recent = scope.customers[-RECENT_CUSTOMERS_MAX:]
    pool = [c for c in recent if currency is None or c.currency == currency]
    if pool and world.rng.random() < 0.5:
        return world.rng.choice(pool)
    return new_customer(world, scope, created, currency)
