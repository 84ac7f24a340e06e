"""Range-based set reconciliation (RBSR), sans-IO: which messages of a group
does a peer lack, and which does it hold that we lack?

MVDS alone answers that per message (one OFFER or MESSAGE record per message
per peer); this module answers it for a whole group in a logarithmic number
of round trips, with traffic close to the size of the difference.  It follows
the idea of Meyer's range-based set reconciliation as negentropy implements
it, with its own (simpler) wire format, specified in docs/PROTOCOL.md
section 16.

**Items** are a group's stored messages, ordered by (timestamp, id); they
are named by sort keys (:func:`mvds.store.rangeindex.make_key`).  A
**bound** is a point in that order: a timestamp and an id *prefix* (missing
bytes count as zero), or infinity.  A **range** ``[lower, upper)`` is every
item ``lower <= item < upper``.

**Fingerprint** of a range (16 bytes)::

    fingerprint = SHA-256(u256le(sum of ids mod 2^256) || u64le(count))[:16]

where each 32-byte id is read as a little-endian 256-bit integer.  This is
negentropy's construction (with a fixed-width count).  Why: the sum is
*incremental* (a range's sum is a difference of two prefix sums, so the
store answers it in O(log n) from :class:`~mvds.store.rangeindex.RangeIndex`
and appends cost one addition), and order-independent, so both peers get the
same value from sets built in any order.  Hashing the sum with the count
makes an accidental match (two different sets, same fingerprint) a 2^-128
event for honest peers.  It is not a cryptographic multiset hash: a peer
that chooses message contents could, with a generalized-birthday search,
craft a set of ids whose sum equals another set's.  That peer can only make
a range look in sync when it is not -- a delay for messages in that range
until the contents change, never a wrong message (ids are recomputed from
contents; records are MVDS's), and only between the peers in question.

**Splitting.** A range whose fingerprints differ is split into ``BUCKETS``
(16) sub-ranges holding (nearly) equal numbers of the splitter's items; a
range holding at most ``IDLIST_THRESHOLD`` (16) of the splitter's items is
sent as the list of its ids instead of being split.

**Roles.** The *initiator* (:class:`Session`) keeps a little state: the ranges
it asked about and what it learned.  The *responder* (:func:`respond`) keeps
none: it answers each message from its store alone, so a lost or duplicated
datagram costs nothing beyond a retry.  Only the initiator learns the
difference, in both directions:

* ``give``: what we hold and the peer lacks (as id lists, and as ranges
  "everything of ours in [lo, hi) except these ids", so a new peer joining
  a group of a million messages costs the initiator no per-message state
  until the sender feeds them to the in-flight window);
* ``need``: ids the peer holds and we lack.

Message exchange (each message covers ``[lower, upper of its last range)``,
its ranges contiguous; a reply covers exactly what its query covered, split
at query-range boundaries when it is too large for one datagram):

=============  =================================  ===============================
range mode     responder answers                   initiator, on a reply range
=============  =================================  ===============================
SKIP           SKIP                                nothing left to do
FINGERPRINT    equal: SKIP; else split             equal: done; else split (query)
IDLIST         IDLIST_REPLY (ids the initiator     difference computed locally:
               lacks; bitmap of listed ids it      done
               lacks), or split if it holds more
               than ``IDLIST_THRESHOLD``
IDLIST_REPLY   (not sent by initiators) SKIP       need/give from it: done
ESTIMATE       SKETCH (a table sized from the     decode: need/give, done; else
               estimate), or split if too large   once larger, then split
=============  =================================  ===============================

**Sketches** (section 16.9, :mod:`mvds.store.sketch`): when the answer to
the opening query shows a difference spread over many buckets of a large
group, the initiator (if the peer announced ``FEATURE_SKETCH``) sends its
strata estimator instead of splitting, and decodes the invertible Bloom
lookup table the responder answers to the exact difference: two round
trips and about 1.1-1.4 times the ids of the difference, where splitting
costs a descent per differing item.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Protocol, Sequence

from mvds.store import sketch as sk
from mvds.store.rangeindex import MAX_KEY, key_id, make_key
from mvds.wire import Mode, Range, ReconcileMessage

FINGERPRINT_SIZE = 16
BUCKETS = 16
"""Sub-ranges a mismatched range is split into (negentropy uses 16 too):
fewer buckets mean more round trips, more buckets more fingerprints sent for
ranges that turn out equal."""

IDLIST_THRESHOLD = 16
"""A range with at most this many of the sender's items goes as an id list
(16 ids of 34 bytes fit a datagram with room to spare)."""

MESSAGE_BUDGET = 1000
"""Most (estimated, from above) bytes of ranges in one reconcile message: with
the group id and lower bound (about 50 bytes) and the envelope (57) it stays
within the 1,200-byte datagram."""

SKETCH_SPREAD = 4
"""An opening answer with at least this many differing buckets (of
``BUCKETS``) shows a scattered difference: the initiator asks for a sketch
(section 16.9) instead of splitting further, if the peer answers them."""

SKETCH_MIN_ITEMS = 4096
"""Groups smaller than this are always split (a sketch saves little there)."""

SKETCH_CELLS_PER_ITEM = 1.6
"""Cells a responder sizes a table with per estimated differing item: an
invertible Bloom lookup table with three cells per item decodes with high
probability from about 1.3 cells per item; the rest covers the estimator's
error (a standard deviation of 5-10 %)."""

SKETCH_CELLS_PER_MESSAGE = 44
"""Cells of a table per reply message (44 x 21 bytes stays within
``MESSAGE_BUDGET``)."""

INT64_MIN = -(1 << 63)
MIN_BOUND = make_key(INT64_MIN, b"")
"""The lowest bound: timestamp -2^63, empty id prefix (below every item)."""

INFINITY = MAX_KEY
"""The bound above every item (``infinite`` on the wire)."""

_MOD = 1 << 256


class ItemSource(Protocol):
    """What reconciliation reads: a group's items, sorted, with id sums
    (implemented by :class:`mvds.store.rangeindex.RangeIndex`)."""

    def __len__(self) -> int: ...

    def rank(self, key: bytes) -> int: ...

    def key_at(self, rank: int) -> bytes: ...

    def range_sum(self, lo: int, hi: int) -> int: ...

    def keys(self, lo: int, hi: int) -> list[bytes]: ...

    def has_id(self, message_id: bytes) -> bool:
        """Whether the item with this id is held (any position)."""
        ...

    def sketch(self) -> sk.Sketch:
        """The whole set's estimator and table (:mod:`mvds.store.sketch`)."""
        ...


# --- fingerprints and bounds ---------------------------------------------


def fingerprint(id_sum: int, count: int) -> bytes:
    """The 16-byte fingerprint of a range from its id sum and count."""
    data = (id_sum % _MOD).to_bytes(32, "little") + count.to_bytes(8, "little")
    return hashlib.sha256(data).digest()[:FINGERPRINT_SIZE]


def fingerprint_of_ids(ids: Sequence[bytes]) -> bytes:
    """Fingerprint of a set of ids given as a list (reference computation)."""
    return fingerprint(sum(int.from_bytes(i, "little") for i in ids), len(ids))


def _source_fingerprint(source: ItemSource, lo: int, hi: int) -> bytes:
    return fingerprint(source.range_sum(lo, hi), hi - lo)


def bound_between(below: bytes, above: bytes) -> bytes:
    """The shortest bound ``b`` with ``below < b <= above`` (item keys).

    Same timestamp: the id prefix one byte longer than the common prefix;
    different timestamps: the timestamp of ``above`` with no id at all.
    """
    if below[:8] != above[:8]:
        return above[:8]
    a, b = below[8:], above[8:]
    k = 0
    while k < len(a) and a[k] == b[k]:
        k += 1
    return above[: 8 + k + 1]


def canonical_bound(key: bytes) -> bytes:
    """Strip trailing zero bytes of a bound's id prefix (same bound)."""
    if key == INFINITY:
        return key
    head, prefix = key[:8], key[8:]
    return head + prefix.rstrip(b"\x00")


# --- splitting -------------------------------------------------------------


def split(source: ItemSource, lower: bytes, upper: bytes) -> list[Range]:
    """Our view of ``[lower, upper)`` for a peer whose fingerprint differed:
    one id list if it is small, else ``BUCKETS`` sub-ranges of nearly equal
    item counts, each a fingerprint (or an id list when small).  The last
    sub-range ends at ``upper`` exactly."""
    lo = source.rank(lower)
    hi = source.rank(upper) if upper != INFINITY else len(source)
    count = hi - lo
    if count <= IDLIST_THRESHOLD:
        return [Range(upper, Mode.IDLIST, ids=[key_id(k) for k in source.keys(lo, hi)])]
    buckets: list[tuple[bytes, int, int]] = []
    start = lo
    for b in range(1, BUCKETS + 1):
        end = lo + (count * b) // BUCKETS
        if b == BUCKETS:
            bound = upper
        else:
            bound = bound_between(source.key_at(end - 1), source.key_at(end))
        buckets.append((bound, start, end))
        start = end
    out = [
        Range(bound, Mode.FINGERPRINT, _source_fingerprint(source, start, end))
        for bound, start, end in buckets
    ]
    # Small buckets go as id lists instead while the whole answer stays
    # within MESSAGE_BUDGET: one query's answer is never cut across messages.
    room = MESSAGE_BUDGET - sum(map(range_size, out))
    for i, (bound, start, end) in enumerate(buckets):
        n = end - start
        extra = n * 34 - FINGERPRINT_SIZE
        if n <= IDLIST_THRESHOLD and extra <= room:
            room -= extra
            out[i] = Range(bound, Mode.IDLIST, ids=[key_id(k) for k in source.keys(start, end)])
    return out


def range_size(r: Range) -> int:
    """An upper estimate of a range's encoded size (for packing messages)."""
    return (
        20 + len(r.upper) + len(r.fingerprint) + 34 * len(r.ids) + len(r.missing)
        + len(r.sketch)
    )


def _pack(
    group_id: bytes, lower: bytes, parts: list[tuple[bytes, list[Range]]], reply: bool = False
) -> list[ReconcileMessage]:
    """Messages from consecutive ``(upper, ranges)`` groups covering
    ``[lower, ...)``, cut only between groups and when over the budget;
    consecutive SKIPs merge."""
    out: list[ReconcileMessage] = []
    current: list[Range] = []
    size = 0
    start = lower
    for upper, ranges in parts:
        part_size = sum(map(range_size, ranges))
        if current and size + part_size > MESSAGE_BUDGET:
            out.append(ReconcileMessage(group_id, start, current, reply))
            start = current[-1].upper
            current, size = [], 0
        for r in ranges:
            if r.mode is Mode.SKIP and current and current[-1].mode is Mode.SKIP:
                current[-1].upper = r.upper
            else:
                current.append(r)
        size += part_size
    if current:
        out.append(ReconcileMessage(group_id, start, current, reply))
    return out


# --- responder -----------------------------------------------------------


def respond(source: ItemSource, message: ReconcileMessage) -> list[ReconcileMessage]:
    """The responder's answer to one reconcile message (no state kept).

    The answer covers exactly the span of the message; it is cut into
    several messages only between the answers to two query ranges.
    """
    if (
        not message.reply
        and len(message.ranges) == 1
        and message.ranges[0].mode is Mode.ESTIMATE
    ):
        answer = _answer_estimate(source, message)
        if answer is not None:
            return answer
    parts: list[tuple[bytes, list[Range]]] = []
    lower = message.lower
    for r in message.ranges:
        parts.append((r.upper, _answer(source, lower, r)))
        lower = r.upper
    return _pack(message.group_id, message.lower, parts, reply=True)


def sketch_size(estimate: float, at_least: int = 0) -> int | None:
    """The sub-table size a responder answers an estimated difference with
    (None: too large for a sketch; the range is split instead)."""
    d = max(estimate, 1.0)
    # Enough cells per item; and enough per sub-table that two items rarely
    # share all three cells (about d^2 / 2s^3: under 0.3 %), which is what
    # fails small tables.
    need = max(d * SKETCH_CELLS_PER_ITEM / sk.K, 5.5 * d ** (2 / 3))
    for size in sk.SIZES:
        if size >= need and size >= at_least:
            return size
    return None


def _answer_estimate(source: ItemSource, message: ReconcileMessage) -> list[ReconcileMessage] | None:
    """A SKETCH answer to an ESTIMATE of the whole group, cut into messages
    of ``SKETCH_CELLS_PER_MESSAGE`` cells; None if the difference is too
    large for one (or the range is not the whole group): split instead."""
    r = message.ranges[0]
    if canonical_bound(message.lower) != MIN_BOUND or r.upper != INFINITY:
        return None
    summary = source.sketch()
    size = sketch_size(sk.estimate(bytes(summary.estimator), r.sketch), r.cells)
    if size is None:
        return None
    table = summary.table(size)
    step = SKETCH_CELLS_PER_MESSAGE * sk.CELL_SIZE
    return [
        ReconcileMessage(
            message.group_id,
            message.lower,
            [Range(INFINITY, Mode.SKETCH, sketch=table[o : o + step], cells=size,
                   offset=o // sk.CELL_SIZE)],
            True,
        )
        for o in range(0, len(table), step)
    ]


def _answer(source: ItemSource, lower: bytes, r: Range) -> list[Range]:
    if r.mode is Mode.ESTIMATE:
        return split(source, lower, r.upper)  # not the whole group, or too large
    if r.mode is Mode.FINGERPRINT:
        lo = source.rank(lower)
        hi = source.rank(r.upper) if r.upper != INFINITY else len(source)
        if _source_fingerprint(source, lo, hi) == r.fingerprint:
            return [Range(r.upper, Mode.SKIP)]
        return split(source, lower, r.upper)
    if r.mode is Mode.IDLIST:
        lo = source.rank(lower)
        hi = source.rank(r.upper) if r.upper != INFINITY else len(source)
        if hi - lo > IDLIST_THRESHOLD:
            # We hold many more than the list: narrow the range down first.
            return split(source, lower, r.upper)
        ours = [key_id(k) for k in source.keys(lo, hi)]
        ours_set = set(ours)
        theirs = set(r.ids)
        bits = bytearray((len(r.ids) + 7) // 8)
        for i, mid in enumerate(r.ids):
            if mid not in ours_set:
                bits[i // 8] |= 1 << (i % 8)
        extra = [mid for mid in ours if mid not in theirs]
        if not extra and not any(bits):
            return [Range(r.upper, Mode.SKIP)]
        return [Range(r.upper, Mode.IDLIST_REPLY, ids=extra, missing=bytes(bits))]
    return [Range(r.upper, Mode.SKIP)]


# --- initiator -------------------------------------------------------------


@dataclass(slots=True)
class GiveRange:
    """Everything we hold in ``[lower, upper)`` except ``exclude`` (ids the
    peer listed): the peer lacks it."""

    lower: bytes
    upper: bytes
    exclude: frozenset[bytes]


class Session:
    """One reconciliation of a group with a peer, on the initiating side.

    ``start()`` gives the first message (one fingerprint over everything:
    when in sync, that and its one-range SKIP answer are the whole
    exchange); ``receive()`` takes a reply and returns the next queries.
    ``done`` once nothing is outstanding.  The results accumulate in
    ``give_ids``, ``give_ranges`` and ``need``.  A reply that answers
    nothing outstanding (duplicate, stale) is ignored; if replies are lost
    the caller starts a new session (ranges already in sync cost one
    fingerprint each).
    """

    def __init__(self, group_id: bytes, source: ItemSource, sketch: bool = False) -> None:
        """``sketch``: the peer answers ESTIMATE ranges (FEATURE_SKETCH)."""
        self.group_id = group_id
        self.source = source
        self.sketch = sketch
        self._opening = True
        self._estimating: int | None = None
        """Sub-table size asked for by the outstanding ESTIMATE (0: any)."""
        self._slices: dict[int, dict[int, bytes]] = {}
        """SKETCH cells received, by sub-table size, then offset."""
        self.need_keys: list[bytes] = []
        """Short keys (section 16.9) of items the peer holds and we lack,
        learned from a sketch (their ids are not in it)."""
        self.sketches = 0
        """Sketches decoded (for measurements)."""
        self._retried = False
        self._outstanding: dict[bytes, tuple[bytes, list[bytes] | None]] = {}
        """Query range lower -> (upper, the ids we listed for an IDLIST)."""
        self._lows: list[bytes] = []
        self.give_ids: list[bytes] = []
        self.give_ranges: list[GiveRange] = []
        self.need: list[bytes] = []
        self.rounds = 0
        """Batches of queries sent (the opening message counts as one)."""

    @property
    def done(self) -> bool:
        return not self._outstanding

    def start(self) -> list[ReconcileMessage]:
        """The opening message: our fingerprint of the whole group."""
        n = len(self.source)
        r = Range(INFINITY, Mode.FINGERPRINT, _source_fingerprint(self.source, 0, n))
        self.rounds += 1
        return self._send(MIN_BOUND, [(INFINITY, [r])])

    def _send(self, lower: bytes, parts: list[tuple[bytes, list[Range]]]) -> list[ReconcileMessage]:
        messages = _pack(self.group_id, lower, parts)
        for m in messages:
            lo = m.lower
            for r in m.ranges:
                if r.mode is not Mode.SKIP:
                    self._track(lo, r.upper, list(r.ids) if r.mode is Mode.IDLIST else None)
                lo = r.upper
        return messages

    def _track(self, lower: bytes, upper: bytes, ids: list[bytes] | None) -> None:
        if lower not in self._outstanding:
            self._lows.insert(bisect_left(self._lows, lower), lower)
        self._outstanding[lower] = (upper, ids)

    def receive(self, message: ReconcileMessage) -> list[ReconcileMessage]:
        """Process a reply; return the queries it calls for (maybe none)."""
        if message.group_id != self.group_id or not message.ranges or not message.reply:
            return []
        start, end = message.lower, message.upper
        if start not in self._outstanding:
            return []  # answers nothing we are waiting for (duplicate, stale)
        whole = start == MIN_BOUND and end == INFINITY
        if message.ranges[0].mode is Mode.SKETCH:
            if whole and self._estimating is not None and len(message.ranges) == 1:
                return self._on_sketch(message.ranges[0])
            return []
        opening, self._opening = self._opening, False
        self._estimating = None
        if opening and whole and self.sketch and self._scattered(message):
            self._forget(start)
            self.rounds += 1
            return self._ask_sketch(0)
        # The query ranges this reply answers: every outstanding one in it.
        lows = self._lows
        i = bisect_left(lows, start)
        j = i
        while j < len(lows) and lows[j] < end:
            j += 1
        answered = [(low, self._outstanding.pop(low)[1]) for low in lows[i:j]]
        del lows[i:j]
        starts = [low for low, _ in answered]
        # Our next queries, as runs of adjacent ranges (one message each).
        runs: list[tuple[bytes, list[tuple[bytes, list[Range]]]]] = []
        lower = start
        for r in message.ranges:
            q = bisect_right(starts, lower) - 1
            listed = answered[q][1] if q >= 0 else None
            ranges = self._on_reply(lower, r, listed)
            if ranges:
                if runs and runs[-1][1][-1][0] == lower:
                    runs[-1][1].append((r.upper, ranges))
                else:
                    runs.append((lower, [(r.upper, ranges)]))
            lower = r.upper
        out: list[ReconcileMessage] = []
        for run_lower, parts in runs:
            out.extend(self._send(run_lower, parts))
        if out:
            self.rounds += 1
        return out

    # -- sketches (section 16.9) --------------------------------------------
    def _scattered(self, message: ReconcileMessage) -> bool:
        """Whether an opening answer shows a difference spread over many
        buckets of a large group (where splitting costs most)."""
        if len(self.source) < SKETCH_MIN_ITEMS:
            return False
        if any(r.mode is not Mode.FINGERPRINT for r in message.ranges):
            return False
        differing = 0
        lower = message.lower
        for r in message.ranges:
            lo, hi = self._bounds(lower, r.upper)
            if _source_fingerprint(self.source, lo, hi) != r.fingerprint:
                differing += 1
            lower = r.upper
        return differing >= SKETCH_SPREAD

    def _forget(self, lower: bytes) -> None:
        self._outstanding.pop(lower, None)
        i = bisect_left(self._lows, lower)
        if i < len(self._lows) and self._lows[i] == lower:
            del self._lows[i]

    def _ask_sketch(self, at_least: int) -> list[ReconcileMessage]:
        """Query the whole group with our estimator."""
        self._estimating = at_least
        self._slices.clear()
        estimator = bytes(self.source.sketch().estimator)
        r = Range(INFINITY, Mode.ESTIMATE, sketch=estimator, cells=at_least)
        return self._send(MIN_BOUND, [(INFINITY, [r])])

    def _on_sketch(self, r: Range) -> list[ReconcileMessage]:
        """Collect a SKETCH slice; once the table is whole, decode it."""
        size = r.cells
        if (
            size not in sk.SIZES
            or size < (self._estimating or 0)  # an answer to an earlier ask
            or (self._slices and size not in self._slices)
        ):
            return []  # one table at a time (memory is bounded by one)
        parts = self._slices.setdefault(size, {})
        parts[r.offset] = r.sketch
        total = 3 * size
        if sum(len(p) for p in parts.values()) // sk.CELL_SIZE < total:
            return []
        table = b"".join(parts[o] for o in sorted(parts))
        if len(table) != total * sk.CELL_SIZE:
            return []  # overlapping slices (a mix of answers): wait on
        self._forget(MIN_BOUND)
        self._estimating = None
        self._slices.clear()
        decoded = sk.decode(self.source.sketch().table(size), table)
        found = self._locate(decoded[0]) if decoded is not None else None
        if decoded is not None and found is not None:
            self.sketches += 1
            self.give_ids.extend(found)
            self.need_keys.extend(decoded[1])
            return []
        # Did not decode (the estimate was low): once more, larger; then
        # fall back to splitting.
        self.rounds += 1
        # Not a multiple of the size that failed: items that shared their
        # cells there would be likelier to share them again.
        bigger = next((s for s in sk.SIZES if s >= 2 * size and s % size), None)
        if bigger is not None and not self._retried:
            self._retried = True
            return self._ask_sketch(bigger)
        return self._send(MIN_BOUND, [(INFINITY, split(self.source, MIN_BOUND, INFINITY))])

    def _locate(self, short_keys: list[bytes]) -> list[bytes] | None:
        """Our ids for decoded short keys (None if one is not ours: the
        decode was wrong)."""
        source = self.source
        out = []
        for short in short_keys:
            rank = source.rank(short)
            if rank >= len(source):
                return None
            key = source.key_at(rank)
            if key[: sk.SHORT_KEY] != short:
                return None
            out.append(key_id(key))
        return out

    def _bounds(self, lower: bytes, upper: bytes) -> tuple[int, int]:
        source = self.source
        lo = source.rank(lower)
        hi = source.rank(upper) if upper != INFINITY else len(source)
        return lo, hi

    def _on_reply(self, lower: bytes, r: Range, listed: list[bytes] | None) -> list[Range]:
        """Learn from one reply range; return our query ranges for it."""
        source = self.source
        if r.mode is Mode.FINGERPRINT:
            lo, hi = self._bounds(lower, r.upper)
            if _source_fingerprint(source, lo, hi) == r.fingerprint:
                return []
            return split(source, lower, r.upper)
        if r.mode is Mode.IDLIST:
            # The peer's whole range is listed: the difference is ours to see.
            lo, hi = self._bounds(lower, r.upper)
            theirs = set(r.ids)
            if hi - lo <= IDLIST_THRESHOLD:
                ours = {key_id(k) for k in source.keys(lo, hi)}
                self.give_ids.extend(
                    key_id(k) for k in source.keys(lo, hi) if key_id(k) not in theirs
                )
                self.need.extend(mid for mid in r.ids if mid not in ours)
            else:
                # We hold many more (a new peer): give the range lazily.
                self.give_ranges.append(GiveRange(lower, r.upper, frozenset(theirs)))
                self.need.extend(mid for mid in r.ids if not source.has_id(mid))
            return []
        if r.mode is Mode.IDLIST_REPLY:
            self.need.extend(r.ids)
            if listed is not None:
                bits = r.missing
                for i, mid in enumerate(listed):
                    if i // 8 < len(bits) and bits[i // 8] >> (i % 8) & 1:
                        self.give_ids.append(mid)
            return []
        return []
