"""StateCache: the rebuild's bounded cache of merged states, and what it knows of the table."""

from __future__ import annotations

from typing import Any

from projections.state_cache import StateCache


def _state(i: int) -> Any:
    return {"i": i}  # the cache never looks inside a state


def test_a_forgotten_key_may_be_stored_and_a_key_never_seen_is_not() -> None:
    cache = StateCache(objects_max=10)
    written = [("invoice", f"in_{i}", "", False) for i in range(1000)]
    for i, key in enumerate(written):
        cache.put(key, _state(i))
    forgotten, kept = written[:-10], written[-10:]
    assert all(key in cache for key in kept)
    assert not any(key in cache for key in forgotten)
    # every row written and no longer cached must be read back: no false "not stored"
    assert all(cache.may_be_stored(key) for key in forgotten)
    # a key never written is known not to be stored, but for a rare hash collision
    # (990 bits set of 8,388,608: about 1 in 8,500 keys)
    never = [("invoice", f"in_new_{i}", "", False) for i in range(10_000)]
    assert sum(cache.may_be_stored(key) for key in never) <= 10


def test_after_forget_all_every_key_may_be_stored() -> None:
    cache = StateCache(objects_max=10)
    cache.put(("dispute", "dp_1", "", False), _state(1))
    assert not cache.may_be_stored(("dispute", "dp_2", "", False))
    cache.forget_all()  # a failed write: the table may hold what the cache did not see
    assert ("dispute", "dp_1", "", False) not in cache
    assert cache.may_be_stored(("dispute", "dp_1", "", False))
    assert cache.may_be_stored(("dispute", "dp_2", "", False))
