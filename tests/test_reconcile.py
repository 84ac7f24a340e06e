"""Range-based set reconciliation (mvds/engine/reconcile.py): any two sets
reconcile to their exact symmetric difference, in few round trips."""

from __future__ import annotations

import hashlib
import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mvds.engine.reconcile import (
    BUCKETS,
    IDLIST_THRESHOLD,
    INFINITY,
    MIN_BOUND,
    Mode,
    Range,
    ReconcileMessage,
    Session,
    bound_between,
    fingerprint,
    fingerprint_of_ids,
    respond,
)
from mvds.store.rangeindex import RangeIndex, key_id, make_key
from mvds.wire import decode_reconcile, encode_reconcile

GROUP = bytes(32)


def _id(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes(8, "little")).digest()


def _key(n: int, timestamp: int | None = None) -> bytes:
    return make_key(n // 3 if timestamp is None else timestamp, _id(n))


def run(ours: RangeIndex, theirs: RangeIndex, *, mangle=None, sketch: bool = False
        ) -> tuple[Session, int, int]:
    """Drive a session to its end over the wire encoding (``mangle`` may
    change each round's replies); return it, round trips and bytes moved."""
    session = Session(GROUP, ours, sketch=sketch)
    queries = session.start()
    round_trips = 0
    moved = 0
    while queries:
        round_trips += 1
        replies = []
        for q in queries:
            data = encode_reconcile(q)
            moved += len(data)
            replies.extend(respond(theirs, decode_reconcile(data)))
        if mangle is not None:
            replies = mangle(replies)
        queries = []
        for r in replies:
            data = encode_reconcile(r)
            moved += len(data)
            queries.extend(session.receive(decode_reconcile(data)))
    return session, round_trips, moved


def given_ids(session: Session, ours: RangeIndex) -> list[bytes]:
    out = list(session.give_ids)
    for g in session.give_ranges:
        lo = ours.rank(g.lower)
        hi = len(ours) if g.upper == INFINITY else ours.rank(g.upper)
        out.extend(key_id(k) for k in ours.keys(lo, hi) if key_id(k) not in g.exclude)
    return out


def check(a_keys: set[bytes], b_keys: set[bytes]) -> tuple[int, int]:
    a, b = RangeIndex(a_keys), RangeIndex(b_keys)
    session, round_trips, moved = run(a, b)
    assert session.done
    give = given_ids(session, a)
    a_ids = {key_id(k) for k in a_keys}
    b_ids = {key_id(k) for k in b_keys}
    assert sorted(give) == sorted(a_ids - b_ids)  # exact, and no id twice
    assert sorted(session.need) == sorted(b_ids - a_ids)
    return round_trips, moved


keysets = st.sets(st.integers(0, 3000), max_size=400)


@settings(max_examples=150, deadline=None)
@given(common=keysets, only_a=keysets, only_b=keysets, spread=st.integers(1, 400))
def test_any_two_sets_reconcile_to_the_symmetric_difference(common, only_a, only_b, spread):
    def key(n):
        return make_key(n // spread - 3, _id(n))

    a = {key(n) for n in common | only_a}
    b = {key(n) for n in common | (only_b - only_a)}
    check(a, b)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 60), timestamp=st.integers(-(1 << 63), (1 << 63) - 1))
def test_one_timestamp_and_extreme_timestamps(n, timestamp):
    # Every item shares a timestamp: bounds then need id prefixes.
    a = {make_key(timestamp, _id(i)) for i in range(n)}
    b = {make_key(timestamp, _id(i)) for i in range(0, n, 2)}
    check(a, b)
    check(b, a)


def test_empty_and_identical_sets_take_one_round_trip():
    assert check(set(), set())[0] == 1
    same = {_key(n) for n in range(5000)}
    round_trips, moved = check(same, same)
    assert round_trips == 1
    assert moved < 200  # one fingerprint each way


def test_round_trips_grow_logarithmically():
    for size in (100, 1000, 10_000, 50_000):
        rng = random.Random(size)
        keys = [_key(n) for n in range(size)]
        a = set(keys)
        b = set(keys)
        for k in rng.sample(keys, 10):
            a.discard(k)
        for k in rng.sample(keys, 10):
            b.discard(k)
        round_trips, _ = check(a, b)
        # One opening fingerprint, then each reply narrows by BUCKETS per
        # half round trip until ranges hold IDLIST_THRESHOLD items.
        bound = 2 + math.ceil(math.log(size / IDLIST_THRESHOLD, BUCKETS) / 2)
        assert round_trips <= bound, (size, round_trips, bound)


def test_a_new_peer_costs_no_per_message_state_on_the_giver():
    a = {_key(n) for n in range(20_000)}
    session, round_trips, _ = run(RangeIndex(a), RangeIndex())
    assert round_trips == 1
    assert not session.give_ids and len(session.give_ranges) == 1
    assert len(given_ids(session, RangeIndex(a))) == 20_000


def test_lost_duplicated_and_reordered_replies_never_give_a_wrong_answer():
    rng = random.Random(7)
    a = {_key(n) for n in range(3000) if rng.random() < 0.9}
    b = {_key(n) for n in range(3000) if rng.random() < 0.9}
    ai, bi = RangeIndex(a), RangeIndex(b)

    def mangle(replies):
        out = [r for r in replies if rng.random() > 0.2]
        out += [r for r in replies if rng.random() < 0.3]
        rng.shuffle(out)
        return out

    a_ids = {key_id(k) for k in a}
    b_ids = {key_id(k) for k in b}
    give: set[bytes] = set()
    need: set[bytes] = set()
    for attempt in range(30):
        session, _, _ = run(ai, bi, mangle=mangle)
        # Whatever arrived is right (a subset of the true difference) ...
        assert set(given_ids(session, ai)) <= a_ids - b_ids
        assert set(session.need) <= b_ids - a_ids
        give |= set(given_ids(session, ai))
        need |= set(session.need)
        if session.done:
            break
    # ... and new sessions (what the engine does after a loss) finish it.
    assert give == a_ids - b_ids and need == b_ids - a_ids


def test_fingerprint_construction():
    ids = [_id(n) for n in range(5)]
    total = sum(int.from_bytes(i, "little") for i in ids) % (1 << 256)
    expected = hashlib.sha256(total.to_bytes(32, "little") + (5).to_bytes(8, "little"))
    assert fingerprint_of_ids(ids) == expected.digest()[:16]
    assert fingerprint(total + (1 << 256), 5) == fingerprint(total, 5)  # mod 2^256
    assert fingerprint_of_ids(ids) == fingerprint_of_ids(list(reversed(ids)))


def test_bounds_are_shortest_separators():
    a = make_key(5, bytes([1, 2, 3]) + bytes(29))
    b = make_key(5, bytes([1, 2, 9]) + bytes(29))
    assert bound_between(a, b) == make_key(5, bytes([1, 2, 9]))
    assert a < bound_between(a, b) <= b
    c = make_key(6, bytes(32))
    assert bound_between(b, c) == make_key(6, b"")


def test_responder_ignores_what_it_does_not_understand():
    msg = ReconcileMessage(GROUP, MIN_BOUND, [Range(INFINITY, Mode.IDLIST_REPLY, ids=[_id(1)])])
    (reply,) = respond(RangeIndex({_key(1)}), msg)
    assert [r.mode for r in reply.ranges] == [Mode.SKIP]


@settings(max_examples=150, deadline=None)
@given(
    built=keysets,
    batches=st.lists(keysets, max_size=4),
    spread=st.integers(1, 400),
    with_sketch=st.booleans(),
)
def test_deferred_keys_answer_as_if_added_at_once(built, batches, spread, with_sketch):
    # Keys deferred by the append path (few: added one by one; more than an
    # eighth of the index: merged by one sort) answer every query as an index
    # built from all of them does, sketch included.
    def key(n):
        return make_key(n // spread, _id(n))

    index = RangeIndex({key(n) for n in built})
    if with_sketch:
        index.sketch()
    everything = {key(n) for n in built}
    for batch in batches:
        new = {key(n) for n in batch} - everything
        for k in sorted(new, key=key_id):  # id order, not key order
            index.defer(k)
        everything |= new
        whole = RangeIndex(everything)
        assert len(index) == len(whole)
        assert list(index) == list(whole)
        n = len(whole)
        for lo, hi in ((0, n), (n // 3, n // 2), (n // 2, n)):
            assert index.range_sum(lo, hi) == whole.range_sum(lo, hi)
            assert index.keys(lo, hi) == whole.keys(lo, hi)
        for k in list(everything)[:5]:
            assert k in index and index.rank(k) == whole.rank(k)
        if with_sketch:
            assert index.sketch().table(16) == whole.sketch().table(16)


@settings(max_examples=100, deadline=None)
@given(
    built=st.sets(st.integers(0, 3000), min_size=1, max_size=400),
    batch_sizes=st.lists(st.integers(1, 700), max_size=5),
    with_sketch=st.booleans(),
    idle=st.booleans(),
)
def test_appended_keys_go_in_at_the_end_as_if_added_at_once(built, batch_sizes, with_sketch, idle):
    # New messages of this node sort after every key: settled when idle
    # (appends only) or at the next query, they top up the last block and
    # add blocks, and answer as an index built from all of them.
    index = RangeIndex({_key(n, 0) for n in built})
    if with_sketch:
        index.sketch()
    everything = {_key(n, 0) for n in built}
    second = 1
    for size in batch_sizes:
        new = {_key(10_000 + second * 1000 + i, second) for i in range(size)}
        second += 1
        for k in sorted(new, key=key_id):
            index.defer(k)
        if idle:
            assert index.settle(appends_only=True)
            assert not index._pending
        everything |= new
        whole = RangeIndex(everything)
        n = len(whole)
        assert list(index) == list(whole)
        assert index.range_sum(n // 4, n) == whole.range_sum(n // 4, n)
        assert index.keys(n // 2, n) == whole.keys(n // 2, n)
        assert all(len(block) <= 256 for block in index._blocks)
        if with_sketch:
            assert index.sketch().table(16) == whole.sketch().table(16)
    old = _key(5, -1)  # sorts before everything: not an append
    index.defer(old)
    assert not index.settle(appends_only=True) and index._pending == [old]
    assert index.rank(old) == 0 and not index._pending
