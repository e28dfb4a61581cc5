"""The rebuild's bounded cache of the merged states its previous batches wrote (``StateCache``),
and what it knows of the table it caches: which keys it forgot, which batch is still being
written. Kept apart from base.py, whose fold only consults it through ``in``, ``get``,
``may_be_stored`` and ``put``."""

from __future__ import annotations

from collections import OrderedDict

from projections.bulk import Key
from projections.merge import Fields, MergedState

HELD_BATCHES_MAX = 1  # the batch being written (the next is planned meanwhile, then held)
FORGOTTEN_BITS = 1 << 23  # StateCache's record of forgotten keys: 8,388,608 bits, 1 MiB


def _forgotten_bit(key: Key) -> tuple[int, int]:
    """Where ``key``'s bit in the record of forgotten keys is: (byte index, mask). One place,
    because ``put`` marks the very bit ``may_be_stored`` tests."""
    bit = hash(key) & (FORGOTTEN_BITS - 1)
    return bit >> 3, 1 << (bit & 7)


class StateCache:
    """The merged states the last batches of ONE writer wrote, by key, so that the next batch
    folds into them without reading (and decoding) them back. Only for a writer that nobody
    else writes beside: a rebuild's new generation (its lease excludes other rebuilds, the
    worker writes the live one). Bounded: the least recently folded objects are forgotten
    (a forgotten object is read from its table again).

    A rebuild plans a batch while the previous one is still being written (rebuild.Fill): the
    states of a planned batch are ``hold``-en, kept whatever the bound until ``settle`` says its
    write committed, because until then its table does not hold them for a read to find."""

    def __init__(self, objects_max: int) -> None:
        assert objects_max > 0, objects_max
        self.objects_max = objects_max
        self._states: OrderedDict[Key, MergedState[Fields]] = OrderedDict()
        # Made for tables that start EMPTY (a new generation): while this holds, an object the
        # cache never saw is not in the table either (no read needed); False once a table may
        # hold rows the cache did not see (``forget_all``; rows written by another process).
        self.holds_all = True
        # One bit per hash of the keys forgotten by the bound (FORGOTTEN_BITS, a fixed 1 MiB):
        # a key whose bit is clear was never forgotten, so with ``holds_all`` an object neither
        # cached nor marked is new and is not read. A bit set by another key's hash only costs
        # a read that finds nothing. (Reading every key the cache lacks, once the first was
        # forgotten, was a bulk SELECT per batch for objects mostly new: 5% of a 1,000,000-event
        # rebuild, docs/PERFORMANCE.md.)
        self._forgotten = bytearray(FORGOTTEN_BITS // 8)
        self._held: list[dict[Key, MergedState[Fields]]] = []  # planned batches, oldest first

    def __contains__(self, key: Key) -> bool:
        return key in self._states or any(key in held for held in self._held)

    def get(self, key: Key) -> MergedState[Fields]:
        if key in self._states:  # the newest: every put and hold lands here first
            self._states.move_to_end(key)
            return self._states[key]
        for held in reversed(self._held):  # forgotten by the bound, its write not committed
            if key in held:
                return held[key]
        raise KeyError(key)

    def put(self, key: Key, state: MergedState[Fields]) -> None:
        """Only once the state is written: a fold that raises leaves the cache as it was."""
        self._states[key] = state
        self._states.move_to_end(key)
        while len(self._states) > self.objects_max:
            forgotten, _state = self._states.popitem(last=False)
            index, mask = _forgotten_bit(forgotten)
            self._forgotten[index] |= mask

    def may_be_stored(self, key: Key) -> bool:
        """Whether the table may hold ``key``'s row, for a key the cache does not hold."""
        if not self.holds_all:
            return True
        index, mask = _forgotten_bit(key)
        return bool(self._forgotten[index] & mask)

    def hold(self, states: dict[Key, MergedState[Fields]]) -> None:
        """A planned batch's states, before its write commits (``forget_all`` if it fails)."""
        assert len(self._held) < HELD_BATCHES_MAX, "a batch held before the last one settled"
        for key, state in states.items():
            self.put(key, state)
        self._held.append(states)

    def settle(self) -> None:
        """The oldest held batch's write committed: its table holds its states now."""
        assert self._held, "nothing held"
        self._held.pop(0)

    def forget_all(self) -> None:
        """A held batch's write failed: what the cache holds may never have been committed."""
        self._states.clear()
        self._held.clear()
        self.holds_all = False
