"""The daemon's parts without sockets or trio tasks: the datagram gate, the
peer registry, subscriptions and the status builder (mvds/daemon/*.py)."""

from __future__ import annotations

from collections import Counter

import structlog
import trio

from mvds.daemon.config import NodeConfig, PeerConfig
from mvds.daemon.delivered import DeliveredMessage
from mvds.daemon.gate import DatagramGate
from mvds.daemon.peers import PeerRegistry
from mvds.daemon.status import build_status
from mvds.daemon.subscriptions import Subscriptions
from mvds.engine import RecordType
from mvds.secure import EnvelopeCodec, Identity, NonceCounter
from mvds.store import MemoryStore
from mvds.wire import Message, Payload, encode_payload

A_ADDR = ("127.0.0.1", 1000)


def codec(tmp_path, identity, name):
    return EnvelopeCodec(identity, NonceCounter(tmp_path / f"{name}.nonce"))


def gate_pair(tmp_path, *, rate=0):
    """Node b's gate, and a codec that seals as peer a."""
    a, b = Identity.generate(), Identity.generate()
    a_codec, b_codec = codec(tmp_path, a, "a"), codec(tmp_path, b, "b")
    a_codec.add_peer(b.peer_id)
    b_codec.add_peer(a.peer_id)
    config = NodeConfig(peers=[PeerConfig("a", a.peer_id_hex, "127.0.0.1:1000", ["chat"])])
    peers = PeerRegistry(rate)
    peers.sync(config)
    gate = DatagramGate(b_codec, peers, max_datagram=600, drop_log_interval=10.0,
                        log=structlog.get_logger())
    return a, b, a_codec, gate


def test_the_gate_opens_decodes_counts_and_learns_the_address(tmp_path):
    a, b, a_codec, gate = gate_pair(tmp_path)
    payload = Payload(acks=[bytes(32)])
    datagram = a_codec.seal(b.peer_id, encode_payload(payload))
    peer, got = gate.open(datagram, A_ADDR, 0.0)
    assert peer == a.peer_id and list(got.acks) == [bytes(32)]
    state = gate.peers[a.peer_id]
    assert state.address == A_ADDR and state.counters["datagrams_in"] == 1
    assert gate.open(datagram, A_ADDR, 0.0) is None  # a replay
    assert gate.open(b"garbage", A_ADDR, 0.0) is None
    assert gate.drops.counts["replay"] == 1 and sum(gate.drops.counts.values()) == 2


def test_the_gate_splits_and_seals_what_goes_out(tmp_path):
    a, b, a_codec, gate = gate_pair(tmp_path)
    big = Payload(messages=[Message(group_id=bytes(32), timestamp=1, body=b"x" * 300)
                            for _ in range(4)])
    assert gate.seal(a.peer_id, big) == []  # no address yet: counted
    assert gate.drops.counts["no_address"] == 1
    gate.peers[a.peer_id].address = A_ADDR
    datagrams = gate.seal(a.peer_id, big)
    assert len(datagrams) > 1 and all(len(d) <= 600 and to == A_ADDR for d, to in datagrams)
    a_codec_peer = {a_codec.open(d)[0] for d, _ in datagrams}
    assert a_codec_peer == {b.peer_id}


def test_the_gate_spends_the_byte_budget_only_after_authentication(tmp_path):
    a, b, a_codec, gate = gate_pair(tmp_path, rate=1024)
    for _ in range(50):
        gate.open(b"\x01" + bytes(200), A_ADDR, 0.0)  # forged: not charged
    sealed = [a_codec.seal(b.peer_id, encode_payload(Payload(acks=[bytes(32)] * 30))) for _ in range(100)]
    opened = [gate.open(d, A_ADDR, 0.0) for d in sealed]
    assert opened[0] is not None
    assert gate.peers[a.peer_id].counters["rate_limited"] == opened.count(None) > 0


def test_the_registry_follows_the_config():
    x, y = Identity.generate().peer_id_hex, Identity.generate().peer_id_hex
    peers = PeerRegistry()
    one = NodeConfig(peers=[PeerConfig("x", x, "h:1"), PeerConfig("y", y, "h:2")])
    assert sorted(peers.sync(one)[0]) == sorted([bytes.fromhex(x), bytes.fromhex(y)])
    peers[bytes.fromhex(x)].address = ("h", 1)
    two = NodeConfig(peers=[PeerConfig("x", x, "h:1", ["chat"]), PeerConfig("z", y, "h:3")])
    changed, removed = peers.sync(two)
    assert changed == [bytes.fromhex(y)] and removed == []
    assert peers[bytes.fromhex(x)].address == ("h", 1)  # only its groups changed
    assert peers[bytes.fromhex(y)].address is None  # moved: resolve again
    assert peers.sync(NodeConfig()) == ([], [bytes.fromhex(x), bytes.fromhex(y)])


async def test_a_full_subscriber_channel_drops_ephemeral_messages_and_counts_them():
    counters: Counter[str] = Counter()
    subscriptions = Subscriptions(counters, buffer=3)
    store = MemoryStore()
    reader = subscriptions.batches(store, 0, None, True)
    started = trio.Event()
    got = []

    async def read():
        started.set()
        async for batch in reader:
            got.extend(batch)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await started.wait()
        await trio.sleep(0)
        for i in range(5):
            subscriptions.publish(DeliveredMessage(None, bytes(32), bytes([i]) * 32, 1, b"%d" % i,
                                                   None, True))
        subscriptions.notify()
        await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert [m.body for m in got] == [b"0", b"1", b"2"]
    assert counters["ephemeral_dropped"] == 2


def test_status_of_a_stopped_node_is_the_shared_builder_without_live_numbers():
    peer = Identity.generate().peer_id
    config = NodeConfig(groups=["g"], peers=[PeerConfig("p", peer.hex(), "h:1", ["chat"])])
    status = build_status(config, "ab" * 32, pending={(peer, RecordType.MESSAGE): 4},
                          messages_stored=7, last_seq=7)
    assert status["running"] is False and status["groups"] == ["chat", "g"]
    (entry,) = status["peers"]
    assert entry["pending"]["message"] == 4 and entry["pending"]["offer"] == 0
    assert entry["reachable"] is False and "datagrams_in" not in entry
