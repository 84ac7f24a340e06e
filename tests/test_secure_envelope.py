"""The plaintext envelope (0x02) and the retired static-key one (0x01): round
trips, and every way a datagram is refused.  Sessions (0x03-0x06) have their
own tests (tests/test_session_*.py)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mvds.secure import (
    MAX_DATAGRAM_SIZE,
    PLAINTEXT_OVERHEAD,
    REASONS,
    EnvelopeCodec,
    EnvelopeError,
    Identity,
)
from mvds.wire import Message, Payload, decode_payload, encode_payload

ALICE = Identity.from_private_bytes(bytes(range(1, 33)))
BOB = Identity.from_private_bytes(bytes(range(101, 133)))
CAROL = Identity.from_private_bytes(bytes(range(201, 233)))


def codec(identity, *peers, plaintext=()):
    c = EnvelopeCodec(identity)
    for peer in peers:
        c.add_peer(peer.peer_id, plaintext=peer in plaintext)
    return c


@pytest.fixture
def pair():
    return codec(ALICE, BOB, plaintext=[BOB]), codec(BOB, ALICE, plaintext=[ALICE])


def reason(call, *args):
    with pytest.raises(EnvelopeError) as info:
        call(*args)
    assert info.value.reason in REASONS
    return info.value.reason


def test_round_trip_of_a_real_payload_both_ways(pair):
    alice, bob = pair
    payload = Payload(messages=[Message(bytes(32), 1700000000, b"hello")], acks=[bytes(32)])
    datagram = alice.seal(BOB.peer_id, encode_payload(payload))
    assert len(datagram) == len(encode_payload(payload)) + PLAINTEXT_OVERHEAD
    sender, data = bob.open(datagram)
    assert sender == ALICE.peer_id and decode_payload(data) == payload
    assert alice.open(bob.seal(ALICE.peer_id, b"")) == (BOB.peer_id, b"")


def test_plaintext_only_between_peers_configured_for_it():
    alice = codec(ALICE, BOB, plaintext=[BOB])
    bob_plain = codec(BOB, ALICE, plaintext=[ALICE])
    bob_sessions = codec(BOB, ALICE)
    datagram = alice.seal(BOB.peer_id, b"\x0a\x20" + bytes(32))
    assert datagram == b"\x02" + ALICE.peer_id + b"\x0a\x20" + bytes(32)
    assert alice.overhead(BOB.peer_id) == PLAINTEXT_OVERHEAD
    assert bob_plain.open(datagram) == (ALICE.peer_id, b"\x0a\x20" + bytes(32))
    assert reason(bob_sessions.open, datagram) == "plaintext_refused"
    # A session peer is never sealed here.
    assert reason(bob_sessions.seal, ALICE.peer_id, b"") == "unknown_peer"
    # Plaintext from a stranger is unknown_peer.
    assert reason(codec(CAROL, BOB).open, datagram) == "unknown_peer"


def test_the_retired_static_key_envelope_and_unknown_types(pair):
    _, bob = pair
    assert reason(bob.open, b"") == "truncated"
    assert reason(bob.open, b"\x02" + bytes(5)) == "truncated"
    # 0x01: the static-key envelope with durable counters, retired (docs/PROTOCOL.md).
    with pytest.raises(EnvelopeError, match="retired"):
        bob.open(b"\x01" + ALICE.peer_id + bytes(60))
    for kind in (0x00, 0x01, 0x0A, 0x12, 0xFF):  # 0x0a: a bare Go-style Payload
        assert reason(bob.open, bytes([kind]) + ALICE.peer_id + bytes(40)) == "bad_version"


def test_peer_management_errors():
    alice = codec(ALICE)
    with pytest.raises(ValueError, match="itself"):
        alice.add_peer(ALICE.peer_id)
    with pytest.raises(ValueError, match="not a usable X25519 public key"):
        alice.add_peer(bytes(32))
    with pytest.raises(ValueError, match="32 bytes"):
        alice.add_peer(b"short")
    assert alice.peers() == []


def test_payload_too_big_for_udp_is_refused(pair):
    alice, _ = pair
    alice.seal(BOB.peer_id, bytes(MAX_DATAGRAM_SIZE - PLAINTEXT_OVERHEAD))
    with pytest.raises(ValueError, match="UDP carries at most"):
        alice.seal(BOB.peer_id, bytes(MAX_DATAGRAM_SIZE - PLAINTEXT_OVERHEAD + 1))


@given(
    st.binary(max_size=300)
    | st.builds(
        lambda kind, sender, rest: bytes([kind]) + sender + rest,
        st.sampled_from([0x01, 0x02]),
        st.sampled_from([ALICE.peer_id, CAROL.peer_id, bytes(32)]),
        st.binary(max_size=200),
    )
)
def test_open_on_arbitrary_bytes_raises_only_envelope_error(data):
    bob = codec(BOB, ALICE, CAROL, plaintext=[CAROL])
    try:
        sender, payload = bob.open(data)
    except EnvelopeError as exc:
        assert exc.reason in REASONS
    else:
        # Only plaintext from the plaintext peer gets through.
        assert data[0] == 0x02 and sender == CAROL.peer_id == data[1:33]
        assert payload == data[33:]


def test_open_accepts_any_bytes_like_datagram(pair):
    alice, bob = pair
    for wrap in (bytearray, memoryview):
        assert bob.open(wrap(alice.seal(BOB.peer_id, b"x"))) == (ALICE.peer_id, b"x")
