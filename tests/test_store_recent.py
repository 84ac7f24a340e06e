"""The SQLite store's in-memory shortcuts answer exactly what SQL would.

Recently committed messages are served from memory (get_message, and
delivered_since for readers that keep up), MESSAGE records paged from disk
bring their message rows along, and a record insert for a message stored in
the same transaction skips looking for an older row, and a Bloom filter
answers "not stored" without SQL.  Each shortcut is checked against what
the file holds.
"""

from __future__ import annotations

import pytest

from mvds.engine.records import Record, RecordType
from mvds.store import SQLiteStore
from mvds.store import _sqlite_messages
from mvds.store.sqlite import SQLiteReader
from mvds.wire import Message

G1, G2 = b"1" * 32, b"2" * 32
P = b"P" * 32


class Rollback(Exception):
    pass


@pytest.fixture
def small_cache(monkeypatch):
    """A cache of 8 messages, so tests cross its edges with few messages."""
    monkeypatch.setattr(_sqlite_messages, "RECENT_MESSAGES", 8)


def deliver(store: SQLiteStore, bodies: list[bytes], group: bytes = G1) -> list[Message]:
    """Store and hand over messages as received ones, in one transaction."""
    out = []
    with store.transaction():
        for body in bodies:
            message = Message(group, 1, body)
            store.add_message(message, ready=False, received_from=P)
            store.mark_ready(message.id, deliver=True)
            out.append(message)
    return out


def as_rows(stored) -> list[tuple]:
    return [(s.seq, s.message.id, s.message.parents, s.ready, s.received_from) for s in stored]


def test_delivered_since_matches_the_file_from_every_cursor(tmp_path, small_cache):
    path = tmp_path / "store.db"
    with SQLiteStore(path) as store, SQLiteReader(path) as reader:
        for batch in range(5):
            group = G1 if batch % 2 else G2
            deliver(store, [b"b%d-%d" % (batch, i) for i in range(batch + 2)], group)
        last = store.last_seq()
        assert last == sum(range(2, 7))
        for cursor in range(last + 2):
            for limit in (1, 3, 100):
                for group in (None, G1, G2):
                    assert as_rows(store.delivered_since(cursor, limit, group)) == as_rows(
                        reader.delivered_since(cursor, limit, group)
                    ), (cursor, limit, group)


def test_a_rolled_back_message_is_never_served(tmp_path, small_cache):
    with SQLiteStore(tmp_path / "store.db") as store:
        kept = deliver(store, [b"kept"])[0]
        lost = Message(G1, 1, b"lost")
        with pytest.raises(Rollback):
            with store.transaction():
                store.add_message(lost, ready=False, received_from=P)
                store.mark_ready(lost.id, deliver=True)
                raise Rollback
        assert store.get_message(lost.id) is None
        assert store.get_message(kept.id) == kept
        assert [s.message.id for s in store.delivered_since(0, 10, None)] == [kept.id]
        assert store.last_seq() == 1


def test_evicted_messages_still_come_from_the_file(tmp_path, small_cache):
    with SQLiteStore(tmp_path / "store.db") as store:
        messages = deliver(store, [b"m%d" % i for i in range(30)])
        for message in messages:
            found = store.get_message(message.id)
            assert found == message and found.body == message.body
        assert [s.seq for s in store.delivered_since(0, 100, None)] == list(range(1, 31))


def test_a_seq_given_to_an_older_message_is_seen(tmp_path, small_cache):
    """Causal delivery hands over a message stored in an earlier transaction:
    its seq is given by SQL, outside the cache's view."""
    with SQLiteStore(tmp_path / "store.db") as store:
        held = Message(G1, 1, b"held")
        with store.transaction():
            store.add_message(held, ready=False, received_from=P)
        deliver(store, [b"a", b"b"])
        with store.transaction():
            assert store.mark_ready(held.id, deliver=True) == 3
        deliver(store, [b"c"])
        assert [s.message.body for s in store.delivered_since(1, 10, None)] == [b"b", b"held", b"c"]


def test_paged_message_records_send_the_stored_message(tmp_path):
    """Records that went cold (committed, unsent) are paged with their rows."""
    with SQLiteStore(tmp_path / "store.db") as store:
        messages = [Message(G1, 1, b"body %d" % i, ()) for i in range(5)]
        with store.transaction():
            for m in messages:
                store.add_message(m, ready=True, received_from=None)
                store.insert_record(Record(m.id, P, G1, RecordType.MESSAGE, 0, 0))
        store.close()
    with SQLiteStore(tmp_path / "store.db") as store:
        with store.transaction():
            paged = store.new_records(P, G1, 10)
            assert [r.message_id for r in paged] == [m.id for m in messages]
            for record, original in zip(paged, messages):
                found = store.get_message(record.message_id)
                assert found == original
                assert (found.group_id, found.timestamp, found.body) == (
                    original.group_id, original.timestamp, original.body
                )


def test_a_record_insert_still_finds_an_older_request(tmp_path):
    """A REQUEST kept from before is found even for a message stored now."""
    with SQLiteStore(tmp_path / "store.db") as store:
        message = Message(G1, 1, b"asked for")
        store.insert_record(Record(message.id, P, b"", RecordType.REQUEST, 0, 0))
        with store.transaction():
            store.add_message(message, ready=True, received_from=None)
            with pytest.raises(ValueError):
                store.insert_record(Record(message.id, P, G1, RecordType.MESSAGE, 0, 0))


def test_id_filter_never_forgets_and_rarely_lies():
    import hashlib

    from mvds.store._idfilter import IdFilter

    ids = [hashlib.sha256(b"%d" % i).digest() for i in range(20000)]
    filt = IdFilter.of(ids[:10000], 10000)
    assert all(filt.may_contain(mid) for mid in ids[:10000]), "no false negatives"
    false_positives = sum(filt.may_contain(mid) for mid in ids[10000:])
    assert false_positives < 100, f"{false_positives} of 10,000 (about 0.2% expected)"
    assert not filt.needs_rebuild()


def test_has_message_stays_right_through_filter_rebuilds_and_rollbacks(tmp_path, monkeypatch):
    from mvds.store import _idfilter

    monkeypatch.setattr(_idfilter, "MIN_CAPACITY", 4)  # rebuild after a handful
    path = tmp_path / "store.db"
    with SQLiteStore(path) as store:
        stored = deliver(store, [b"m%d" % i for i in range(50)])
        with pytest.raises(Rollback):
            with store.transaction():
                gone = deliver_in_txn(store, [b"gone%d" % i for i in range(20)])
                assert all(store.has_message(m.id) for m in gone)
                raise Rollback
        more = deliver(store, [b"n%d" % i for i in range(30)])
        assert all(store.has_message(m.id) for m in stored + more)
        assert not any(store.has_message(m.id) for m in gone)
        with pytest.raises(ValueError, match="already stored"):
            store.add_message(stored[7], ready=True, received_from=None)
    with SQLiteStore(path) as store:  # built afresh from the file at open
        assert all(store.has_message(m.id) for m in stored + more)
        assert not any(store.has_message(m.id) for m in gone)


def deliver_in_txn(store: SQLiteStore, bodies: list[bytes]) -> list[Message]:
    out = []
    for body in bodies:
        message = Message(G1, 1, body)
        store.add_message(message, ready=True, received_from=None)
        out.append(message)
    return out


def test_a_message_read_back_to_be_sent_parses_its_fields_only_when_asked():
    from mvds.store._sqlite_messages import _LazyMessage
    from mvds.wire import encode_message

    m = Message(G1, 5, b"body", (b"p" * 32,))
    lazy = _LazyMessage(m.id, encode_message(m))
    assert encode_message(lazy) is encode_message(lazy)  # sent as stored, never re-encoded
    assert encode_message(lazy) == encode_message(m)
    assert (lazy.group_id, lazy.timestamp, lazy.body, lazy.parents, lazy.ephemeral) == (
        G1, 5, b"body", (b"p" * 32,), False,
    )
    assert lazy == m and isinstance(lazy, Message)
    with pytest.raises(AttributeError):
        lazy.no_such_field
