"""The trio node (embedding API) over real UDP sockets on loopback, in memory."""

from __future__ import annotations

import socket
import time

import pytest
import trio

import mvds
from mvds.daemon.config import NodeConfig
from mvds.daemon.node import NodeError
from mvds.secure import Identity
from mvds.secure.session import SessionManager
from mvds.wire import Message, Payload, encode_payload

from nodes import addr, collect, pair, sessions_settled


async def test_two_nodes_sync_over_encrypted_udp():
    async with mvds.open_node() as a, mvds.open_node() as b:
        await pair(a, b)
        mid = await a.append("chat", b"hello")
        (got,) = await collect(b, 1)
        assert got.id == mid and got.body == b"hello" and got.text == "hello"
        assert got.seq == 1 and got.sender == a.peer_id
        with trio.fail_after(5):
            while a.status_now()["peers"][0]["pending"]["message"]:
                await trio.sleep(0.01)  # until b's ACK settles a's sync state
        status = a.status_now()
        assert status["peers"][0]["reachable"] is True
        assert status["datagrams_out"] > 0 and status["bytes_out"] > 0


async def test_append_returns_after_commit_and_large_batches_split_into_datagrams():
    config = NodeConfig(listen="127.0.0.1:0", max_datagram=600)
    async with mvds.open_node(config=config) as a, mvds.open_node() as b:
        await pair(a, b)
        bodies = [bytes([i % 256]) * 200 for i in range(300)]
        ids = await a.append_many("chat", bodies)
        assert len(ids) == 300 and a.store.message_count() == 300
        got = await collect(b, 300)
        assert [m.body for m in got] == bodies
        assert a.status_now()["datagrams_out"] >= 300 * 200 // 600


async def test_readers_resume_from_a_sequence_cursor():
    async with mvds.open_node() as a, mvds.open_node() as b:
        await pair(a, b)
        await a.append_many("chat", [b"%d" % i for i in range(10)])
        first = await collect(b, 4)
        rest = await collect(b, 6, since=first[-1].seq)
        assert [m.seq for m in first + rest] == list(range(1, 11))
        assert len({m.id for m in first + rest}) == 10
        history = [m async for m in b.messages(0, follow=False)]
        assert [m.seq for m in history] == list(range(1, 11))


async def test_ephemeral_messages_reach_live_readers_without_a_seq():
    async with mvds.open_node() as a, mvds.open_node() as b:
        await pair(a, b)
        async with trio.open_nursery() as nursery:
            got = []

            async def read():
                async for m in b.messages(0):
                    got.append(m)
                    return

            nursery.start_soon(read)
            await trio.sleep(0.05)
            await a.append("chat", b"typing", ephemeral=True)
        assert got[0].ephemeral and got[0].seq is None and got[0].body == b"typing"
        assert b.store.message_count() == 0


async def test_clear_errors_for_bad_requests():
    async with mvds.open_node(config=NodeConfig(listen="127.0.0.1:0", max_body=100)) as a:
        with pytest.raises(NodeError, match="unknown group 'nope'"):
            await a.append("nope", b"x")
        await a.join("chat")
        with pytest.raises(NodeError, match="maximum is 100"):
            await a.append("chat", b"x" * 101)
        with pytest.raises(NodeError, match="64 hex"):
            await a.add_peer("x", "abc", "127.0.0.1:1", ["chat"])
        with pytest.raises(NodeError, match="own peer id"):
            await a.add_peer("x", a.peer_id, "127.0.0.1:1", ["chat"])
        with pytest.raises(NodeError, match="no peer named"):
            await a.remove_peer("ghost")
        with pytest.raises(NodeError, match="bad address"):
            await a.add_peer("x", "ab" * 32, "nowhere", ["chat"])


async def test_unsharing_stops_sync_and_removing_a_peer_forgets_it():
    async with mvds.open_node() as a, mvds.open_node() as b:
        await pair(a, b, groups=("chat", "other"))
        await a.unshare("other", "b")
        await b.unshare("other", "a")
        await a.append("other", b"private")
        await a.append("chat", b"public")
        (got,) = await collect(b, 1)
        assert got.body == b"public"
        await trio.sleep(0.2)
        assert b.store.message_count() == 1
        await b.remove_peer("a")
        await a.append("chat", b"after removal")
        await trio.sleep(0.3)
        assert b.store.message_count() == 1
        drops = b.status_now()["drops"]
        # Its session was erased with it: its datagrams name an unknown
        # session index, and a new handshake from it an unknown peer.
        assert drops.get("unknown_index", 0) + drops.get("unknown_peer", 0) >= 1


def raw_sender():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def capture_sent(node) -> list:
    """Every (datagram, address) the node sends from now on, still sent."""
    captured: list = []
    original = node.transport.send

    def spy(datagrams):
        captured.extend(datagrams)
        original(datagrams)

    node.transport.send = spy
    return captured


async def test_hostile_datagrams_are_dropped_counted_and_honest_sync_goes_on(tmp_path):
    async with mvds.open_node() as a, mvds.open_node() as b:
        await pair(a, b)
        target = b.address
        captured = capture_sent(a)
        await a.append("chat", b"first")
        await collect(b, 1)
        stranger = SessionManager(Identity.generate(), keepalive_s=0)
        stranger.add_peer(b.peer_id, target)
        stranger.send(b.peer_id, encode_payload(Payload(messages=[Message(b"\x01" * 32, 1, b"evil")])), 0.0)
        (initiation,) = [data for _, data in stranger.datagrams_to_send()]
        transport = next(data for data, _ in captured if data[0] == 0x06 and len(data) > 40)
        with raw_sender() as s:
            s.sendto(initiation, target)  # a handshake from an unknown sender
            s.sendto(b"\x00garbage", target)
            s.sendto(b"", target)
            # a's genuine datagram under an unseen counter: a forgery.
            forged = bytearray(transport)
            forged[8:16] = (int.from_bytes(forged[8:16], "little") + 1000).to_bytes(8, "little")
            s.sendto(bytes(forged), target)
        await a.append("chat", b"still works")
        got = await collect(b, 2)
        assert got[-1].body == b"still works"
        await trio.sleep(0.1)
        drops = b.status_now()["drops"]
        assert drops.get("unknown_peer", 0) >= 1
        assert drops.get("auth_failed", 0) >= 1
        assert sum(drops.values()) >= 4
        assert b.store.message_count() == 2


async def test_replayed_datagrams_are_rejected():
    async with mvds.open_node() as a, mvds.open_node() as b:
        await pair(a, b)
        # A datagram still in flight when it is "replayed" is no replay:
        # capture and replay only once the start-up handshakes are over.
        await sessions_settled(a, b)
        captured = capture_sent(a)
        await a.append("chat", b"once")
        await collect(b, 1)
        await trio.sleep(0.05)
        await sessions_settled(a, b)
        def replays() -> int:
            drops = b.status_now()["drops"]
            # A replayed handshake response names a finished handshake: unknown index.
            return sum(drops.get(k, 0) for k in ("replay", "handshake_replay", "unknown_index"))

        before = replays()
        with raw_sender() as s:
            for data, _ in captured:
                s.sendto(data, b.address)
        await trio.sleep(0.2)
        assert replays() >= before + len(captured)
        assert b.store.message_count() == 1
        assert b.counters["delivered"] == 1


async def test_simulated_loss_still_delivers_everything():
    lossy = NodeConfig(listen="127.0.0.1:0", loss=0.3, seed=7, epoch_ms=50)
    async with mvds.open_node(config=lossy) as a, mvds.open_node(
        config=NodeConfig(listen="127.0.0.1:0", loss=0.3, seed=8, epoch_ms=50)
    ) as b:
        await pair(a, b)
        ids = await a.append_many("chat", [b"%d" % i for i in range(200)])
        # 30% loss in and out on each node: half of all datagrams are lost each
        # way, so the first handshake takes several tries (1 s apart) too.
        got = await collect(b, 200, timeout=60)
        assert {m.id for m in got} == set(ids)
        assert a.status_now()["drops"].get("simulated_loss_out", 0) > 0


async def test_offline_schedule_means_nothing_in_or_out():
    config = NodeConfig(listen="127.0.0.1:0", schedule="down 0.6s, up 5s", epoch_ms=50)
    async with mvds.open_node(config=config) as a, mvds.open_node() as b:
        await pair(a, b)
        assert not a.online
        t0 = time.monotonic()
        await a.append("chat", b"queued while down")
        (got,) = await collect(b, 1)
        assert time.monotonic() - t0 >= 0.3
        assert a.online and got.body == b"queued while down"


async def test_metrics_are_served_in_prometheus_format():
    from mvds.daemon.metrics import render_metrics

    async with mvds.open_node() as a, mvds.open_node() as b:
        await pair(a, b)
        await a.append("chat", b"x")
        await collect(b, 1)
        text = render_metrics(a.status_now())
        assert "# TYPE mvds_datagrams_out_total counter" in text
        assert 'mvds_peer_pending_records{type="message",peer="b"}' in text


async def test_every_user_error_of_open_node_is_a_one_line_node_error(tmp_path):
    """README: errors a user can cause raise mvds.NodeError with a one-line message."""
    from mvds.daemon.setup import init_node_dir

    init_node_dir(tmp_path / "a")

    async def fails(*args, **kwargs) -> str:
        with pytest.raises(mvds.NodeError) as caught:
            async with mvds.open_node(*args, **kwargs):
                pass
        assert type(caught.value) is mvds.NodeError
        message = str(caught.value)
        assert message and "\n" not in message
        return message

    assert "not a node directory" in await fails(tmp_path / "nowhere")
    assert "bad address 'bogus'" in await fails(listen="bogus")
    assert "bad address" in await fails(config=NodeConfig(listen="nonsense"))
    async with mvds.open_node(tmp_path / "a", listen="127.0.0.1:0") as a:
        assert "already running" in await fails(tmp_path / "a")
        taken = addr(a)
        assert await fails(listen=taken) == f"cannot listen on {taken}: Address already in use"
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            tcp.listen()
            busy = "127.0.0.1:%d" % tcp.getsockname()[1]
            message = await fails(config=NodeConfig(listen="127.0.0.1:0", metrics=busy))
            assert message == f"cannot serve metrics on {busy}: Address already in use"
        for call in (a.share("", "b"), a.unshare("", "b"), a.join(""), a.append("", b"x")):
            with pytest.raises(mvds.NodeError, match="a group name must not be empty"):
                await call
    (tmp_path / "a" / "mvds.toml").write_text("listen = [broken\n")
    assert "invalid TOML" in await fails(tmp_path / "a")
    (tmp_path / "a" / "mvds.toml").write_text('listen = "127.0.0.1:0"\n')
    (tmp_path / "a" / "identity.key").write_bytes(b"short")
    assert "identity key file" in await fails(tmp_path / "a")


async def test_a_node_directory_keeps_its_identity_messages_and_peers(tmp_path):
    """open_node(DIR): the SQLite store, the identity and the config persist."""
    from mvds.daemon.config import load_config
    from mvds.daemon.setup import init_node_dir

    _, identity = init_node_dir(tmp_path / "a")
    async with mvds.open_node(tmp_path / "a", listen="127.0.0.1:0") as a, mvds.open_node() as b:
        assert a.peer_id == identity.peer_id
        await pair(a, b)
        ids = await a.append_many("chat", [b"one", b"two"])
        await b.append("chat", b"three")
        (got,) = await collect(a, 1)
        assert got.body == b"three" and got.seq == 3, "after a's own two, in one sequence"
        assert [m.id for m in await collect(b, 2)] == ids
    assert (tmp_path / "a" / "mvds.db").exists()
    assert [p.name for p in load_config(tmp_path / "a" / "mvds.toml").peers] == ["b"]
    async with mvds.open_node(tmp_path / "a", listen="127.0.0.1:0") as again:
        assert again.peer_id == identity.peer_id
        assert again.store.message_count() == 3
        history = [m async for m in again.messages(0, follow=False)]
        assert [(m.seq, m.body) for m in history] == [(3, b"three")]
        everything = [m async for m in again.messages(0, follow=False, own=True)]
        assert [(m.seq, m.body, m.own) for m in everything] == [
            (1, b"one", True), (2, b"two", True), (3, b"three", False)]
        await again.append("chat", b"after a restart")  # still a member of "chat"


async def test_own_messages_in_the_one_sequence_live_and_resumable():
    """messages(own=True): own appends and received messages in one order,
    live too; a reader resuming after any seq neither skips nor repeats."""
    async with mvds.open_node() as a, mvds.open_node() as b:
        await pair(a, b)
        got = []

        async def read():
            async for m in a.messages(0, own=True):
                got.append(m)
                if len(got) == 3:
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await a.append("chat", b"mine 1")
            await collect(b, 1)
            await b.append("chat", b"theirs")
            await collect(a, 1)
            await a.append("chat", b"mine 2")
        assert [(m.seq, m.body, m.own) for m in got] == [
            (1, b"mine 1", True), (2, b"theirs", False), (3, b"mine 2", True)]
        assert got[0].to_json()["own"] is True and "via" not in got[0].to_json()
        resumed = [m async for m in a.messages(1, own=True, follow=False)]
        assert [m.seq for m in resumed] == [2, 3]
        received = [m async for m in a.messages(0, follow=False)]
        assert [m.body for m in received] == [b"theirs"], "received only by default"
        assert (await a.status())["last_seq"] == 3


async def test_messages_name_their_group_and_their_neighbour_as_via():
    async with mvds.open_node() as a, mvds.open_node() as b:
        await pair(a, b)
        await a.append("chat", b"hi")
        (got,) = await collect(b, 1)
        assert got.group == "chat" and got.via == a.peer_id
        line = got.to_json()
        assert line["via"] == a.peer_id.hex() and line["from"] == line["via"]
        text = repr(got)
        assert "group='chat'" in text and "body='hi'" in text and f"via={a.peer_id.hex()[:8]}" in text


async def test_negative_since_is_refused_on_memory_and_directory_nodes(tmp_path):
    mvds.init_node(tmp_path / "d")
    async with mvds.open_node() as memory, mvds.open_node(tmp_path / "d", listen="127.0.0.1:0") as disk:
        for node in (memory, disk):
            with pytest.raises(mvds.NodeError, match="since"):
                async for _ in node.messages(since=-5, follow=False):
                    pass


async def test_add_peer_takes_address_tuples_and_brackets_ipv6(tmp_path):
    async with mvds.open_node() as a, mvds.open_node() as b:
        await a.add_peer("b", b.peer_id, b.address, ["chat"])  # the tuple as it is
        await b.add_peer("a", a.peer_id, a.address, ["chat"])
        await a.append("chat", b"via a tuple")
        (got,) = await collect(b, 1)
        assert got.body == b"via a tuple"
        await a.add_peer("v6", Identity.generate().peer_id, ("::1", 7000, 0, 0), ["chat"])
        assert a.config.peer_named("v6").address == "[::1]:7000"
        with pytest.raises(mvds.NodeError, match="address"):
            await a.add_peer("bad", Identity.generate().peer_id, 7000, ["chat"])


async def test_init_node_is_exported_and_library_errors_name_no_cli_commands(tmp_path):
    peer_id = mvds.init_node(tmp_path / "n", listen="127.0.0.1:0")
    assert len(peer_id) == 32
    with pytest.raises(mvds.NodeError, match="already a node directory"):
        mvds.init_node(tmp_path / "n")
    async with mvds.open_node(tmp_path / "n") as node:
        assert node.peer_id == peer_id and isinstance(await node.status(), dict)
        assert node.status_now()["peer_id"] == peer_id.hex()
        with pytest.raises(mvds.NodeError) as unknown:
            await node.append("nope", b"x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(mvds.NodeError) as not_a_node:
        async with mvds.open_node(tmp_path / "empty"):
            pass
    for exc in (unknown.value, not_a_node.value):
        assert "mvds " not in str(exc) and "mvds.toml" not in str(exc), str(exc)


async def test_two_ipv6_nodes_pair_by_their_address_tuples():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    async with mvds.open_node(listen="[::1]:0") as a, mvds.open_node(listen="[::1]:0") as b:
        await a.add_peer("b", b.peer_id, b.address, ["chat"])
        await b.add_peer("a", a.peer_id, a.address, ["chat"])
        assert a.config.peer_named("b").address == "[::1]:%d" % b.address[1]
        await a.append("chat", b"over v6")
        (got,) = await collect(b, 1)
        assert got.body == b"over v6"
