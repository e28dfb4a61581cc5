"""The state one demo history is built in: its random generators, ids, clock, accounts, the
events told so far and the balance transactions Stripe holds. Every story module takes it."""

from __future__ import annotations

import random

from demo.history.ids import API_VERSION, BASE_TIMESTAMP, Ids, Json
from demo.history.model import Effect, Entry, Scope, ScopeCurrency
from demo.history.money import ZERO_DECIMAL

STORY_STEP_S_MIN = 20  # seconds between the starts of two stories
STORY_STEP_S_MAX = 900
AUX_SEED_FACTOR = 1_000_003  # the auxiliary generator's seed: seed * this + AUX_SEED_OFFSET
AUX_SEED_OFFSET = 17


class World:
    """One history being built. ``rng`` draws everything the webhooks show; ``aux_rng`` the ids
    of what they never name (a payout's cancellation, application fees), so that adding those
    left the rest of the history drawing what it always drew."""

    def __init__(self, seed: int, base_s: int = BASE_TIMESTAMP) -> None:
        self.base_s = base_s  # the history's first second
        self.rng = random.Random(seed)
        self.ids = Ids(self.rng)
        self.entries: list[Entry] = []
        self.seq = 0
        self.story_events = 0
        self.clock = base_s
        self.forced_pairs: list[tuple[str, str]] = []  # (older, newer): deliver newer first
        chars = self.ids.chars
        self.platform = Scope(None, chars(10), "US", (("usd", 70), ("jpy", 20), ("eur", 10)))
        self.connect = Scope("acct_1" + chars(15), chars(10), "DE", (("eur", 70), ("usd", 30)))
        self.prices: dict[tuple[str | None, str, int], tuple[str, str]] = {}
        self.want_invoice_reorder = True  # one invoice.paid delivered before its finalized
        self.aux_rng = random.Random(seed * AUX_SEED_FACTOR + AUX_SEED_OFFSET)
        self.application = "ca_" + chars(24, self.aux_rng)  # the platform's Connect app
        self.bts: dict[str | None, list[Json]] = {None: [], self.connect.account: []}
        self.unpaid: dict[ScopeCurrency, list[Json]] = {}  # not yet in a payout
        self.payout_members: dict[str | None, dict[str, list[str]]] = {
            None: {},
            self.connect.account: {},
        }

    def advance(self) -> int:
        """The start of the next story."""
        self.clock += self.rng.randint(STORY_STEP_S_MIN, STORY_STEP_S_MAX)
        return self.clock

    def scope_of(self, account: str | None) -> Scope:
        return self.platform if account is None else self.connect

    def currency(self, scope: Scope) -> str:
        """One of the account's currencies, by weight."""
        roll = self.rng.randrange(sum(weight for _, weight in scope.currencies))
        for currency, weight in scope.currencies:
            if roll < weight:
                return currency
            roll -= weight
        return scope.currencies[0][0]

    def amount(self, currency: str) -> int:
        """A price in minor units: 5.00 to 400.99 (500 to 30000 yen)."""
        if currency in ZERO_DECIMAL:
            return self.rng.randint(5, 300) * 100
        return self.rng.randint(5, 400) * 100 + self.rng.choice((0, 0, 0, 50, 99))

    def emit(
        self,
        event_type: str,
        obj: Json,
        created: int,
        scope: Scope,
        *,
        api: bool = False,
        previous: Json | None = None,
        effect: Effect | None = None,
    ) -> Json:
        """A v1 snapshot event of ``obj`` at ``created``; ``api``: caused by an API request."""
        data: Json = {"object": obj}
        if previous is not None:
            data["previous_attributes"] = previous
        version = "3" if obj["id"][:3] in ("ch_", "pi_", "re_") else "1"
        event = {
            "id": self.ids.id("evt_", scope, created, version),
            "object": "event",
            "account": scope.account,
            "api_version": API_VERSION,
            "created": created,
            "data": data,
            "livemode": False,
            "pending_webhooks": 1 if self.rng.random() < 0.9 else 2,
            "request": self.ids.request(api),
            "type": event_type,
        }
        self.entries.append(Entry(created, self.seq, event, effect))
        self.seq += 1
        self.story_events += 1
        return event

    def book(self, scope: Scope, bt: Json) -> None:
        """A balance transaction Stripe now holds; all but payouts wait for a payout."""
        self.bts[scope.account].append(bt)
        if bt["type"] != "payout":
            self.unpaid.setdefault((scope.account, bt["currency"]), []).append(bt)
