"""Hypothesis: whatever ``parse_event`` accepts, the real event store can hold.

The envelope is the one door to the store. If it accepted a value a column cannot take (a
``created`` past BIGINT, an over-long indexed string, a NUL, a lone surrogate, NaN), that record
would fail its INSERT and, on the Kafka path, stop its partition for good. So: generate hostile
near-events, and every one the envelope accepts must append (PostgreSQL and SQLite) and read back
equal; every one it refuses raises ``EnvelopeError`` and nothing else.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.database import create_engine, migrate
from ledger.envelope import EnvelopeError, parse_event
from ledger.store import Incoming, open_event_store, utc_now

# Every character, surrogates and NUL included.
hostile_text = st.text(st.characters(codec=None, categories=None), max_size=12) | st.sampled_from(
    ["\x00", "\ud800", "a\udfffb", "é", "日本", "\U0001f600", ""]
)
long_text = st.integers(60, 300).map(lambda n: "x" * n)
numbers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 2**63 - 1, 2**63, -1]),
)
values = st.recursive(
    st.none() | st.booleans() | numbers | hostile_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(hostile_text, children, max_size=3)
    ),
    max_leaves=12,
)
_ids = itertools.count()


@st.composite
def near_events(draw: st.DrawFn) -> bytes:
    suffix = draw(st.one_of(st.just(""), hostile_text, long_text))
    event: dict[str, Any] = {
        "id": f"evt_fuzz_{next(_ids)}{suffix}",
        "object": "event",
        "type": draw(st.one_of(st.just("charge.succeeded"), hostile_text, long_text)),
        "created": draw(st.one_of(st.integers(0, 2**31), numbers)),
        "livemode": draw(st.booleans()),
        "data": {
            "object": {
                "id": draw(st.one_of(st.just("ch_1"), hostile_text, long_text, numbers)),
                "object": draw(st.one_of(st.just("charge"), hostile_text, long_text)),
                "extra": draw(values),
            }
        },
    }
    for key in ("account", "api_version"):
        if draw(st.booleans()):
            event[key] = draw(st.one_of(st.none(), hostile_text, long_text, numbers))
    ensure_ascii = draw(st.booleans())
    text = json.dumps(event, ensure_ascii=ensure_ascii, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_every_event_the_envelope_accepts_the_store_can_hold(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = str(request.getfixturevalue("postgres_url" if backend == "postgres" else "sqlite_url"))
    engine = create_engine(url)
    migrate(engine)
    store = open_event_store(engine)
    accepted: list[str] = []

    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(raw=near_events())
    def check(raw: bytes) -> None:
        try:
            event = parse_event(raw)
        except EnvelopeError:
            return
        # One transaction per event, so that a failure names its event.
        store.append([Incoming(event, "import", utc_now())])
        accepted.append(event.event_id)
        stored = {e.event_id: e for e in store.read(store.head_position() - 1, 10)}
        assert event.event_id in stored
        assert _same(stored[event.event_id].payload, event.payload)

    check()
    assert accepted, "the generator must produce some acceptable events"
    assert store.count() == len(accepted)


def _same(a: Any, b: Any) -> bool:
    """JSON equality where NaN never occurs (refused) and numbers may come back as floats."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-12)
    return bool(a == b)
