"""The SQLite store behaves exactly like the memory store, whatever the calls.

Hypothesis draws a sequence of store operations (the ones the engine makes,
in the order the contract allows), interleaved with transaction commits,
rollbacks and closing/reopening the file.  The memory store is the model:
a rollback restores a copy taken at BEGIN.  Every answer the SQLite store
gives must equal the model's, so the write-behind buffers, the hot/cold
split of records and the caches rebuilt after a rollback or a reopen are all
checked against the simple implementation.
"""

from __future__ import annotations

import copy
import dataclasses
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from mvds.engine.records import UNKNOWN_GROUP, Record, RecordType
from mvds.store import MemoryStore, SQLiteStore, _sqlite_messages
from mvds.wire import Message

GROUPS = [b"1" * 32, b"2" * 32]
PEERS = [b"P" * 32, b"Q" * 32, b"R" * 32]
KINDS = [RecordType.OFFER, RecordType.REQUEST, RecordType.MESSAGE]
IDS = [bytes([n]) * 32 for n in range(1, 13)]
POOL = [Message(GROUPS[n % 2], 1, b"m%d" % n).id for n in range(12)]


class Rollback(Exception):
    pass


def as_tuple(record: Record | None):
    return None if record is None else dataclasses.astuple(record)


def stored_tuple(stored):
    if stored is None:
        return None
    return (stored.message.id, stored.message.parents, stored.ready, stored.seq, stored.received_from)


_insert = st.tuples(
    st.just("insert"), st.integers(0, 11), st.integers(0, 2), st.integers(0, 1),
    st.integers(0, 2), st.integers(0, 5),
)
_add_message = st.tuples(
    st.just("add_message"), st.integers(0, 11), st.lists(st.integers(0, 11), max_size=3),
    st.booleans(), st.integers(0, 3),
)
data_ops = st.one_of(
    _insert,
    _insert,
    st.tuples(st.just("update"), st.integers(0, 11), st.integers(0, 2), st.integers(0, 2),
              st.integers(0, 9)),
    st.tuples(st.just("delete"), st.integers(0, 11), st.integers(0, 2)),
    st.tuples(st.just("send_new"), st.integers(0, 2), st.integers(0, 1), st.integers(1, 4),
              st.integers(0, 9)),
    st.tuples(st.just("send_due"), st.integers(0, 2), st.integers(0, 12), st.integers(0, 9)),
    st.tuples(st.just("pull"), st.integers(0, 2), st.integers(0, 10), st.integers(0, 3)),
    st.tuples(st.just("pull_due"), st.integers(0, 2), st.integers(0, 10), st.integers(0, 3)),
    st.tuples(st.just("delete_requests"), st.integers(0, 11)),
    st.tuples(st.just("delete_group"), st.integers(0, 1), st.integers(0, 2)),
    st.tuples(st.just("add_group"), st.integers(0, 1), st.integers(0, 2), st.booleans(),
              st.integers(0, 9)),
    _add_message,
    _add_message,
    st.tuples(st.just("mark_ready"), st.integers(0, 11), st.booleans()),
    st.tuples(st.just("wait"), st.integers(0, 11), st.lists(st.integers(0, 11), max_size=3)),
    st.tuples(st.just("release"), st.integers(0, 11)),
    st.tuples(st.just("share"), st.integers(0, 1), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("meta"), st.integers(0, 2), st.binary(max_size=4)),
)
batches = st.lists(
    st.tuples(
        st.lists(data_ops, min_size=1, max_size=12),
        st.sampled_from(["commit", "rollback", "reopen", "autocommit"]),
    ),
    min_size=1,
    max_size=8,
)
"""Work in batches, as the daemon does: each batch of operations runs in one
transaction that commits, rolls back or is followed by closing and
reopening the file, or runs outside any transaction (each call commits)."""


class Pair:
    """The SQLite store under test next to its model, kept in step."""

    def __init__(self, path) -> None:
        self.path = path
        self.sql = SQLiteStore(path)
        self.model = MemoryStore()
        self.txn = None
        self.snapshot = None
        self.messages: dict[int, Message] = {}

    def both(self, call):
        """Run ``call`` on each store; both raise the same error or answer the same."""
        results = []
        for store in (self.model, self.sql):
            try:
                results.append(("ok", call(store)))
            except (ValueError, KeyError) as exc:
                results.append(("error", type(exc)))
        assert results[0] == results[1], results
        return results[0]

    def begin(self):
        if self.txn is None:
            self.txn = self.sql.transaction()
            self.txn.__enter__()
            self.snapshot = copy.deepcopy(self.model)

    def end(self, commit: bool):
        if self.txn is None:
            return
        txn, self.txn = self.txn, None
        if commit:
            txn.__exit__(None, None, None)
        else:
            assert txn.__exit__(Rollback, Rollback(), None) is False
            self.model = self.snapshot

    def reopen(self):
        self.end(commit=True)
        self.sql.close()
        self.sql = SQLiteStore(self.path)

    @staticmethod
    def message(index: int, parents: list[int] = ()) -> Message:
        """Message ``index`` of a pool of 12 in two groups; the id does not
        depend on the parents, so parents can name any pool message."""
        return Message(GROUPS[index % 2], 1, b"m%d" % index, tuple(POOL[p] for p in parents))

    def apply(self, op) -> None:
        kind = op[0]
        if kind == "insert":
            _, m, p, g, k, epoch = op
            kind_ = KINDS[k]
            # The contract: OFFER/MESSAGE records name stored messages (in
            # their group), REQUEST records messages not stored.  Ids of
            # messages never stored (IDS) can only be requested.
            request = kind_ is RecordType.REQUEST
            target = POOL[m] if (g or not request) else IDS[m]
            if self.model.has_message(target) == request:
                return
            if request:
                group = UNKNOWN_GROUP if epoch % 2 else GROUPS[m % 2]
            else:
                group = GROUPS[m % 2]
            self.both(lambda s: s.insert_record(Record(target, PEERS[p], group, kind_, 0, epoch)))
        elif kind == "update":
            _, m, p, k, epoch = op

            def update(s):
                record = s.get_record(POOL[m], PEERS[p]) or s.get_record(IDS[m], PEERS[p])
                if record is None:
                    return None
                record.send_count += 1
                record.send_epoch = epoch
                if record.kind is RecordType.OFFER and k == 2:
                    record.kind = RecordType.MESSAGE  # a REQUEST answered the OFFER
                s.update_record(record)
                return as_tuple(record)

            self.both(update)
        elif kind == "delete":
            _, m, p = op
            self.both(lambda s: as_tuple(s.delete_record(POOL[m], PEERS[p])))
            self.both(lambda s: as_tuple(s.delete_record(IDS[m], PEERS[p])))
        elif kind == "send_new":
            _, p, g, limit, epoch = op

            def send_new(s):
                fresh = s.new_requests(PEERS[p], limit) + s.new_records(PEERS[p], GROUPS[g], limit)
                out = [as_tuple(r) for r in fresh]
                for record in fresh:
                    record.send_count += 1
                    record.send_epoch = epoch
                    s.update_record(record)
                return out

            self.both(send_new)
        elif kind == "send_due":
            _, p, epoch, later = op

            def send_due(s):
                due = s.due_records(PEERS[p], epoch)
                out = [as_tuple(r) for r in due]
                for record in due:
                    if later == 0:
                        s.delete_record(record.message_id, record.peer)
                        continue
                    record.send_count += 1
                    record.send_epoch = epoch + later
                    s.update_record(record)
                return out

            self.both(send_due)
        elif kind == "pull":
            _, p, beyond, to = op
            self.both(lambda s: s.pull_forward(PEERS[p], beyond, to))
        elif kind == "pull_due":
            # Pulled-forward records are due in one order in both stores
            # (``both`` compares the lists, so order and not only content).
            _, p, beyond, to = op

            def pull_due(s):
                moved = s.pull_forward(PEERS[p], beyond, to)
                due = s.due_records(PEERS[p], to)
                out = [as_tuple(r) for r in due]
                for record in due:
                    record.send_count += 1
                    record.send_epoch = to + 3
                    s.update_record(record)
                return moved, out

            self.both(pull_due)
        elif kind == "delete_requests":
            self.both(lambda s: s.delete_requests_for(IDS[op[1]]))
            self.both(lambda s: s.delete_requests_for(POOL[op[1]]))
        elif kind == "delete_group":
            self.both(lambda s: s.delete_group_records(GROUPS[op[1]], PEERS[op[2]]))
        elif kind == "add_group":
            _, g, p, offer, epoch = op
            kind_ = RecordType.OFFER if offer else RecordType.MESSAGE
            self.both(lambda s: s.add_group_records(GROUPS[g], PEERS[p], kind_, epoch))
        elif kind == "add_message":
            _, index, parents, ready, src = op
            message = self.message(index, parents)
            source = None if src == 3 else PEERS[src]

            def add(s):
                if not s.has_message(message.id):
                    s.delete_requests_for(message.id)  # as the engine does first
                s.add_message(message, ready=ready, received_from=source)

            self.both(add)
        elif kind == "mark_ready":
            _, index, deliver = op
            self.both(lambda s: s.mark_ready(POOL[index], deliver=deliver))
        elif kind == "wait":
            self.both(lambda s: s.add_waiting(POOL[op[1]], [POOL[p] for p in op[2]]))
        elif kind == "release":
            self.both(lambda s: s.release_waiting(POOL[op[1]]))
        elif kind == "share":
            _, g, p, on = op
            if on:
                self.both(lambda s: s.share(GROUPS[g], PEERS[p]))
            else:
                self.both(lambda s: s.unshare(GROUPS[g], PEERS[p]))
        elif kind == "meta":
            self.both(lambda s: s.set_meta(f"k{op[1]}", op[2]))
        else:  # pragma: no cover
            raise AssertionError(kind)

    def check_queries(self) -> None:
        both = self.both
        for peer in PEERS:
            both(lambda s: s.next_due_epoch(peer))
            both(lambda s: s.has_new_records(peer))
            both(lambda s: sorted(s.groups_with_new_records(peer)))
            both(lambda s: [as_tuple(r) for r in s.new_requests(peer, 3)])
            for group in GROUPS:
                both(lambda s: s.inflight_count(peer, group))
                both(lambda s: [as_tuple(r) for r in s.new_records(peer, group, 3)])
                both(lambda s: s.is_shared(group, peer))
        both(lambda s: s.peers_with_records())
        both(lambda s: s.record_count())
        both(lambda s: s.record_stats())
        for m in POOL[:6] + IDS[:3]:
            for peer in PEERS:
                both(lambda s: as_tuple(s.get_record(m, peer)))
        both(lambda s: s.sharing())
        both(lambda s: s.groups())
        both(lambda s: s.message_count())
        both(lambda s: s.last_seq())
        both(lambda s: [stored_tuple(x) for x in s.delivered_since(0, 100)])
        both(lambda s: [stored_tuple(x) for x in s.delivered_since(1, 2, GROUPS[1])])
        for group in GROUPS:
            both(lambda s: s.leaves(group))
            both(lambda s: list(s.group_message_ids(group)))
        for m in POOL[:6]:
            both(lambda s: s.waiting_parents(m))
        for key in ("k0", "k1", "k2"):
            both(lambda s: s.get_meta(key))
        for m in POOL:
            both(lambda s: stored_tuple(s.get_stored(m)))
            both(lambda s: s.is_ready(m))
            both(lambda s: s.has_message(m))


def run_batches(path, work) -> None:
    pair = Pair(path)
    try:
        for operations, ending in work:
            if ending != "autocommit":
                pair.begin()
            for op in operations:
                pair.apply(op)
            pair.check_queries()
            if ending == "reopen":
                pair.reopen()
            else:
                pair.end(commit=ending == "commit")
            pair.check_queries()
        pair.reopen()
        pair.check_queries()
    finally:
        pair.end(commit=False)
        pair.sql.close()


@settings(max_examples=150, deadline=None)
@given(batches)
def test_sqlite_store_matches_the_memory_store(tmp_path_factory, work):
    run_batches(tmp_path_factory.mktemp("model") / "store.db", work)


@settings(max_examples=100, deadline=None)
@given(batches)
def test_sqlite_store_matches_the_memory_store_while_ids_move_to_the_index(tmp_path_factory, work):
    """The newest ids live in memory until INDEX_BATCH of them go into
    ``message_ids`` together; with a batch of 3 that happens all the time,
    in every kind of transaction (committed, rolled back, reopened)."""
    with mock.patch.object(_sqlite_messages, "INDEX_BATCH", 3):
        run_batches(tmp_path_factory.mktemp("model") / "store.db", work)



def _pull_then_due(store) -> list[int]:
    """Eight records in flight for one peer, sent in order 0..7 with send
    epochs in the opposite order; pulled forward to one epoch, they are due
    in the order they were in flight, whatever the hash seed."""
    peer = PEERS[0]
    messages = [Message(GROUPS[0], 2, b"pulled %d" % n) for n in range(8)]
    with store.transaction():
        for message in messages:
            store.add_message(message, ready=True, received_from=None)
            store.insert_record(Record(message.id, peer, GROUPS[0], RecordType.MESSAGE, 0, 0))
        for n, record in enumerate(store.new_records(peer, GROUPS[0], 8)):
            record.send_count = 1
            record.send_epoch = 10 + (7 - n)
            store.update_record(record)
    order = [m.id for m in messages]
    with store.transaction():
        assert store.pull_forward(peer, 5, 6) == 8
        return [order.index(r.message_id) for r in store.due_records(peer, 6)]


def test_pull_forward_keeps_the_in_flight_order_in_both_stores(tmp_path):
    """Regression: the SQLite store kept in-flight ids in a set, so after
    pull_forward due_records came out in hash-seed order ([7, 1, 5, 2, ...])
    where the memory store gives [0..7]."""
    sql = SQLiteStore(tmp_path / "store.db")
    try:
        assert _pull_then_due(sql) == list(range(8))
    finally:
        sql.close()
    assert _pull_then_due(MemoryStore()) == list(range(8))
