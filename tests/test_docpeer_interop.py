"""docpeer (written from docs/PROTOCOL.md alone) and mvds understand each other.

If one of these fails, either mvds broke compatibility or the document does
not say what mvds does.
"""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interop import docpeer
from interop.docvectors import doc_vectors, session_vectors
from mvds.engine import Engine, EngineConfig, MessageAcknowledged, MessageReceived
from mvds.secure import EnvelopeCodec, EnvelopeError, Identity
from mvds.store.memory import MemoryStore
from mvds.wire import Message, Payload, decode_payload, encode_payload

VECTORS = doc_vectors()
ALICE_PRIVATE = VECTORS["alice_private"]
BOB_PRIVATE = VECTORS["bob_private"]


# --- docpeer against the document's vectors (no mvds involved) -------------


def test_docpeer_reproduces_the_documented_keys_and_datagrams():
    alice = docpeer.DocIdentity(ALICE_PRIVATE)
    bob = docpeer.DocIdentity(BOB_PRIVATE)
    assert alice.public == VECTORS["alice_public"] and bob.public == VECTORS["bob_public"]
    shared = alice.shared(bob.public)
    assert shared == VECTORS["shared_secret"]
    assert docpeer.direction_key(shared, alice.public, bob.public) == VECTORS["key_alice_to_bob"]
    assert docpeer.direction_key(shared, bob.public, alice.public) == VECTORS["key_bob_to_alice"]

    link = docpeer.DocLink(alice, bob.public)
    assert link.seal(VECTORS["payload"], counter=0x0102030405060708) == VECTORS["sealed_alice_to_bob"]
    back = docpeer.DocLink(bob, alice.public)
    assert back.seal(b"", counter=42) == VECTORS["sealed_hello_bob_to_alice"]
    plain = docpeer.DocLink(alice, bob.public, plaintext=True)
    assert plain.seal(VECTORS["payload"]) == VECTORS["plaintext_alice_to_bob"]

    assert back.open(VECTORS["sealed_alice_to_bob"]) == (alice.public, VECTORS["payload"])
    decoded = docpeer.decode_payload(VECTORS["payload"])
    assert decoded.acks == [b"\x11" * 32] and decoded.offers == [b"\x22" * 32]
    assert decoded.requests == [b"\x33" * 32]
    (message,) = decoded.messages
    assert (message.timestamp, message.body, message.parents) == (
        1700000000,
        b"hello world",
        [bytes(range(32, 64))],
    )
    assert message.id == VECTORS["message_id"]
    assert docpeer.encode_payload(decoded) == VECTORS["payload"]
    edge = docpeer.decode_payload(VECTORS["edge_payload"])
    assert [(m.timestamp, m.body, m.ephemeral) for m in edge.messages] == [
        (0, b"", True),
        (-1, b"x", False),
    ]
    assert docpeer.encode_payload(edge) == VECTORS["edge_payload"]
    assert docpeer.group_id("general") == VECTORS["group_id_general"]


# --- docpeer against mvds ----------------------------------------------------------

ids = st.binary(min_size=32, max_size=32)
doc_messages = st.builds(
    docpeer.DocMessage,
    group_id=ids,
    timestamp=st.integers(-(2**63), 2**63 - 1),
    body=st.binary(max_size=300),
    parents=st.lists(ids, max_size=3),
    ephemeral=st.booleans(),
)
doc_payloads = st.builds(
    docpeer.DocPayload,
    acks=st.lists(ids, max_size=4),
    offers=st.lists(ids, max_size=4),
    requests=st.lists(ids, max_size=4),
    messages=st.lists(doc_messages, max_size=3),
)


def as_mvds(payload: docpeer.DocPayload) -> Payload:
    return Payload(
        acks=list(payload.acks),
        offers=list(payload.offers),
        requests=list(payload.requests),
        messages=[
            Message(m.group_id, m.timestamp, m.body, m.parents, m.ephemeral)
            for m in payload.messages
        ],
    )


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory):
    """mvds's codec for Bob; docpeer links for Alice (sealed and plaintext)."""
    directory = tmp_path_factory.mktemp("interop")
    bob = Identity.from_private_bytes(BOB_PRIVATE)
    alice = docpeer.DocIdentity(ALICE_PRIVATE)
    carol = docpeer.DocIdentity.generate()
    codec = EnvelopeCodec(bob)
    codec.add_peer(alice.public)
    codec.add_peer(carol.public, plaintext=True)
    return {
        "codec": codec,
        "bob": bob,
        "sealed": docpeer.DocLink(alice, bob.peer_id),
        "plain": docpeer.DocLink(carol, bob.peer_id, plaintext=True),
    }


def test_docpeer_sealed_datagrams_are_the_retired_envelope(endpoints):
    """docpeer's sealed mode is type 0x01, retired: mvds drops it as bad_version."""
    with pytest.raises(EnvelopeError, match="bad_version"):
        endpoints["codec"].open(endpoints["sealed"].seal(b""))


@given(payload=doc_payloads)
def test_docpeer_plaintext_datagrams_open_in_mvds(endpoints, payload):
    link = endpoints["plain"]
    sender, data = endpoints["codec"].open(link.seal(docpeer.encode_payload(payload)))
    assert sender == link.me.public
    assert decode_payload(data) == as_mvds(payload)


@given(payload=doc_payloads)
def test_mvds_datagrams_open_in_docpeer(endpoints, payload):
    codec, bob = endpoints["codec"], endpoints["bob"]
    for kind in ("plain",):
        link = endpoints[kind]
        datagram = codec.seal(link.me.public, encode_payload(as_mvds(payload)))
        sender, data = link.open(datagram)
        assert sender == bob.peer_id
        assert docpeer.decode_payload(data) == payload


def test_both_sides_refuse_the_same_bad_datagrams(endpoints):
    codec, link = endpoints["codec"], endpoints["sealed"]
    # A plaintext envelope from a peer not configured for plaintext.
    with pytest.raises(EnvelopeError, match="plaintext_refused"):
        codec.open(b"\x02" + link.me.public)
    with pytest.raises(EnvelopeError, match="truncated"):
        codec.open(b"\x02" + link.me.public[:10])


# --- over real UDP: docpeer syncs a message with an mvds engine ---------------------


def test_docpeer_and_an_mvds_engine_sync_over_udp(tmp_path):
    """docpeer sends a MESSAGE, the engine ACKs it; the engine sends one back."""
    group = docpeer.group_id("interop")
    bob = Identity.generate()
    doc = docpeer.DocPeer(docpeer.DocIdentity.generate())
    link = docpeer.DocLink(doc.me, bob.peer_id, plaintext=True)
    codec = EnvelopeCodec(bob)
    codec.add_peer(doc.me.public, plaintext=True)
    engine = Engine(MemoryStore(), EngineConfig(), now=0.0)
    engine.share(group, doc.me.public, now=0.0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    try:
        message = docpeer.DocMessage(group, 1700000000, b"from the document")
        doc.send(link, sock.getsockname(), docpeer.DocPayload(messages=[message]))

        datagram, source = sock.recvfrom(65535)
        assert source == doc.address
        sender, data = codec.open(datagram)
        engine.receive(sender, decode_payload(data), now=1.0)
        received = [e for e in engine.events() if isinstance(e, MessageReceived)]
        assert [e.message.body for e in received] == [b"from the document"]
        assert received[0].message.id == message.id

        engine.append(group, b"from mvds", now=1.0)
        for peer, payload in engine.payloads_to_send(now=1.0):
            sock.sendto(codec.seal(peer, encode_payload(payload)), doc.address)

        _, reply = doc.receive({bob.peer_id: link}, timeout=5)
        assert reply.acks == [message.id]  # the engine ACKs the MESSAGE
        (back,) = reply.messages
        assert back.body == b"from mvds" and back.parents == [message.id]

        doc.send(link, sock.getsockname(), docpeer.DocPayload(acks=[back.id]))
        sender, data = codec.open(sock.recvfrom(65535)[0])
        engine.receive(sender, decode_payload(data), now=2.0)
        assert any(isinstance(e, MessageAcknowledged) for e in engine.events())
        assert engine.is_quiet()
    finally:
        sock.close()
        doc.close()


def test_docpeer_is_independent_of_mvds():
    """Clean room: docpeer imports only the standard library and cryptography."""
    import ast
    import sys

    tree = ast.parse(open(docpeer.__file__).read())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert roots - {"__future__", "cryptography"} <= set(sys.stdlib_module_names)


def test_unknown_and_mistyped_fields_are_skipped_alike():
    """Section 10.2's decoding rules, with fields no encoder here produces."""
    ident = bytes(range(32))
    group = bytes(range(32, 64))
    message = (
        b"\x0a\x20" + group
        + b"\x78\x07"  # field 15, varint: unknown
        + b"\x10\x05"
        + b"\x22\x04\x10\x01\x18\x02"  # metadata {ephemeral; unknown field 3}
        + b"\x22\x22\x0a\x20" + ident  # a second metadata: merged
        + b"\x10\x06"  # timestamp again: the last wins
    )
    data = (
        b"\x08\x05"  # field 1 as a varint: wrong wire type, skipped
        + b"\x81\x01" + bytes(8)  # field 16, fixed64: unknown
        + b"\x0a\x20" + ident
        + b"\x22" + bytes([len(message)]) + message
        + b"\x1a\x20" + ident
        + b"\xfd\x06" + bytes(4)  # field 111, fixed32: unknown
    )
    ours = decode_payload(data)
    theirs = docpeer.decode_payload(data)
    assert ours.acks == theirs.acks == [ident]
    assert ours.requests == theirs.requests == [ident]
    (m,) = ours.messages
    (d,) = theirs.messages
    assert (m.group_id, m.timestamp, m.ephemeral, list(m.parents)) == (group, 6, True, [ident])
    assert (d.group_id, d.timestamp, d.ephemeral, d.parents) == (group, 6, True, [ident])


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a\x1f" + bytes(31),  # a 31-byte ack
        b"\x22\x02\x0a\x00",  # a message with an empty group id
        b"\x22\x26\x0a\x20" + bytes(32) + b"\x22\x02\x0a\x00",  # an empty parent id
        b"\x0a\x20" + bytes(10),  # truncated
        b"\x0a",  # a key without a value
    ],
)
def test_malformed_payloads_are_refused_by_both(data):
    from mvds.wire import WireError

    with pytest.raises(WireError):
        decode_payload(data)
    with pytest.raises(docpeer.MalformedPayload):
        docpeer.decode_payload(data)


# --- sessions: docpeer's DocSession against the document's session vectors --------




def test_docpeer_sessions_reproduce_the_documented_handshake_and_transport():
    S = session_vectors()
    alice = docpeer.DocIdentity(ALICE_PRIVATE)
    bob = docpeer.DocIdentity(BOB_PRIVATE)
    initiator = docpeer.DocSession(alice, bob.public)
    init = initiator.initiation(ephemeral=S["alice_ephemeral_private"], timestamp=S["timestamp"],
                                index=0x11223344)
    assert init == S["initiation_alice_to_bob"]
    responder = docpeer.DocSession(bob, alice.public)
    response = responder.on_initiation(init, ephemeral=S["bob_ephemeral_private"], index=0x55667788)
    assert response == S["response_bob_to_alice"]
    assert initiator.on_response(response)
    assert initiator._frame(b"\x00hello") == S["transport_alice_to_bob"]
    assert responder.open(S["transport_alice_to_bob"]) == (alice.public, b"hello")
    assert responder.keepalive() == S["keepalive_bob_to_alice"]
    assert initiator.open_frame(S["keepalive_bob_to_alice"]) == b""
    # A replayed initiation is refused (the timestamp is not above the greatest seen).
    assert responder.on_initiation(init) is None


def test_docpeer_sessions_and_the_mvds_session_layer_talk_both_ways():
    from mvds.secure.session import SessionManager

    me = docpeer.DocIdentity.generate()
    node = Identity.generate()
    addr = ("127.0.0.1", 9)
    for docpeer_initiates in (True, False):
        mgr = SessionManager(node, keepalive_s=0)
        mgr.add_peer(me.public, addr)
        link = docpeer.DocSession(me, node.peer_id)
        if docpeer_initiates:
            mgr.datagram_received(addr, link.initiation(), 0.0)
            (response,) = [d for _, d in mgr.datagrams_to_send()]
            assert link.on_response(response)
        else:
            mgr.send(me.public, b"queued", 0.0)
            (initiation,) = [d for _, d in mgr.datagrams_to_send()]
            mgr.datagram_received(addr, link.on_initiation(initiation), 0.0)
            (confirm,) = [d for _, d in mgr.datagrams_to_send()]
            assert link.open(confirm) == (node.peer_id, b"queued")
        got = mgr.datagram_received(addr, link.seal(b"from docpeer"), 0.0)
        assert got.peer_id == me.public and got.payload == b"from docpeer"
        mgr.send(me.public, b"from mvds", 0.0)
        (datagram,) = [d for _, d in mgr.datagrams_to_send()]
        assert link.open(datagram) == (node.peer_id, b"from mvds")
        with pytest.raises(docpeer.DocPeerError, match="replay"):
            link.open(datagram)
