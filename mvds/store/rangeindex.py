"""A group's messages in (timestamp, id) order with range sums: what range-based
set reconciliation (:mod:`mvds.engine.reconcile`) asks the store.

Reconciliation needs, over the items of one group sorted by (timestamp, id):
the number of items below a bound (rank), the item at a rank, the ids in a
rank range, and the fingerprint of a rank range, which is built from the sum
of the ids (as 256-bit little-endian integers) and the count.  Scanning the
group for each would make a reconciliation round over a million messages
cost seconds; this index answers each in O(log n + B).

Structure: a sorted list of blocks (at most ``BLOCK`` keys each, split in two
when full), with per-block id sums and counts, and prefix sums over the
blocks recomputed lazily from the first block that changed.

* A key is 40 bytes: the timestamp biased by 2^63 as 8 bytes big-endian,
  then the 32-byte id, so that ``bytes`` comparison (memcmp, in C) is the
  (timestamp, id) order for signed timestamps, and a million keys take about
  75 MB rather than the ~150 MB of tuples.
* ``add`` (the append path) is a bisect plus ``list.insert`` into one block
  and one integer addition; an append at the end of the order (the common
  case: new messages carry the newest timestamps) leaves the block prefix
  sums valid.  An insert into an older block marks the prefix sums dirty
  from that block; the next query recomputes them (n / B additions, about
  4,000 at a million messages, well under a millisecond) and later queries
  are O(log n) again.
* ``prefix_sum(rank)`` is the block prefix plus a partial sum inside one
  block, taken from whichever end of the block is nearer (at most B / 2
  id conversions).

The index lives in memory and is built from the store when first needed
(docs/STORAGE.md gives the measured build time); it is not persisted.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import islice
from typing import Callable, Iterable, Iterator

from mvds.store.sketch import SHORT_KEY, Sketch

BLOCK = 256
"""Most keys per block.  Smaller blocks make partial sums cheaper and the
block prefix longer; 256 keeps both well under a millisecond at a million."""

_BIAS = 1 << 63
_MOD = 1 << 256

MIN_KEY = b""
"""Below every key (the lower end of the whole range)."""

MAX_KEY = b"\xff" * 41
"""Above every key (41 bytes: longer than any 40-byte key, all 0xff)."""


def make_key(timestamp: int, message_id: bytes) -> bytes:
    """The sort key of a message: biased big-endian timestamp, then the id."""
    return (timestamp + _BIAS).to_bytes(8, "big") + message_id


def key_timestamp(key: bytes) -> int:
    return int.from_bytes(key[:8], "big") - _BIAS


def key_id(key: bytes) -> bytes:
    return key[8:]


def id_value(key: bytes) -> int:
    """The id of a key as the integer the fingerprint sums (little-endian)."""
    return int.from_bytes(key[8:], "little")


class RangeIndex:
    """Sorted (timestamp, id) keys of one group with range counts and id sums."""

    __slots__ = (
        "_blocks", "_maxes", "_sums", "_prefix_count", "_prefix_sum", "_dirty", "_size",
        "_has_id", "_ids", "_sketch", "_pending", "_pending_low",
    )

    def __init__(
        self, keys: Iterable[bytes] = (), has_id: Callable[[bytes], bool] | None = None
    ) -> None:
        """``keys`` must be distinct.  ``has_id`` answers whether an id is
        held (the store's own lookup); without it the index keeps a set of
        its ids."""
        self._has_id = has_id
        self._sketch: Sketch | None = None
        self._pending: list[bytes] = []
        """Keys deferred by :meth:`defer`, added before the next query."""
        self._pending_low: bytes | None = None
        """The lowest of them: whether they all go at the end is asked in
        every idle moment, while a catch-up may have deferred 100,000."""
        self._load(sorted(keys))

    def _load(self, ordered: list[bytes]) -> None:
        """Blocks, sums and prefixes from distinct keys in order."""
        self._ids: set[bytes] | None = None if self._has_id else {k[8:] for k in ordered}
        half = BLOCK // 2
        self._blocks: list[list[bytes]] = [
            ordered[i : i + half] for i in range(0, len(ordered), half)
        ]
        self._maxes = [block[-1] for block in self._blocks]
        self._sums = [sum(map(id_value, block)) for block in self._blocks]
        self._prefix_count: list[int] = [0]
        self._prefix_sum: list[int] = [0]
        self._dirty = 0
        """Blocks from this index on have stale prefix entries."""
        self._size = len(ordered)

    def defer(self, key: bytes) -> None:
        """Add a key (not already present) before the next query, not now.

        The append path of a store calls this: a catch-up stores thousands
        of messages a second whose keys land all over the order (a second's
        messages arrive in delivery order, not id order), and nothing asks
        the index until the next reconciliation round.  Keys added one by
        one cost a bisect and a ``list.insert`` each; many pending keys are
        merged by one sort instead (:meth:`_settle`)."""
        self._pending.append(key)
        low = self._pending_low
        if low is None or key < low:
            self._pending_low = key

    def settle(self, appends_only: bool = False) -> bool:
        """Add the deferred keys now, so that the next query finds none;
        True if it did.  With ``appends_only`` (a shell calls it so when
        idle) only if they all sort after every key: new messages of this
        node, which go in at the end for a few operations each, not a
        catch-up's keys all over the order (each an insert into a block;
        they wait for the next query)."""
        if not self._pending:
            return False
        appended = self._all_appended()
        if appends_only and not appended:
            return False
        self._settle(appended)
        return True

    def _all_appended(self) -> bool:
        """Whether every deferred key sorts after every key in the blocks."""
        return not self._maxes or self._pending_low > self._maxes[-1]

    def _settle(self, appended: bool | None = None) -> None:
        """Add the deferred keys: at the end when they all sort after every
        key (``appended``, found out here when not given), else one by one
        when they are few, by rebuilding from one sorted list when they are
        more than an eighth of the index (a sort in C beats that many
        Python-level inserts)."""
        pending = self._pending
        if not pending:
            return
        if appended is None:
            appended = self._all_appended()
        self._pending = []
        self._pending_low = None
        if appended:
            self._append_sorted(sorted(set(pending)))
            return
        if len(pending) * 8 <= self._size:
            for key in pending:
                self.add(key)
            return
        ordered = list(self)
        added = set(pending).difference(ordered)
        ordered.extend(added)
        ordered.sort()
        self._load(ordered)
        if self._sketch is not None:
            for key in added:
                self._sketch.add(key[:SHORT_KEY])

    def _append_sorted(self, ordered: list[bytes]) -> None:
        """Add distinct keys that all sort after every key: top up the last
        block, then new blocks of half the size (as a build makes them)."""
        blocks, maxes, sums = self._blocks, self._maxes, self._sums
        start = 0
        if blocks and len(blocks[-1]) < BLOCK:
            head = ordered[: BLOCK - len(blocks[-1])]
            blocks[-1].extend(head)
            maxes[-1] = head[-1]
            sums[-1] += sum(map(id_value, head))
            start = len(head)
            self._dirty = min(self._dirty, len(blocks) - 1)
        else:
            self._dirty = min(self._dirty, len(blocks))
        half = BLOCK // 2
        for i in range(start, len(ordered), half):
            block = ordered[i : i + half]
            blocks.append(block)
            maxes.append(block[-1])
            sums.append(sum(map(id_value, block)))
        self._size += len(ordered)
        if self._ids is not None:
            self._ids.update(key[8:] for key in ordered)
        if self._sketch is not None:
            for key in ordered:
                self._sketch.add(key[:SHORT_KEY])

    def sketch(self) -> Sketch:
        """The group's set-difference summary (:mod:`mvds.store.sketch`),
        built on first use (a hash per item: about 2 s at a million) and kept up
        to date on every add after that."""
        self._settle()
        if self._sketch is None:
            self._sketch = Sketch(key[:SHORT_KEY] for key in self)
        return self._sketch

    def __len__(self) -> int:
        self._settle()
        return self._size

    def __contains__(self, key: bytes) -> bool:
        self._settle()
        b = bisect_left(self._maxes, key)
        if b == len(self._maxes):
            return False
        block = self._blocks[b]
        i = bisect_left(block, key)
        return i < len(block) and block[i] == key

    def has_id(self, message_id: bytes) -> bool:
        """Whether a key with this id is in the index."""
        if self._has_id is not None:
            return self._has_id(message_id)
        return message_id in self._ids  # type: ignore[operator]

    def add(self, key: bytes) -> bool:
        """Insert a key; False if it was already present."""
        self._settle()
        maxes = self._maxes
        blocks = self._blocks
        b = bisect_left(maxes, key)
        if b == len(maxes):
            # Beyond every key: append to the last block (the usual case).
            if not blocks or len(blocks[-1]) >= BLOCK:
                blocks.append([key])
                maxes.append(key)
                self._sums.append(id_value(key))
            else:
                blocks[-1].append(key)
                maxes[-1] = key
                self._sums[-1] += id_value(key)
            b = len(blocks) - 1
        else:
            block = blocks[b]
            i = bisect_left(block, key)
            if i < len(block) and block[i] == key:
                return False
            block.insert(i, key)
            self._sums[b] += id_value(key)
            if len(block) > BLOCK:
                half = len(block) // 2
                right = block[half:]
                del block[half:]
                blocks.insert(b + 1, right)
                maxes[b] = block[-1]
                maxes.insert(b + 1, right[-1])
                right_sum = sum(map(id_value, right))
                self._sums[b] -= right_sum
                self._sums.insert(b + 1, right_sum)
        self._size += 1
        if self._sketch is not None:
            self._sketch.add(key[:SHORT_KEY])
        if self._ids is not None:
            self._ids.add(key[8:])
        if b < self._dirty:
            self._dirty = b
        return True

    def _prefixes(self) -> tuple[list[int], list[int]]:
        """Counts and id sums of all blocks before each block (recomputed from
        the first changed block)."""
        start = self._dirty
        blocks = self._blocks
        if start < len(blocks):
            counts = self._prefix_count
            sums = self._prefix_sum
            del counts[start + 1 :]
            del sums[start + 1 :]
            c, s = counts[start], sums[start]
            block_sums = self._sums
            for b in range(start, len(blocks)):
                c += len(blocks[b])
                s += block_sums[b]
                counts.append(c)
                sums.append(s)
            self._dirty = len(blocks)
        return self._prefix_count, self._prefix_sum

    def _locate(self, rank: int) -> tuple[int, int]:
        """(block, offset) of the key at ``rank`` (``rank`` may equal size)."""
        counts, _ = self._prefixes()
        b = bisect_right(counts, rank) - 1
        if b >= len(self._blocks):
            return len(self._blocks), 0
        return b, rank - counts[b]

    def rank(self, key: bytes) -> int:
        """Number of keys below ``key``."""
        self._settle()
        counts, _ = self._prefixes()
        b = bisect_left(self._maxes, key)
        if b == len(self._maxes):
            return self._size
        return counts[b] + bisect_left(self._blocks[b], key)

    def key_at(self, rank: int) -> bytes:
        """The key at ``rank`` (0-based)."""
        self._settle()
        if not 0 <= rank < self._size:
            raise IndexError(rank)
        b, i = self._locate(rank)
        return self._blocks[b][i]

    def prefix_sum(self, rank: int) -> int:
        """Sum of the ids of the ``rank`` lowest keys (not reduced)."""
        self._settle()
        _, sums = self._prefixes()
        if rank >= self._size:
            return sums[len(self._blocks)]
        b, i = self._locate(rank)
        block = self._blocks[b]
        if i <= len(block) // 2:
            return sums[b] + sum(map(id_value, block[:i]))
        return sums[b] + self._sums[b] - sum(map(id_value, block[i:]))

    def range_sum(self, lo: int, hi: int) -> int:
        """Sum of the ids at ranks ``[lo, hi)``, mod 2^256."""
        if hi <= lo:
            return 0
        if hi - lo <= 16:
            return sum(map(id_value, self.keys(lo, hi))) % _MOD
        return (self.prefix_sum(hi) - self.prefix_sum(lo)) % _MOD

    def keys(self, lo: int, hi: int) -> list[bytes]:
        """The keys at ranks ``[lo, hi)``, in order."""
        self._settle()
        hi = min(hi, self._size)
        if hi <= lo:
            return []
        out: list[bytes] = []
        b, i = self._locate(lo)
        need = hi - lo
        blocks = self._blocks
        while need > 0:
            chunk = blocks[b][i : i + need]
            out.extend(chunk)
            need -= len(chunk)
            b += 1
            i = 0
        return out

    def __iter__(self) -> Iterator[bytes]:
        self._settle()
        for block in self._blocks:
            yield from block



def encoded_timestamp(encoded: bytes, offset: int = 34) -> int:
    """The timestamp of a stored message from its wire encoding (group id
    field first, 34 bytes, then field 2 unless the timestamp is 0), without
    a protobuf parse: building an index reads a whole group's rows.  With
    ``offset=0`` ``encoded`` is the encoding from byte 34 on (what the SQLite
    store reads: ``substr(encoded, 35, 11)``)."""
    if len(encoded) <= offset or encoded[offset] != 0x10:
        return 0
    value = 0
    shift = 0
    i = offset + 1
    while True:
        byte = encoded[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            break
        shift += 7
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


class GroupRanges:
    """A :class:`RangeIndex` per group, built on first use and then kept up
    to date on every append (the stores hold one of these)."""

    def __init__(
        self,
        load: Callable[[bytes], Iterable[tuple[int, bytes]]],
        has_id: Callable[[bytes], bool],
    ) -> None:
        """``load(group_id)`` yields (timestamp, id) of every stored message
        of the group; ``has_id`` is the store's own id lookup."""
        self._load = load
        self._has_id = has_id
        self._indexes: dict[bytes, RangeIndex] = {}
        self._building: dict[bytes, tuple[list[bytes], Iterator[tuple[int, bytes]]]] = {}
        """Builds under way (:meth:`warm`): keys read so far, the rest."""

    def get(self, group_id: bytes) -> RangeIndex:
        index = self._indexes.get(group_id)
        if index is None:
            self.warm(group_id, None)
            index = self._indexes[group_id]
        return index

    def warm(self, group_id: bytes, rows: int | None) -> bool:
        """Read up to ``rows`` more of the group's messages (all if None)
        into its index under construction; True once the index is built.

        A shell calls this between steps so that the build (seconds at a
        million messages) does not stall the step of the first reconciliation.
        ``load`` must be resumable: it reads in row order, sees rows added
        after it started and ends only when a read finds nothing more (the
        SQLite store pages by row number until a page comes back empty, the
        memory store walks a growing list), so messages stored while the
        build is under way are read by it, and those stored after it (the
        index is in place in the call that found the end) are added on
        append like any other."""
        if group_id in self._indexes:
            return True
        build = self._building.get(group_id)
        if build is None:
            build = self._building[group_id] = ([], iter(self._load(group_id)))
        keys, source = build
        taken = 0
        for ts, mid in source if rows is None else islice(source, rows):
            keys.append(make_key(ts, mid))
            taken += 1
        if taken == rows:
            return False  # maybe more: the next call reads on
        del self._building[group_id]
        self._indexes[group_id] = RangeIndex(keys, self._has_id)
        return True

    def added(self, group_id: bytes, timestamp: int, message_id: bytes) -> None:
        """A message was stored: add it to its group's index if one is built."""
        index = self._indexes.get(group_id)
        if index is not None:
            index.defer(make_key(timestamp, message_id))

    def settle(self) -> bool:
        """Add every index's deferred appends (:meth:`RangeIndex.settle`
        with ``appends_only``); True if any did."""
        settled = False
        for index in self._indexes.values():
            settled = index.settle(appends_only=True) or settled
        return settled

    def clear(self) -> None:
        """Forget every index (after a rollback: they may hold rolled-back
        messages); the next use rebuilds from the store."""
        self._indexes.clear()
        self._building.clear()
