"""Projection shards: which objects one ``project --shard I/N`` worker folds.

A shard owns the objects whose state-row key hashes to it (``owns``). Every event folds into ONE
object (``Projection.snapshot`` names its key), so the N shards split the events between them
with no overlap and no gap, and each object's rows are written by one shard only. The rows that
several objects add to (the journal's ``balances``) are written as deltas the database commutes
(``INSERT ... ON CONFLICT DO UPDATE SET amount = amount + delta``): shards never conflict there
and never lose an update.

The hash is CRC-32 of the key's parts (not Python's ``hash``, which differs per process): every
process, on every machine, puts a key in the same shard. An event a projection cannot even
snapshot (it raises) has no key: it is the shard of its event id's (``owns_event``), so exactly
one shard records it in ``projection_failures``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SHARDS_MAX = 64  # shards of one projection, at most (a row of checkpoints each)
_SPEC = re.compile(r"^(\d{1,3})/(\d{1,3})$")


class ShardSpecError(ValueError):
    """A ``--shard`` value that is not ``I/N`` with 0 <= I < N <= SHARDS_MAX."""


@dataclass(frozen=True, slots=True)
class Shard:
    index: int  # 0 .. count - 1
    count: int  # N: the number of shards the live generation is split into

    def __post_init__(self) -> None:
        assert 1 <= self.count <= SHARDS_MAX, self.count
        assert 0 <= self.index < self.count, (self.index, self.count)

    def owns(self, key: Sequence[Any]) -> bool:
        return shard_of(key, self.count) == self.index

    def owns_event(self, event_id: str) -> bool:
        return shard_of((event_id,), self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(key: Sequence[Any], count: int) -> int:
    """The shard (0 .. count - 1) of a state-row key: the same in every process."""
    text = "\x1f".join(str(part) for part in key)
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % count


def parse(spec: str) -> Shard:
    """``"1/4"`` -> Shard(1, 4); a clear error for anything else."""
    found = _SPEC.match(spec.strip())
    if found is None:
        raise ShardSpecError(f"--shard must be I/N (e.g. 0/2), got {spec!r}")
    index, count = int(found.group(1)), int(found.group(2))
    if not 1 <= count <= SHARDS_MAX:
        raise ShardSpecError(f"--shard: N must be between 1 and {SHARDS_MAX}, got {count}")
    if not 0 <= index < count:
        raise ShardSpecError(f"--shard: I must be between 0 and {count - 1}, got {index}")
    return Shard(index, count)
