"""Set-difference summaries of a whole group: a strata estimator (how many
items differ?) and an invertible Bloom lookup table (which ones?).

Range-based reconciliation (:mod:`mvds.engine.reconcile`) finds a difference
by narrowing fingerprinted ranges down, which costs about a range split per
differing item when the differences are *scattered* over the history (two
nodes that each received a thousand old messages from different peers): 23
to 37 times the ids of the difference.  An invertible Bloom lookup table
(Goodrich and Mitzenmacher; used for set difference by Eppstein, Goodrich,
Uyeda and Varghese, "What's the Difference?", SIGCOMM 2011) of a size
proportional to the difference decodes to the whole symmetric difference in
one answer; a strata estimator (same paper) sizes it.  docs/PROTOCOL.md
section 16.9 specifies both; this module is the reference computation.

**Items** are named by their 16-byte *short key*: the first 16 bytes of the
40-byte sort key (:func:`mvds.store.rangeindex.make_key`): the biased
big-endian timestamp and the first 8 bytes of the id.  A decoded short key is
a bound that locates its item in a range index in O(log n).

**Per-item hash**: ``h = BLAKE2b(short key, digest_size=24, person=
b"mvds-rbsr-sketch")`` (``hashlib``); little-endian 32-bit words
``w0..w4`` of ``h[0:20]``, then ``h[20]`` and ``h[21]``:

* cell check: ``w0``; cell of sub-table ``t`` (0, 1, 2): ``w(t+1) mod s``;
* stratum: the number of trailing zero bits of ``w4`` (at most ``STRATA-1``);
  estimator bucket: ``h[20] mod BUCKETS``; estimator fingerprint: ``h[21]``.

**Table** of ``3 s`` cells (``s`` a divisor of ``FULL_SUBTABLE``, from
``MIN_SUBTABLE`` to ``MAX_SUBTABLE``):
sub-table ``t`` holds cells ``t s .. t s + s - 1``; an item is added to one
cell per sub-table (so always to three distinct cells).  A cell is (count
mod 256, XOR of the short keys, XOR of the checks), 21 bytes on the wire:
``u8 count || 16-byte key || u32le check``.  Everything is a sum (XOR, or
addition mod 256), so the table of a set is kept up to date on append with
three cell updates, and the table of size ``s`` is the *fold* of a larger
one: cell ``c`` of a sub-table of size ``s`` sums cells ``c + j s`` of the
larger sub-table (``w mod s == (w mod S) mod s`` when ``s`` divides ``S``).
One table of ``FULL_SUBTABLE`` per group serves every size.

**Estimator**: ``STRATA`` x ``BUCKETS`` one-byte XORs of the items'
estimator fingerprints, row by stratum (768 bytes).  Item ``x`` lands in
stratum ``i`` with probability ``2^-(i+1)``, so some stratum holds a few
differing items per bucket whatever the size of the difference; the count of
differing buckets per stratum gives a maximum-likelihood estimate.
"""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Iterable

STRATA = 12
"""Strata of the estimator: it tells differences up to ~BUCKETS * 2^STRATA
(a quarter of a million) apart; larger ones are all "large"."""

BUCKETS = 64
"""Buckets per stratum."""

ESTIMATOR_SIZE = STRATA * BUCKETS

FULL_SUBTABLE = 5040
"""Sub-table size of the table kept per group (3 x 5,040 cells): 5,040 has
many divisors, so the table can be folded to sizes at most ~1.33 times
apart (..., 720, 840, 1008, 1260, 1680, 2520) instead of powers of two."""

MAX_SUBTABLE = 2520
"""Largest sub-table sent: 7,560 cells, 158,760 bytes, decodes differences
of ~5,000 items.  It bounds the answer one query can ask for."""

MIN_SUBTABLE = 16

SIZES = tuple(s for s in range(MIN_SUBTABLE, MAX_SUBTABLE + 1) if FULL_SUBTABLE % s == 0)
"""The sub-table sizes a table can have (divisors of ``FULL_SUBTABLE``)."""

CELL_SIZE = 21
K = 3
SHORT_KEY = 16
_PERSON = b"mvds-rbsr-sketch"


def item_hash(short_key: bytes) -> bytes:
    """The 24-byte per-item hash (module docstring)."""
    return hashlib.blake2b(short_key, digest_size=24, person=_PERSON).digest()


_UNPACK = struct.Struct("<5I4x").unpack


def _words(h: bytes) -> tuple[int, int, int, int, int]:
    return _UNPACK(h)


def _stratum(word: int) -> int:
    if word == 0:
        return STRATA - 1
    return min((word & -word).bit_length() - 1, STRATA - 1)


class Sketch:
    """The estimator and the full-size table of one set, kept up to date."""

    __slots__ = ("counts", "keys", "checks", "estimator")

    def __init__(self, short_keys: Iterable[bytes] = ()) -> None:
        n = K * FULL_SUBTABLE
        self.counts = [0] * n
        self.keys = [0] * n
        self.checks = [0] * n
        self.estimator = bytearray(ESTIMATOR_SIZE)
        self.update(short_keys)

    def add(self, short_key: bytes) -> None:
        """Add one item (its short key)."""
        self.update((short_key,))

    def update(self, short_keys: Iterable[bytes]) -> None:
        """Add items (the loop of :meth:`add`, inlined: building the table
        of a large group is a hash and seven updates per item)."""
        counts, keys, checks = self.counts, self.keys, self.checks
        estimator = self.estimator
        full = FULL_SUBTABLE
        second, third = full, 2 * full
        unpack = _UNPACK
        blake2b = hashlib.blake2b
        from_bytes = int.from_bytes
        last = STRATA - 1
        for short_key in short_keys:
            h = blake2b(short_key, digest_size=24, person=_PERSON).digest()
            check, w1, w2, w3, w4 = unpack(h)
            value = from_bytes(short_key, "big")
            c = w1 % full
            counts[c] += 1
            keys[c] ^= value
            checks[c] ^= check
            c = second + w2 % full
            counts[c] += 1
            keys[c] ^= value
            checks[c] ^= check
            c = third + w3 % full
            counts[c] += 1
            keys[c] ^= value
            checks[c] ^= check
            stratum = (w4 & -w4).bit_length() - 1 if w4 else last
            if stratum > last:
                stratum = last
            estimator[stratum * BUCKETS + h[20] % BUCKETS] ^= h[21]

    def table(self, subtable: int) -> bytes:
        """The encoded table of ``3 * subtable`` cells (a fold of ours)."""
        if subtable not in SIZES:
            raise ValueError(f"sub-table size {subtable}")
        out = bytearray()
        for t in range(K):
            base = t * FULL_SUBTABLE
            for c in range(subtable):
                count = key = check = 0
                for j in range(base + c, base + FULL_SUBTABLE, subtable):
                    count += self.counts[j]
                    key ^= self.keys[j]
                    check ^= self.checks[j]
                out.append(count & 0xFF)
                out += key.to_bytes(SHORT_KEY, "big")
                out += check.to_bytes(4, "little")
        return bytes(out)


def table_of(short_keys: Iterable[bytes], subtable: int) -> bytes:
    """The encoded table of a set (reference computation, no folding)."""
    n = K * subtable
    counts, keys, checks = [0] * n, [0] * n, [0] * n
    for short_key in short_keys:
        check, w1, w2, w3, _ = _words(item_hash(short_key))
        value = int.from_bytes(short_key, "big")
        for t, w in enumerate((w1, w2, w3)):
            c = t * subtable + w % subtable
            counts[c] += 1
            keys[c] ^= value
            checks[c] ^= check
    out = bytearray()
    for c in range(n):
        out.append(counts[c] & 0xFF)
        out += keys[c].to_bytes(SHORT_KEY, "big") + checks[c].to_bytes(4, "little")
    return bytes(out)


def decode(ours: bytes, theirs: bytes) -> tuple[list[bytes], list[bytes]] | None:
    """Peel ``ours - theirs`` (two tables of the same size): (short keys
    only we hold, short keys only they hold), or None if it does not decode
    (the difference is too large for the table)."""
    if len(ours) != len(theirs) or len(ours) % (K * CELL_SIZE):
        return None
    n = len(ours) // CELL_SIZE
    subtable = n // K
    counts = [0] * n
    keys = [0] * n
    checks = [0] * n
    for c in range(n):
        o = c * CELL_SIZE
        counts[c] = (ours[o] - theirs[o]) & 0xFF
        keys[c] = int.from_bytes(ours[o + 1 : o + 17], "big") ^ int.from_bytes(
            theirs[o + 1 : o + 17], "big"
        )
        checks[c] = int.from_bytes(ours[o + 17 : o + 21], "little") ^ int.from_bytes(
            theirs[o + 17 : o + 21], "little"
        )
    mine: list[bytes] = []
    other: list[bytes] = []
    stack = [c for c in range(n) if counts[c] in (1, 255)]
    while stack:
        c = stack.pop()
        count = counts[c]
        if count not in (1, 255):
            continue
        key = keys[c].to_bytes(SHORT_KEY, "big")
        check, w1, w2, w3, _ = _words(item_hash(key))
        if check != checks[c]:
            continue  # two or more items: not pure
        cells = [t * subtable + w % subtable for t, w in enumerate((w1, w2, w3))]
        if c not in cells:
            continue  # a check collision, not an item of this cell
        (mine if count == 1 else other).append(key)
        value = keys[c]
        for d in cells:
            counts[d] = (counts[d] - count) & 0xFF
            keys[d] ^= value
            checks[d] ^= check
            if counts[d] in (1, 255):
                stack.append(d)
    if any(counts) or any(keys) or any(checks):
        return None
    return mine, other


def estimate(ours: bytes, theirs: bytes) -> float:
    """Maximum-likelihood estimate of the size of the symmetric difference
    of two sets from their estimators (``inf`` past the estimator's reach)."""
    differing = []
    for i in range(STRATA):
        row = slice(i * BUCKETS, (i + 1) * BUCKETS)
        differing.append(sum(a != b for a, b in zip(ours[row], theirs[row])))
    if not any(differing):
        return 0.0
    if differing[STRATA - 1] >= BUCKETS - 1 or all(b == BUCKETS for b in differing):
        return math.inf

    def loglik(d: float) -> float:
        total = 0.0
        for i, b in enumerate(differing):
            share = 2.0 ** -(i + 1) if i < STRATA - 1 else 2.0 ** -(STRATA - 1)
            lam = d * share / BUCKETS
            q = -math.expm1(-lam) * 255 / 256
            q = min(max(q, 1e-12), 1 - 1e-12)
            total += b * math.log(q) + (BUCKETS - b) * math.log1p(-q)
        return total

    best, best_d = -math.inf, 1.0
    d = 1.0
    while d < BUCKETS * 2.0**STRATA * 4:
        value = loglik(d)
        if value > best:
            best, best_d = value, d
        d *= 1.02
    return best_d
