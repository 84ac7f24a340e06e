"""A Bloom filter over stored message ids: "certainly not stored" without SQL.

Every append and every received message first asks whether its id is stored
already, and the answer is almost always no.  An index lookup costs a few
microseconds each time; this filter answers "no" from memory for all but a
small fraction of ids (0.2% at 16 bits and 4 probes per id), and a "maybe"
goes to SQL as before, so the filter can only make a lookup cheaper, never
wrong.  That also makes it safe after a rollback (ids of rolled-back
messages stay in it and merely cost a lookup) and against hostile peers (an
id crafted to hit set bits costs them a SHA-256 preimage search and us one
lookup).

Message ids are SHA-256 outputs, so their bytes are already uniform: the
probe positions are slices of the id itself, no further hashing.
"""

from __future__ import annotations

from typing import Iterable

BITS_PER_ID = 16
PROBES = 4
MIN_CAPACITY = 1 << 16


class IdFilter:
    """Bloom filter sized for ``capacity`` ids; :meth:`needs_rebuild` says when
    it has filled up (the caller rebuilds it from the table, twice as big)."""

    def __init__(self, capacity: int = MIN_CAPACITY) -> None:
        capacity = max(MIN_CAPACITY, capacity)
        bits = 1 << (capacity * BITS_PER_ID - 1).bit_length()  # a power of two
        self.capacity = capacity
        self.count = 0
        self._mask = bits - 1
        self._bits = bytearray(bits // 8)

    @classmethod
    def of(cls, ids: Iterable[bytes], count: int) -> "IdFilter":
        """A filter holding ``ids`` (``count`` of them), with room to grow."""
        filt = cls(2 * count)
        for mid in ids:
            filt.add(mid)
        return filt

    def add(self, mid: bytes) -> None:
        h = int.from_bytes(mid[:16], "little")
        bits, mask = self._bits, self._mask
        for _ in range(PROBES):
            p = h & mask
            bits[p >> 3] |= 1 << (p & 7)
            h >>= 32
        self.count += 1

    def may_contain(self, mid: bytes) -> bool:
        """False: certainly never added.  True: perhaps (ask the table)."""
        h = int.from_bytes(mid[:16], "little")
        bits, mask = self._bits, self._mask
        for _ in range(PROBES):
            p = h & mask
            if not bits[p >> 3] & (1 << (p & 7)):
                return False
            h >>= 32
        return True

    def needs_rebuild(self) -> bool:
        return self.count > self.capacity
