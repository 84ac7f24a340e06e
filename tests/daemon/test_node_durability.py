"""The durability rules, on real nodes: SQLite files in node directories,
real UDP on loopback, faults injected into real SQLite.

* an append returns only after its message is committed;
* a received message is ACKed only after it is committed: a failed commit
  sends nothing and hands nothing over, and the retransmission after the
  fault is stored, ACKed and handed over once;
* readers resume from a seq cursor across a restart of the node and of the
  reader, neither skipping nor repeating a message.
"""

from __future__ import annotations

import json

import pytest
import trio

import mvds
from mvds.daemon.node import NodeError
from mvds.daemon.setup import init_node_dir
from mvds.store.sqlite import SQLiteReader
from mvds.wire import Message, Payload

from nodes import collect, pair
from procs import cli
from storefaults import FaultyConnection, RawPeer, node_store

CHAT = mvds.group_id_for_name("chat")


def store_errors(lines) -> list[dict]:
    return [line for line in lines() if line["event"] == "store.error"]


async def test_an_append_returns_only_after_its_commit(tmp_path, monkeypatch, logs):
    node_store(monkeypatch, connection_factory=FaultyConnection)
    init_node_dir(tmp_path / "a")
    async with mvds.open_node(tmp_path / "a") as a:
        await a.join("chat")
        with SQLiteReader(a.nodedir.db) as other_connection:
            for i in range(20):
                message_id = await a.append("chat", b"durable %d" % i)
                # Another connection sees it the moment append returns: it
                # was committed before the caller heard back.
                assert other_connection.has_message(message_id)
            ids = await a.append_many("chat", [b"batch %d" % i for i in range(50)])
            assert all(map(other_connection.has_message, ids))

            FaultyConnection.fault = "disk full"
            with pytest.raises(NodeError, match="not stored: .*disk full"):
                await a.append("chat", b"lost before commit")
            with pytest.raises(NodeError, match="not stored"):
                await a.append_many("chat", [b"also lost", b"and this"])
            assert other_connection.message_count() == 70
            assert a.store.message_count() == 70
            FaultyConnection.fault = None

            message_id = await a.append("chat", b"after the fault")
            assert other_connection.has_message(message_id)
            assert other_connection.message_count() == 71
    bodies = {s.message.body for s in _all_messages(tmp_path / "a" / "mvds.db")}
    assert b"lost before commit" not in bodies and b"after the fault" in bodies
    assert any(not e["fatal"] and "disk full" in e["error"] for e in store_errors(logs))


def _all_messages(db):
    """Every stored message of the chat group (own ones are never 'delivered')."""
    from mvds.store import SQLiteStore

    with SQLiteStore(db) as store:
        return [store.get_stored(mid) for mid in store.group_message_ids(CHAT)]


@pytest.mark.parametrize("fault", ["commit fails", "disk full"])
async def test_no_ack_leaves_before_the_message_is_committed(tmp_path, monkeypatch, logs, fault):
    node_store(monkeypatch, connection_factory=FaultyConnection)
    init_node_dir(tmp_path / "b")
    raw = await RawPeer(tmp_path).bind()
    try:
        async with mvds.open_node(tmp_path / "b") as b:
            raw.know(b.peer_id)
            await b.add_peer("raw", raw.peer_id, raw.address, ["chat"])
            await raw.drain()  # b's "I am online" announcement
            message = Message(CHAT, 1_700_000_000, b"m" * 20_000)  # needs new pages
            with SQLiteReader(b.nodedir.db) as other_connection:
                if fault == "commit fails":
                    FaultyConnection.fault = "disk full"
                else:  # a real SQLITE_FULL: the file may not grow
                    pages = b.store._db.one("PRAGMA page_count")[0]
                    b.store._db.one(f"PRAGMA max_page_count = {pages}")
                for _ in range(3):
                    await raw.send(b, Payload(messages=[message]))
                    # Nothing at all comes back: no ACK for what is not stored.
                    assert await raw.drain(0.3) == []
                assert not other_connection.has_message(message.id)
                assert not b.store.has_message(message.id)
                assert b.store.delivered_since(0, 10) == []
                assert [m async for m in b.messages(0, follow=False)] == []
                assert store_errors(logs), "the failure was not logged"

                # The fault clears; the peer retransmits (a new datagram).
                if fault == "commit fails":
                    FaultyConnection.fault = None
                else:
                    b.store._db.one("PRAGMA max_page_count = 1073741823")
                acked = None
                with trio.fail_after(10):
                    while acked is None:
                        await raw.send(b, Payload(messages=[message]))
                        for payload in await raw.drain(0.3):
                            if message.id in payload.acks:
                                # When the ACK arrives the message is on disk.
                                assert other_connection.has_message(message.id)
                                acked = payload
                got = [m async for m in b.messages(0, follow=False)]
                assert [(m.seq, m.id, m.sender) for m in got] == [(1, message.id, raw.peer_id)]
                # A retransmission of a stored message: ACKed again, not handed over again.
                await raw.send(b, Payload(messages=[message]))
                assert any(message.id in p.acks for p in await raw.drain(0.3))
                assert b.store.last_seq() == 1
    finally:
        raw.close()


async def test_readers_resume_across_a_restart_of_the_node_and_of_the_reader(tmp_path):
    init_node_dir(tmp_path / "b")
    async with mvds.open_node() as a:
        async with mvds.open_node(tmp_path / "b") as b:
            await pair(a, b)
            await a.append_many("chat", [b"%d" % i for i in range(30)])
            first = await collect(b, 10)
            cursor = first[-1].seq
            # The reader restarts: a new iterator from its saved cursor.
            second = await collect(b, 10, since=cursor)
            cursor = second[-1].seq
        # The node restarts (its datagrams meanwhile are lost or retransmitted).
        await a.append_many("chat", [b"%d" % i for i in range(30, 40)])
        async with mvds.open_node(tmp_path / "b") as b:
            rest = await collect(b, 20, since=cursor, timeout=20)
            await trio.sleep(0.3)  # anything more would be a repeat
            assert [m async for m in b.messages(cursor, follow=False)] == rest
    seen = first + second + rest
    assert [m.seq for m in seen] == list(range(1, 41))
    assert sorted(int(m.body) for m in seen) == list(range(40))
    # `mvds tail --since` on the stopped node reads the same history.
    result = cli("tail", str(tmp_path / "b"), "--json", "--since", "25")
    assert result.returncode == 0, result.stderr
    tailed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [t["seq"] for t in tailed] == list(range(26, 41))
    assert [t["id"] for t in tailed] == [m.id.hex() for m in seen[25:]]


async def test_a_reader_of_a_quiet_group_waits_while_other_groups_get_messages():
    """A group-filtered reader whose group gets nothing new while another
    group does must wait, not spin (it used to hang the whole node)."""
    async with mvds.open_node() as a, mvds.open_node() as b:
        await pair(a, b, groups=("chat", "other"))
        got = []
        # A spinning reader never yields to trio, so no timeout could stop
        # it: count its queries instead and fail the test on a spin.
        queries = 0
        delivered_since = b.store.delivered_since

        def counted(*args, **kwargs):
            nonlocal queries
            queries += 1
            if queries > 500:
                raise AssertionError("the reader is spinning")
            return delivered_since(*args, **kwargs)

        b.store.delivered_since = counted

        async def read_other():
            async for message in b.messages(0, group="other"):
                got.append(message)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_other)
            with trio.fail_after(10):
                await a.append_many("chat", [b"chat %d" % i for i in range(5)])
                await collect(b, 5, group="chat")
                await a.append("other", b"finally")
                while not got:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        assert [(m.seq, m.body) for m in got] == [(6, b"finally")]
        assert queries < 50
