"""The daemon's parts without sockets or trio tasks: the datagram gate, the
peer registry, subscriptions and the status builder (mvds/daemon/*.py)."""

from __future__ import annotations

from collections import Counter

import structlog
import structlog.testing
import trio

from mvds.daemon.config import NodeConfig, PeerConfig
from mvds.daemon.delivered import DeliveredMessage
from mvds.daemon.gate import DatagramGate
from mvds.daemon.peers import PeerRegistry
from mvds.daemon.status import build_status
from mvds.daemon.subscriptions import Subscriptions
from mvds.engine import RecordType
from mvds.secure import EnvelopeCodec, Identity
from mvds.secure.session import SessionManager
from mvds.store import MemoryStore
from mvds.wire import Message, Payload, encode_payload

A_ADDR = ("127.0.0.1", 1000)
B_ADDR = ("127.0.0.1", 2000)


def gate_pair(*, rate=0, plaintext=False):
    """Node b's gate, and peer a's session layer (or plaintext codec), linked:
    a session is established before the test starts."""
    a, b = Identity.generate(), Identity.generate()
    config = NodeConfig(peers=[PeerConfig("a", a.peer_id_hex, "127.0.0.1:1000", ["chat"],
                                          plaintext=plaintext)])
    peers = PeerRegistry(rate)
    peers.sync(config)
    b_codec = EnvelopeCodec(b)
    b_codec.add_peer(a.peer_id, plaintext=plaintext)
    b_sessions = SessionManager(b, keepalive_s=0)
    if not plaintext:
        b_sessions.add_peer(a.peer_id, A_ADDR)
    gate = DatagramGate(b_codec, peers, sessions=b_sessions, max_datagram=600,
                        drop_log_interval=10.0, log=structlog.get_logger())
    if plaintext:
        a_side = EnvelopeCodec(a)
        a_side.add_peer(b.peer_id, plaintext=True)
        return a, b, a_side, gate
    a_side = SessionManager(a, keepalive_s=0)
    a_side.add_peer(b.peer_id, B_ADDR)
    a_side.send(b.peer_id, encode_payload(Payload()), 0.0)  # the handshake, then the payload
    for _ in range(3):
        for _, data in a_side.datagrams_to_send():
            gate.open(data, A_ADDR, 0.0)
        for data, _ in gate.session_output():
            a_side.datagram_received(B_ADDR, data, 0.0)
    assert a_side.status(b.peer_id, 0.0)["established"]
    return a, b, a_side, gate


def sealed_by(a_side, to, payload: Payload) -> list[bytes]:
    a_side.send(to, encode_payload(payload), 0.0)
    return [data for _, data in a_side.datagrams_to_send()]


def test_the_gate_opens_decodes_and_counts():
    a, b, a_side, gate = gate_pair()
    state = gate.peers[a.peer_id]
    before = state.counters["datagrams_in"]
    (datagram,) = sealed_by(a_side, b.peer_id, Payload(acks=[bytes(32)]))
    peer, got = gate.open(datagram, A_ADDR, 0.0)
    assert peer == a.peer_id and list(got.acks) == [bytes(32)]
    assert state.counters["datagrams_in"] == before + 1
    assert gate.open(datagram, A_ADDR, 0.0) is None  # a replay
    assert gate.open(b"garbage", A_ADDR, 0.0) is None
    assert gate.open(b"\x01" + bytes(60), A_ADDR, 0.0) is None  # the retired static-key envelope
    assert gate.drops.counts["replay"] == 1 and gate.drops.counts["bad_version"] == 2


def test_a_plaintext_peer_is_opened_and_its_address_learned():
    a, b, a_codec, gate = gate_pair(plaintext=True)
    datagram = a_codec.seal(b.peer_id, encode_payload(Payload(acks=[bytes(32)])))
    peer, got = gate.open(datagram, A_ADDR, 0.0)
    assert peer == a.peer_id and gate.peers[a.peer_id].address == A_ADDR
    (reply, to), = gate.seal(a.peer_id, Payload(acks=[bytes(32)]), 0.0)
    assert to == A_ADDR and reply == b"\x02" + b.peer_id + datagram[33:]


def test_the_gate_splits_and_seals_what_goes_out():
    a, b, a_side, gate = gate_pair()
    big = Payload(messages=[Message(group_id=bytes(32), timestamp=1, body=b"x" * 300)
                            for _ in range(4)])
    datagrams = gate.seal(a.peer_id, big, 0.0)
    assert len(datagrams) > 1 and all(len(d) <= 600 and to == A_ADDR for d, to in datagrams)
    opened = [a_side.datagram_received(B_ADDR, d, 0.0) for d, _ in datagrams]
    assert {r.peer_id for r in opened} == {b.peer_id}


def test_the_gate_spends_the_byte_budget_only_after_authentication():
    a, b, a_side, gate = gate_pair(rate=1024)
    for _ in range(50):
        gate.open(b"\x06" + bytes(200), A_ADDR, 0.0)  # forged: not charged
    sealed = [d for _ in range(100) for d in sealed_by(a_side, b.peer_id, Payload(acks=[bytes(32)] * 30))]
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


def test_a_handshake_collision_is_counted_but_not_a_warning():
    """Both sides initiating at once is normal start-up: a debug line, while
    a real drop (a replay) stays a warning; both are counted."""
    a, b, a_side, gate = gate_pair()
    with structlog.testing.capture_logs() as logs:
        gate.drop("handshake_collision", A_ADDR, 0.0)
        gate.drop("replay", A_ADDR, 0.0)
    levels = {entry["reason"]: entry["log_level"] for entry in logs}
    assert levels == {"handshake_collision": "debug", "replay": "warning"}
    assert gate.drops.counts["handshake_collision"] == 1 and gate.drops.counts["replay"] == 1
