"""The Store contract, checked the same way on every store.

Three variants: the memory store; the SQLite store with each call committed
on its own (records become "cold", on disk, after every call); and the
SQLite store with the whole test inside one transaction (everything stays in
the write-behind buffers and the in-memory hot set).  Between them they
cover both halves of the SQLite store's split.
"""

from __future__ import annotations

import pytest

from mvds.engine.records import UNKNOWN_GROUP, Record, RecordType
from mvds.store import MemoryStore, SQLiteStore
from mvds.wire import Message

G1, G2 = b"1" * 32, b"2" * 32
P, Q, R = b"P" * 32, b"Q" * 32, b"R" * 32
OFFER, REQUEST, MESSAGE = RecordType.OFFER, RecordType.REQUEST, RecordType.MESSAGE


@pytest.fixture(params=["memory", "sqlite", "sqlite-txn"])
def store(request, tmp_path):
    if request.param == "memory":
        yield MemoryStore()
        return
    s = SQLiteStore(tmp_path / "store.db")
    try:
        if request.param == "sqlite-txn":
            with s.transaction():
                yield s
        else:
            yield s
    finally:
        s.close()


def msg(body: bytes, group: bytes = G1, parents: tuple[bytes, ...] = (), ts: int = 1) -> Message:
    return Message(group, ts, body, parents)


def add(store, message: Message, *, ready: bool = True, src: bytes | None = None) -> Message:
    store.add_message(message, ready=ready, received_from=src)
    return message


def rec(message_id: bytes, peer: bytes = P, group: bytes = G1, kind=MESSAGE, **kw) -> Record:
    return Record(message_id, peer, group, kind, **kw)


def mid(n: int) -> bytes:
    """An id no message has (what a REQUEST record names)."""
    return n.to_bytes(32, "big")


def held(store, n: int, group: bytes = G1) -> bytes:
    """The id of a stored message (what OFFER and MESSAGE records name: the
    engine stores a message before making records to send it)."""
    m = msg(b"held %d" % n, group)
    if not store.has_message(m.id):
        add(store, m)
    return m.id


# -- small named values -----------------------------------------------------------


def test_meta_values(store):
    assert store.get_meta("epoch") is None
    store.set_meta("epoch", b"\x01")
    store.set_meta("replay/x", b"")
    assert store.get_meta("epoch") == b"\x01"
    store.set_meta("epoch", b"\x02\x03")
    assert store.get_meta("epoch") == b"\x02\x03"
    assert store.get_meta("replay/x") == b""


# -- groups and sharing -------------------------------------------------------------


def test_join_and_share(store):
    assert store.groups() == set() and not store.is_member(G1)
    store.join(G1)
    store.join(G1)
    assert store.groups() == {G1} and store.is_member(G1)
    assert store.sharing() == {G1: []}
    assert store.share(G2, Q) is True  # sharing joins
    assert store.share(G2, P) is True
    assert store.share(G2, Q) is False
    assert store.shared_peers(G2) == [Q, P], "stable (sharing) order"
    assert store.is_shared(G2, P) and not store.is_shared(G1, P)
    assert store.sharing() == {G1: [], G2: [Q, P]}
    assert store.unshare(G2, Q) is True
    assert store.unshare(G2, Q) is False
    assert store.unshare(G1, Q) is False
    assert store.shared_peers(G2) == [P]
    assert store.is_member(G2), "unsharing does not leave the group"
    assert store.shared_peers(b"9" * 32) == []


# -- messages --------------------------------------------------------------------------


def test_messages_are_stored_once(store):
    m = add(store, msg(b"a"))
    r = add(store, msg(b"b"), ready=False, src=Q)
    assert store.has_message(m.id) and not store.has_message(mid(1))
    assert store.get_message(m.id) == m and store.get_message(mid(1)) is None
    assert store.get_message(m.id).body == b"a"
    stored = store.get_stored(r.id)
    assert (stored.message, stored.ready, stored.seq, stored.received_from) == (r, False, None, Q)
    assert store.get_stored(m.id).received_from is None
    assert store.get_stored(mid(1)) is None
    assert store.message_count() == 2
    with pytest.raises(ValueError):
        add(store, msg(b"a"))
    with pytest.raises(ValueError):
        store.add_message(Message(G1, 1, b"e", (), True), ready=True, received_from=None)
    assert store.message_count() == 2


def test_messages_are_read_in_a_batch(store):
    stored = [add(store, msg(b"batch %d" % i, ts=i)) for i in range(700)]  # > one query's 500
    if isinstance(store, SQLiteStore) and not store._in_txn:
        store.close()  # read back from the file, not from caches
        store = SQLiteStore(store.path)
    wanted = [m.id for m in stored[::-1]] + [mid(1)]
    got = store.get_messages(wanted)
    assert set(got) == {m.id for m in stored}
    assert all(got[m.id] == m for m in stored)
    assert store.get_messages([]) == {}


def test_message_keeps_parents_and_timestamp(store):
    parent = add(store, msg(b"p"))
    child = add(store, msg(b"c", parents=(parent.id, mid(7)), ts=-5))
    got = store.get_message(child.id)
    assert got.parents == (parent.id, mid(7)) and got.timestamp == -5 and got.group_id == G1


def test_leaves_follow_the_dag(store):
    assert store.leaves(G1) == []
    a = add(store, msg(b"a"))
    assert store.leaves(G1) == [a.id]
    b = add(store, msg(b"b", parents=(a.id,)))
    c = add(store, msg(b"c", parents=(a.id,)))
    assert store.leaves(G1) == [b.id, c.id], "a fork: both children are leaves"
    d = add(store, msg(b"d", parents=(b.id, c.id)))
    assert store.leaves(G1) == [d.id]
    other = add(store, msg(b"x", group=G2))
    assert store.leaves(G2) == [other.id] and store.leaves(G1) == [d.id]


def test_a_parent_ready_after_its_ready_child_is_not_a_leaf(store):
    # Eventual delivery: the child is ready before its parent arrives.
    parent = msg(b"late")
    child = add(store, msg(b"early", parents=(parent.id,)))
    assert store.leaves(G1) == [child.id]
    add(store, parent)
    assert store.leaves(G1) == [child.id]


def test_held_messages_are_no_leaves_and_hide_no_parent(store):
    # Causal delivery: a held message must never become a parent of a local
    # append, or a descendant of it could be delivered before it.
    root = add(store, msg(b"root"))
    parent = msg(b"late", parents=(root.id,))
    child = add(store, msg(b"early", parents=(parent.id,)), ready=False)
    assert store.leaves(G1) == [root.id]
    add(store, parent, ready=False)
    assert store.leaves(G1) == [root.id]
    store.mark_ready(parent.id, deliver=True)
    assert store.leaves(G1) == [parent.id]
    store.mark_ready(child.id, deliver=True)
    assert store.leaves(G1) == [child.id]


def test_a_parent_in_another_group_stays_a_leaf_there(store):
    foreign = add(store, msg(b"f", group=G2))
    child = add(store, msg(b"c", parents=(foreign.id,)))
    assert store.leaves(G2) == [foreign.id] and store.leaves(G1) == [child.id]


def test_group_message_ids_oldest_first(store):
    ids = [add(store, msg(b"%d" % i, group=G1 if i % 3 else G2)).id for i in range(10)]
    assert list(store.group_message_ids(G1)) == [i for n, i in enumerate(ids) if n % 3]
    assert list(store.group_message_ids(G2)) == [i for n, i in enumerate(ids) if not n % 3]
    assert list(store.group_message_ids(b"9" * 32)) == []


def test_delivery_numbers(store):
    a = add(store, msg(b"a"), ready=False, src=P)
    b = add(store, msg(b"b"), ready=False, src=P)
    c = add(store, msg(b"c", group=G2), ready=False, src=P)
    assert store.last_seq() == 0 and not store.is_ready(a.id)
    assert store.mark_ready(b.id, deliver=True) == 1
    assert store.mark_ready(b.id, deliver=True) == 1, "a seq is never reassigned"
    assert store.mark_ready(a.id, deliver=False) is None
    assert store.is_ready(a.id) and store.get_stored(a.id).seq is None
    assert store.mark_ready(c.id, deliver=True) == 2
    assert store.mark_ready(a.id, deliver=True) == 3
    assert store.last_seq() == 3
    assert not store.is_ready(mid(9))

    def seqs(after, limit=10, group=None):
        return [(s.seq, s.message.id) for s in store.delivered_since(after, limit, group)]

    assert seqs(0) == [(1, b.id), (2, c.id), (3, a.id)]
    assert seqs(1) == [(2, c.id), (3, a.id)]
    assert seqs(0, limit=2) == [(1, b.id), (2, c.id)]
    assert seqs(0, group=G1) == [(1, b.id), (3, a.id)]
    assert seqs(1, group=G2) == [(2, c.id)]
    assert seqs(3) == [] and seqs(0, group=b"9" * 32) == []
    stored = store.delivered_since(0, 1)[0]
    assert stored.ready and stored.message == b


def test_own_messages_share_the_one_delivery_sequence(store):
    """Own appends get a seq when stored, in the same sequence as received
    messages: a reader with own=True reads a group's whole history in one
    pass; the default reader (received only) never sees them."""
    r1 = add(store, msg(b"r1"), ready=False, src=P)
    assert store.mark_ready(r1.id, deliver=True) == 1
    o1 = add(store, msg(b"o1"))  # own: ready, no sender
    assert store.get_stored(o1.id).seq == 2 and store.last_seq() == 2
    r2 = add(store, msg(b"r2", group=G2), ready=False, src=P)
    assert store.mark_ready(r2.id, deliver=True) == 3
    o2 = add(store, msg(b"o2", group=G2))
    assert store.mark_ready(o2.id, deliver=True) == 4, "an own message keeps its seq"

    def seqs(after, own, group=None, limit=10):
        return [(s.seq, s.message.id) for s in store.delivered_since(after, limit, group, own=own)]

    assert seqs(0, own=False) == [(1, r1.id), (3, r2.id)]
    assert seqs(0, own=True) == [(1, r1.id), (2, o1.id), (3, r2.id), (4, o2.id)]
    assert seqs(2, own=True, group=G2) == [(3, r2.id), (4, o2.id)]
    assert seqs(1, own=False, limit=1) == [(3, r2.id)], "own messages skipped, not counted"
    assert store.delivered_since(0, 10, own=True)[1].received_from is None


def test_waiting_for_parents(store):
    child, other = mid(1), mid(2)
    p1, p2 = mid(10), mid(11)
    assert store.waiting_parents(child) == [] and store.release_waiting(p1) == []
    store.add_waiting(child, [p2, p1])
    store.add_waiting(other, [p1])
    store.add_waiting(child, [p1])  # idempotent
    assert store.waiting_parents(child) == [p1, p2], "sorted"
    assert store.release_waiting(p1) == [other], "child still waits for p2"
    assert store.release_waiting(p1) == []
    assert store.waiting_parents(child) == [p2]
    assert store.release_waiting(p2) == [child]
    assert store.waiting_parents(child) == []


def test_release_order_is_the_order_children_started_waiting(store):
    parent = mid(10)
    children = [mid(5), mid(1), mid(3)]
    for child in children:
        store.add_waiting(child, [parent])
    assert store.release_waiting(parent) == children


# -- sync state ----------------------------------------------------------------------------


def test_insert_get_update_delete(store):
    one, two = held(store, 1), held(store, 2)
    r = rec(one, max_sends=3, expires_at=12.5, send_epoch=4)
    store.insert_record(r)
    got = store.get_record(one, P)
    assert got == r
    assert store.get_record(one, Q) is None and store.get_record(two, P) is None
    with pytest.raises(ValueError):
        store.insert_record(rec(one))
    with pytest.raises(KeyError):
        store.update_record(rec(two))
    got.send_count, got.send_epoch = 1, 7
    store.update_record(got)
    assert store.get_record(one, P) == rec(
        one, send_count=1, send_epoch=7, max_sends=3, expires_at=12.5
    )
    assert store.delete_record(one, P) == rec(
        one, send_count=1, send_epoch=7, max_sends=3, expires_at=12.5
    )
    assert store.delete_record(one, P) is None
    assert store.get_record(one, P) is None
    store.insert_record(rec(one))  # may come back after deletion
    assert store.record_count() == 1


def test_request_records_work_the_same_way(store):
    r = rec(mid(1), kind=REQUEST, group=UNKNOWN_GROUP, max_sends=3)
    store.insert_record(r)
    assert store.get_record(mid(1), P) == r
    with pytest.raises(ValueError):
        store.insert_record(rec(mid(1), kind=REQUEST, group=UNKNOWN_GROUP))
    got = store.get_record(mid(1), P)
    got.send_count, got.send_epoch = 2, 9
    store.update_record(got)
    assert store.get_record(mid(1), P).send_count == 2
    assert store.delete_record(mid(1), P).send_epoch == 9
    assert store.get_record(mid(1), P) is None and store.record_count() == 0


def test_new_records_are_fifo_per_peer_and_group(store):
    ids = {n: held(store, n, G1 if n % 2 else G2) for n in range(6)}
    # Inserted in an order that is not the messages' storage order.
    for n in (1, 0, 5, 2, 3, 4):
        store.insert_record(rec(ids[n], group=G1 if n % 2 else G2))
    store.insert_record(rec(held(store, 9), peer=Q))
    store.insert_record(rec(mid(8), kind=REQUEST, group=UNKNOWN_GROUP))
    assert [r.message_id for r in store.new_records(P, G1, 10)] == [ids[1], ids[5], ids[3]]
    assert [r.message_id for r in store.new_records(P, G1, 2)] == [ids[1], ids[5]]
    assert [r.message_id for r in store.new_records(P, G2, 10)] == [ids[0], ids[2], ids[4]]
    assert store.new_records(P, G1, 0) == [] and store.new_records(R, G1, 5) == []
    assert sorted(store.groups_with_new_records(P)) == sorted([G1, G2])
    assert store.groups_with_new_records(R) == []
    assert [r.message_id for r in store.new_requests(P, 10)] == [mid(8)]
    assert store.new_requests(Q, 10) == []
    assert store.has_new_records(P) and store.has_new_records(Q) and not store.has_new_records(R)
    assert store.peers_with_records() == sorted([P, Q])


def test_updating_a_new_record_moves_it_to_the_back(store):
    ids = [held(store, n) for n in range(3)]
    for i in ids:
        store.insert_record(rec(i, kind=OFFER))
    first = store.get_record(ids[0], P)
    first.kind = MESSAGE  # a REQUEST turned the OFFER into a MESSAGE, not yet sent
    store.update_record(first)
    assert [r.message_id for r in store.new_records(P, G1, 10)] == [ids[1], ids[2], ids[0]]
    assert store.get_record(ids[0], P).kind is MESSAGE


def test_in_flight_records_wait_for_their_epoch(store):
    def mid(n: int) -> bytes:  # noqa: F811 - records name held messages here
        return held(store, n)

    for n, epoch in [(1, 5), (2, 3), (3, 5), (4, 9)]:
        store.insert_record(rec(mid(n)))
        r = store.get_record(mid(n), P)
        r.send_count, r.send_epoch = 1, epoch
        store.update_record(r)
    assert store.new_records(P, G1, 10) == [] and not store.has_new_records(P)
    assert store.groups_with_new_records(P) == []
    assert store.inflight_count(P, G1) == 4 and store.inflight_count(P, G2) == 0
    assert store.next_due_epoch(P) == 3 and store.next_due_epoch(Q) is None
    assert store.due_records(P, 2) == []
    due = store.due_records(P, 5)
    assert [r.message_id for r in due] == [mid(2), mid(1), mid(3)], "epoch, then placement order"
    for r in due:
        r.send_count += 1
        r.send_epoch = 20 + r.send_count
        store.update_record(r)
    assert store.next_due_epoch(P) == 9
    assert [r.message_id for r in store.due_records(P, 100)] == [mid(4), mid(2), mid(1), mid(3)]


def test_requests_are_not_windowed(store):
    store.insert_record(rec(mid(1), kind=REQUEST, group=UNKNOWN_GROUP))
    store.insert_record(rec(held(store, 2)))
    for r in store.new_requests(P, 5) + store.new_records(P, G1, 5):
        r.send_count, r.send_epoch = 1, 2
        store.update_record(r)
    assert store.inflight_count(P, G1) == 1
    assert store.inflight_count(P, UNKNOWN_GROUP) == 0
    assert len(store.due_records(P, 2)) == 2


def test_pull_forward(store):
    def mid(n: int) -> bytes:  # noqa: F811 - records name held messages here
        return held(store, n)

    for n, epoch in [(1, 3), (2, 10), (3, 50)]:
        store.insert_record(rec(mid(n)))
        r = store.get_record(mid(n), P)
        r.send_count, r.send_epoch = 2, epoch
        store.update_record(r)
    store.insert_record(rec(mid(4)))  # new: not in flight, not moved
    assert store.pull_forward(P, 8, 2) == 2
    assert store.pull_forward(Q, 0, 0) == 0
    assert store.next_due_epoch(P) == 2
    assert sorted(r.message_id for r in store.due_records(P, 2)) == sorted([mid(2), mid(3)])
    assert store.get_record(mid(1), P).send_epoch == 3
    assert store.get_record(mid(4), P).send_count == 0


def test_delete_requests_for_a_message(store):
    store.insert_record(rec(mid(1), peer=P, kind=REQUEST, group=UNKNOWN_GROUP))
    store.insert_record(rec(mid(1), peer=Q, kind=REQUEST, group=G1))
    sent = store.get_record(mid(1), Q)
    sent.send_count, sent.send_epoch = 1, 1
    store.update_record(sent)
    mine = held(store, 3)
    store.insert_record(rec(mine, peer=R))  # a MESSAGE record: not a request
    store.insert_record(rec(mid(2), peer=P, kind=REQUEST, group=UNKNOWN_GROUP))
    assert store.delete_requests_for(mid(1)) == 2
    assert store.delete_requests_for(mid(1)) == 0
    assert store.delete_requests_for(mine) == 0
    assert store.get_record(mid(1), P) is None and store.get_record(mid(1), Q) is None
    assert store.get_record(mine, R) is not None and store.get_record(mid(2), P) is not None
    assert store.record_count() == 2


def test_a_request_settled_by_its_message_can_become_a_message_record(store):
    """The message arrives: the REQUEST for it goes, and a MESSAGE record to
    relay it to the same peer may follow at once (they live apart on disk)."""
    m = msg(b"requested")
    store.insert_record(rec(m.id, peer=Q, kind=REQUEST, group=UNKNOWN_GROUP))
    add(store, m)
    assert store.delete_requests_for(m.id) == 1
    store.insert_record(rec(m.id, peer=Q, kind=MESSAGE))
    assert store.get_record(m.id, Q).kind is MESSAGE
    assert store.record_stats() == {(Q, MESSAGE): 1}


def test_delete_group_records(store):
    def mid(n: int) -> bytes:  # noqa: F811 - records name held messages here
        return held(store, n, G2 if n == 3 else G1)

    store.insert_record(rec(mid(1), group=G1))
    store.insert_record(rec(mid(2), group=G1))
    store.insert_record(rec(mid(3), group=G2))
    store.insert_record(rec(mid(4), group=G1, peer=Q))
    flying = store.get_record(mid(2), P)
    flying.send_count = 1
    store.update_record(flying)
    assert store.delete_group_records(G1, P) == 2
    assert store.delete_group_records(G1, P) == 0
    assert store.inflight_count(P, G1) == 0
    assert store.get_record(mid(3), P) is not None and store.get_record(mid(4), Q) is not None
    assert store.record_count() == 2


def test_add_group_records_gives_a_peer_the_group_history(store):
    history = [add(store, msg(b"h%d" % i)) for i in range(5)]
    other = add(store, msg(b"other group", group=G2))
    store.insert_record(rec(history[1].id, kind=OFFER))  # new, must stay as it is
    flying = rec(history[3].id, kind=MESSAGE)
    store.insert_record(flying)
    flying.send_count, flying.send_epoch = 1, 9
    store.update_record(flying)
    store.delete_record(history[4].id, P)  # none: gets one
    assert store.add_group_records(G1, P, OFFER, 7) == 3
    assert store.add_group_records(G1, P, OFFER, 7) == 0
    assert store.add_group_records(b"9" * 32, P, OFFER, 7) == 0, "an unknown group"
    assert store.get_record(other.id, P) is None
    assert (store.get_record(history[3].id, P).send_count, store.inflight_count(P, G1)) == (1, 1)
    new = store.new_records(P, G1, 10)
    # FIFO: the record that existed first, then the history oldest first.
    assert [r.message_id for r in new] == [history[i].id for i in (1, 0, 2, 4)]
    assert [(r.kind, r.send_epoch, r.send_count, r.group_id) for r in new[1:]] == [(OFFER, 7, 0, G1)] * 3
    assert store.record_stats() == {(P, OFFER): 4, (P, MESSAGE): 1}
    assert store.add_group_records(G1, Q, MESSAGE, 1) == 5
    assert store.record_count() == 10


def test_record_counts_and_stats(store):
    assert store.record_count() == 0 and store.record_stats() == {}
    assert store.peers_with_records() == []
    ids = {n: held(store, n) for n in (1, 2, 4)}
    ids[3] = mid(3)
    store.insert_record(rec(ids[1], kind=OFFER))
    store.insert_record(rec(ids[2], kind=OFFER))
    store.insert_record(rec(ids[3], kind=REQUEST, group=UNKNOWN_GROUP, peer=Q))
    store.insert_record(rec(ids[4], peer=Q))
    r = store.get_record(ids[4], Q)
    r.send_count = 1
    store.update_record(r)
    assert store.record_count() == 4
    assert store.record_stats() == {(P, OFFER): 2, (Q, REQUEST): 1, (Q, MESSAGE): 1}
    assert store.peers_with_records() == sorted([P, Q])
    for n, peer in [(1, P), (2, P), (3, Q), (4, Q)]:
        store.delete_record(ids[n], peer)
    assert store.record_count() == 0 and store.record_stats() == {}
    assert store.peers_with_records() == []


def test_a_returned_record_can_be_deleted_then_reinserted(store):
    one = held(store, 1)
    store.insert_record(rec(one, kind=OFFER))
    (r,) = store.new_records(P, G1, 5)
    store.delete_record(r.message_id, r.peer)
    assert store.new_records(P, G1, 5) == [] and not store.has_new_records(P)
    store.insert_record(rec(one, kind=MESSAGE))
    assert [x.kind for x in store.new_records(P, G1, 5)] == [MESSAGE]


# -- reconciliation index ----------------------------------------------------------


def test_range_index_orders_a_group_by_timestamp_then_id_and_follows_appends(store):
    from mvds.store.rangeindex import id_value, key_id, key_timestamp

    early = [add(store, msg(b"e%d" % n, ts=-5 + n % 3)) for n in range(40)]
    add(store, msg(b"other group", G2))
    index = store.range_index(G1)  # built from what is stored ...
    late = [add(store, msg(b"l%d" % n, ts=n % 7)) for n in range(300)]  # ... then kept up
    messages = early + late
    expected = sorted((m.timestamp, m.id) for m in messages)
    keys = list(index)
    assert [(key_timestamp(k), key_id(k)) for k in keys] == expected
    assert store.range_index(G1) is index
    assert len(index) == 340
    total = sum(int.from_bytes(m.id, "little") for m in messages) % (1 << 256)
    assert index.range_sum(0, 340) == total
    assert index.range_sum(17, 250) == sum(map(id_value, keys[17:250])) % (1 << 256)
    assert index.has_id(late[0].id) and not index.has_id(mid(1))
    assert len(store.range_index(G2)) == 1 and len(store.range_index(b"3" * 32)) == 0


def test_range_index_forgets_a_rolled_back_append(tmp_path):
    s = SQLiteStore(tmp_path / "store.db")
    with s.transaction():
        add(s, msg(b"kept"))
    assert len(s.range_index(G1)) == 1
    with pytest.raises(RuntimeError):
        with s.transaction():
            add(s, msg(b"rolled back"))
            assert len(s.range_index(G1)) == 2
            raise RuntimeError
    keys = list(s.range_index(G1))
    assert len(keys) == 1
    s.close()
    with SQLiteStore(tmp_path / "store.db") as reopened:  # rebuilt at first use
        assert list(reopened.range_index(G1)) == keys


def test_delivery_seqs_are_read_in_a_batch(store, monkeypatch):
    # Some ids already in ``message_ids``, some still only in memory (the
    # SQLite store indexes them a batch at a time), more than one query's 500.
    from mvds.store import _sqlite_messages

    monkeypatch.setattr(_sqlite_messages, "INDEX_BATCH", 100)
    own = [add(store, msg(b"own %d" % i, ts=i)) for i in range(650)]
    held = msg(b"held", parents=(mid(9),))
    store.add_message(held, ready=False, received_from=Q)
    late = msg(b"late")
    store.add_message(late, ready=False, received_from=Q)
    late_seq = store.mark_ready(late.id, deliver=True)
    wanted = [m.id for m in own[::-1]] + [held.id, late.id, mid(1)]
    seqs = store.delivery_seqs(wanted)
    assert set(seqs) == {m.id for m in own} | {late.id}  # held: not handed over
    assert [seqs[m.id] for m in own] == sorted(seqs[m.id] for m in own)
    assert seqs[late.id] == late_seq > seqs[own[-1].id]
    assert all(seqs[m] == store.get_stored(m).seq for m in seqs)
    assert store.delivery_seqs([]) == {}
    # The messages themselves, through the same three paths.
    got = store.get_messages(wanted)
    assert set(got) == {m.id for m in own} | {held.id, late.id}
    assert all(got[m.id].body == m.body for m in own)


def test_a_range_index_built_in_slices_reads_what_was_stored_meanwhile(store, monkeypatch):
    # The daemon builds indexes a slice at a time between steps: messages
    # stored between slices, also while a page read earlier is half used
    # (pages of 20 rows here, slices of 7), and after the build, are all in.
    from mvds.store import _sqlite_messages
    from mvds.store.rangeindex import RangeIndex, make_key

    monkeypatch.setattr(_sqlite_messages, "PAGE", 2)
    stored = [add(store, msg(b"w %d" % i, ts=i % 7)) for i in range(55)]
    calls = 0
    while not store.warm_range_index(G1, 7):
        calls += 1
        if calls <= 10:
            stored.append(add(store, msg(b"meanwhile %d" % calls, ts=3)))
    assert calls > 5  # built over several slices, with stores in between
    stored.append(add(store, msg(b"after", ts=2)))
    add(store, msg(b"other group", group=G2))
    index = store.range_index(G1)
    assert list(index) == list(RangeIndex(make_key(m.timestamp, m.id) for m in stored))
    assert store.warm_range_index(G1, 7)  # built: nothing more to read
