"""Ids and the clock of a demo history: Stripe-shaped ids drawn from the history's generator.

An id is ``prefix + version + 5 base62 chars of time + the account's tag + 8 random chars``,
as Stripe's carry a time part and an account part; every id of a history is unique. All draws
come from the ``random.Random`` given (or the one passed per call): the same seed, the same ids.
"""

from __future__ import annotations

import random
from typing import Any, Protocol

API_VERSION = "2026-07-29.dahlia"
BASE_TIMESTAMP = 1_793_491_200  # 2026-11-01T00:00:00Z
DAY_S = 86_400
ID_EPOCH_S = 1_400_000_000  # ids carry a base62 time part, like Stripe's, relative to this
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
B62_PAIRS = tuple(first + second for first in B62 for second in B62)  # 3844
ID_TIME_CHARS = 5
ID_RANDOM_CHARS = 8
SHORT_ID_CHARS = 14

Json = dict[str, Any]


class Tagged(Protocol):
    """What an id needs of its account: the 10 base62 chars every id of the account carries."""

    @property
    def tag(self) -> str: ...


def midnight_after(timestamp_s: int, days: int) -> int:
    """The UTC midnight ``days`` days after the day of ``timestamp_s``."""
    return (timestamp_s // DAY_S + days) * DAY_S


def time_part(created_s: int) -> str:
    """``created_s`` as the 5 base62 chars of an id (seconds since ``ID_EPOCH_S``)."""
    value = max(created_s - ID_EPOCH_S, 0)
    part = ""
    for _ in range(ID_TIME_CHARS):
        value, digit = divmod(value, 62)
        part = B62[digit] + part
    return part


class Ids:
    """The ids of one history: random chars, unique ids, API request ids."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def chars(self, count: int, rng: random.Random | None = None) -> str:
        """``count`` random base62 chars: one draw of bits, two chars per divmod (fast)."""
        value = (rng or self.rng).getrandbits(6 * count + 16)
        pairs = []
        for _ in range((count + 1) // 2):
            value, pair = divmod(value, len(B62_PAIRS))
            pairs.append(B62_PAIRS[pair])
        return "".join(pairs)[:count]

    def id(
        self,
        prefix: str,
        scope: Tagged,
        created_s: int,
        version: str = "1",
        rng: random.Random | None = None,
    ) -> str:
        """prefix + version + 5 chars of time + the account tag + 8 random chars (24 chars)."""
        stamp = time_part(created_s)
        while True:
            candidate = f"{prefix}{version}{stamp}{scope.tag}{self.chars(ID_RANDOM_CHARS, rng)}"
            if candidate not in self.used:
                self.used.add(candidate)
                return candidate

    def short_id(self, prefix: str) -> str:
        """prefix + 14 random chars (customers, requests), unique."""
        while True:
            candidate = prefix + self.chars(SHORT_ID_CHARS)
            if candidate not in self.used:
                self.used.add(candidate)
                return candidate

    def request(self, api: bool) -> Json:
        """An event's ``request``: an API call's id and idempotency key, or none (automatic)."""
        if not api:
            return {"id": None, "idempotency_key": None}
        bits = self.rng.getrandbits(128)
        key = f"{bits:032x}"
        idempotency_key = f"{key[:8]}-{key[8:12]}-4{key[13:16]}-a{key[17:20]}-{key[20:]}"
        return {"id": self.short_id("req_"), "idempotency_key": idempotency_key}
