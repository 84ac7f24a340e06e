"""Work per step is bounded: no statement scans the whole history, and bulk
operations on a long history keep memory flat.

* Every statement the SQLite store runs while an engine works on it (appends,
  receives in both modes, held messages, ACKs, retransmissions, sharing and
  unsharing, readers with and without a group) is checked with EXPLAIN
  QUERY PLAN: it must find its rows through an index, never SCAN a table
  and never sort rows into a temporary B-tree.
* Sharing a group's history with a new peer and unsharing it again run as
  bulk SQL: the records never pass through memory.
"""

from __future__ import annotations

import re

from mvds.engine import Engine, EngineConfig, Mode
from mvds.store import MemoryStore, SQLiteStore
from mvds.wire import Payload, decode_payload, encode_payload

G1, G2 = b"1" * 32, b"2" * 32
A, B, C = b"A" * 32, b"B" * 32, b"C" * 32


def wire(payload: Payload) -> Payload:
    return decode_payload(encode_payload(payload))


def exchange(a: Engine, b: Engine, store: SQLiteStore, now: float, drop_to_a: bool = False) -> None:
    with store.transaction():
        out = a.payloads_to_send(now)
    for peer, payload in out:
        if peer == B:
            b.receive(A, wire(payload), now)
    back = [p for peer, p in b.payloads_to_send(now) if peer == A]
    with store.transaction():
        for payload in back:
            if not drop_to_a:
                a.receive(B, wire(payload), now)


def normalized(sql: str) -> str:
    """A statement with its literal values blanked out, to group repeats."""
    return re.sub(r"x'[0-9a-fA-F]*'|\b\d+(\.\d+)?\b|'[^']*'", "?", sql)


def test_no_statement_on_the_hot_path_scans_or_sorts(tmp_path):
    store = SQLiteStore(tmp_path / "a.db")
    statements: dict[str, str] = {}
    store._db.conn.set_trace_callback(lambda sql: statements.setdefault(normalized(sql), sql))
    try:
        for mode in (Mode.BATCH, Mode.INTERACTIVE):
            a = Engine(store, EngineConfig(mode=mode, max_inflight=4, epoch_length=1.0), now=0.0)
            b = Engine(MemoryStore(), EngineConfig(mode=mode, epoch_length=1.0), now=0.0)
            now = 10.0 if mode is Mode.BATCH else 1000.0
            with store.transaction():
                a.share(G1, B, now)
                a.share(G2, B, now)
            b.share(G1, A, now)
            b.share(G2, A, now)
            for round_ in range(12):
                now += 1.0
                with store.transaction():
                    for i in range(6):
                        a.append(G1 if i % 2 else G2, b"%s a %d %d" % (mode.value.encode(), round_, i), now)
                for i in range(4):
                    b.append(G1, b"%s b %d %d" % (mode.value.encode(), round_, i), now)
                exchange(a, b, store, now, drop_to_a=round_ % 3 == 1)
            # A message whose parent never arrived: held, its parent requested.
            missing = b.append(G1, b"%s missing" % mode.value.encode(), now)
            child = b.append(G1, b"%s child" % mode.value.encode(), now)
            assert child.parents == (missing.id,)
            with store.transaction():
                a.receive(B, Payload(messages=[child]), now)
            for _ in range(300):  # retransmissions until everything settles
                now += 5.0
                exchange(a, b, store, now)
                if a.is_quiet() and b.is_quiet():
                    break
            with store.transaction():
                a.share(G1, C, now)
                a.unshare(G1, C, now)
            store.delivered_since(0, 10)
            store.delivered_since(3, 10, G1)
            store.delivered_since(store.last_seq() - 2, 10, G2)
            assert store.is_ready(child.id) and store.record_count() == 0
    finally:
        store._db.conn.set_trace_callback(None)
    assert len(statements) > 20
    bad = {}
    # Sorting the rows of ONE key is fine: a group's current leaves and a
    # parent's waiting children are a handful, whatever the history.
    one_key_sorts = {
        "SELECT id FROM leaves WHERE gid = ? ORDER BY rowid",
        "SELECT child FROM waiting WHERE parent = ? ORDER BY rowid",
    }
    for sql in statements.values():
        if not sql.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE")):
            continue
        plan = [row[3] for row in store._db.all("EXPLAIN QUERY PLAN " + sql)]
        if any(step.startswith("SCAN") for step in plan) or (
            any("TEMP B-TREE" in step for step in plan) and normalized(sql) not in one_key_sorts
        ):
            bad[normalized(sql)] = plan
    store.close()
    assert not bad, "statements that scan or sort: " + repr(bad)


def test_sharing_and_unsharing_a_long_history_keeps_records_out_of_memory(tmp_path):
    store = SQLiteStore(tmp_path / "a.db")
    try:
        a = Engine(store, EngineConfig(), now=0.0)
        with store.transaction():
            for i in range(3000):
                a.append(G1, b"%d" % i, 0.0)
        with store.transaction():
            a.share(G1, B, 1.0)
            assert store.record_count() == 3000
            assert len(store._records._hot) == 0, "the history's records were loaded"
            with_records = [r.message_id for r in store.new_records(B, G1, 5)]
        assert with_records == list(store.group_message_ids(G1))[:5], "history order, oldest first"
        with store.transaction():
            (_, payload), = a.payloads_to_send(2.0)  # a window's worth goes out
            assert len(payload.messages) == EngineConfig().max_inflight
        with store.transaction():
            a.unshare(G1, B, 3.0)
            assert store.record_count() == 0
            assert len(store._records._hot) == 0
        store.close()
        store = SQLiteStore(tmp_path / "a.db")
        assert store.record_count() == 0 and store.message_count() == 3000
    finally:
        store.close()
