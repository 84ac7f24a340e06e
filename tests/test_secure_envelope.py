"""The datagram envelope: round trips, and every way a datagram is refused."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mvds.secure import (
    MAX_DATAGRAM_SIZE,
    PLAINTEXT_OVERHEAD,
    REASONS,
    SEALED_OVERHEAD,
    EnvelopeCodec,
    EnvelopeError,
    Identity,
    NonceCounter,
)
from mvds.wire import Message, Payload, decode_payload, encode_payload

ALICE = Identity.from_private_bytes(bytes(range(1, 33)))
BOB = Identity.from_private_bytes(bytes(range(101, 133)))
CAROL = Identity.from_private_bytes(bytes(range(201, 233)))


def codec(tmp_path, identity, *peers, plaintext=(), name=None):
    nonces = NonceCounter(tmp_path / f"{name or identity.peer_id_hex[:8]}.nonce")
    c = EnvelopeCodec(identity, nonces)
    for peer in peers:
        c.add_peer(peer.peer_id, plaintext=peer in plaintext)
    return c


@pytest.fixture
def pair(tmp_path):
    return codec(tmp_path, ALICE, BOB), codec(tmp_path, BOB, ALICE)


def reason(call, *args):
    with pytest.raises(EnvelopeError) as info:
        call(*args)
    assert info.value.reason in REASONS
    return info.value.reason


def test_round_trip_of_a_real_payload_both_ways(pair):
    alice, bob = pair
    payload = Payload(
        acks=[b"a" * 32],
        offers=[b"o" * 32],
        requests=[b"r" * 32],
        messages=[Message(b"g" * 32, 1700000000, b"hello", [b"p" * 32])],
    )
    datagram = alice.seal(BOB.peer_id, encode_payload(payload))
    assert datagram[0] == 0x01 and datagram[1:33] == ALICE.peer_id
    assert b"hello" not in datagram
    assert len(datagram) == len(encode_payload(payload)) + SEALED_OVERHEAD
    sender, data = bob.open(datagram)
    assert sender == ALICE.peer_id
    assert decode_payload(data) == payload
    sender, data = alice.open(bob.seal(ALICE.peer_id, b""))
    assert (sender, data) == (BOB.peer_id, b"")


def test_directions_use_different_keys(pair):
    alice, bob = pair
    datagram = alice.seal(BOB.peer_id, b"x" * 40)
    # Reflected back to its sender, it cannot authenticate: the claimed
    # sender is Alice herself, who is not her own peer.
    assert reason(alice.open, datagram) == "unknown_peer"
    forged = datagram[:1] + BOB.peer_id + datagram[33:]
    assert reason(alice.open, forged) == "auth_failed"


def test_counters_increase_and_never_repeat(pair):
    alice, _ = pair
    counters = [int.from_bytes(alice.seal(BOB.peer_id, b"")[33:41], "big") for _ in range(50)]
    assert counters == sorted(set(counters))


@given(index=st.integers(0, 10_000), flip=st.integers(1, 255))
def test_tampering_with_any_byte_is_refused(tmp_path_factory, index, flip):
    tmp_path = tmp_path_factory.mktemp("tamper")
    alice, bob = codec(tmp_path, ALICE, BOB), codec(tmp_path, BOB, ALICE)
    datagram = bytearray(alice.seal(BOB.peer_id, b"some payload bytes" * 3))
    index %= len(datagram)
    datagram[index] ^= flip
    got = reason(bob.open, bytes(datagram))
    if index == 0:
        assert got in ("bad_version", "plaintext_refused")
    elif index < 33:
        assert got == "unknown_peer"
    else:
        assert got == "auth_failed"


@given(cut=st.integers(0, 200))
def test_truncation_is_refused(tmp_path_factory, cut):
    tmp_path = tmp_path_factory.mktemp("cut")
    alice, bob = codec(tmp_path, ALICE, BOB), codec(tmp_path, BOB, ALICE)
    datagram = alice.seal(BOB.peer_id, b"p" * 100)
    cut %= len(datagram)
    got = reason(bob.open, datagram[:cut])
    assert got == ("truncated" if cut < SEALED_OVERHEAD else "auth_failed")


def test_forged_sender_id_fails_authentication(tmp_path):
    """Carol seals for Bob with her keys but claims to be Alice."""
    bob = codec(tmp_path, BOB, ALICE, CAROL)
    carol = codec(tmp_path, CAROL, BOB)
    datagram = carol.seal(BOB.peer_id, b"trust me")
    forged = datagram[:1] + ALICE.peer_id + datagram[33:]
    assert reason(bob.open, forged) == "auth_failed"
    assert bob.open(datagram) == (CAROL.peer_id, b"trust me")


def test_unknown_peer_is_refused_before_decryption(tmp_path):
    alice = codec(tmp_path, ALICE, BOB)
    bob = codec(tmp_path, BOB)  # does not know Alice
    assert reason(bob.open, alice.seal(BOB.peer_id, b"hi")) == "unknown_peer"
    # Garbage "ciphertext" from an unknown sender is still unknown_peer,
    # not auth_failed: the sender is looked up first.
    assert reason(bob.open, b"\x01" + ALICE.peer_id + bytes(100)) == "unknown_peer"
    assert reason(alice.seal, CAROL.peer_id, b"x") == "unknown_peer"


def test_replay_is_refused_and_checked_before_decryption(pair):
    alice, bob = pair
    datagram = alice.seal(BOB.peer_id, b"once")
    assert bob.open(datagram) == (ALICE.peer_id, b"once")
    assert reason(bob.open, datagram) == "replay"
    # The same counter with a damaged tag: refused as a replay without
    # spending a decryption on it.
    damaged = datagram[:-1] + bytes([datagram[-1] ^ 1])
    assert reason(bob.open, damaged) == "replay"


def test_forgery_does_not_advance_the_window(pair):
    alice, bob = pair
    genuine = alice.seal(BOB.peer_id, b"genuine")
    counter = int.from_bytes(genuine[33:41], "big")
    forged = genuine[:33] + (counter + 10**6).to_bytes(8, "big") + genuine[41:]
    assert reason(bob.open, forged) == "auth_failed"
    assert bob.open(genuine) == (ALICE.peer_id, b"genuine")


def test_reordered_datagrams_within_the_window_are_accepted_once(pair):
    alice, bob = pair
    datagrams = [alice.seal(BOB.peer_id, bytes([i])) for i in range(30)]
    for i, datagram in reversed(list(enumerate(datagrams))):
        assert bob.open(datagram) == (ALICE.peer_id, bytes([i]))
    for datagram in datagrams:
        assert reason(bob.open, datagram) == "replay"


def test_too_old_datagram_is_refused(tmp_path):
    alice = codec(tmp_path, ALICE, BOB)
    bob = EnvelopeCodec(BOB, NonceCounter(tmp_path / "b.nonce"), window_size=64)
    bob.add_peer(ALICE.peer_id)
    old = alice.seal(BOB.peer_id, b"old")
    recent = [alice.seal(BOB.peer_id, b"new") for _ in range(64)]
    for datagram in recent:
        bob.open(datagram)
    assert reason(bob.open, old) == "replay"


def test_replay_state_survives_a_restart_of_the_receiver(tmp_path):
    alice = codec(tmp_path, ALICE, BOB)
    bob = codec(tmp_path, BOB, ALICE)
    delivered = [alice.seal(BOB.peer_id, b"%d" % i) for i in range(5)]
    late = alice.seal(BOB.peer_id, b"late")  # in flight when Bob restarts
    for datagram in delivered:
        bob.open(datagram)
    saved = bob.export_replay_state()
    assert set(saved) == {ALICE.peer_id}

    restarted = codec(tmp_path, BOB, name="bob2")
    restarted.import_replay_state(saved)
    restarted.add_peer(ALICE.peer_id)  # windows imported first or later both work
    for datagram in delivered:
        assert reason(restarted.open, datagram) == "replay"
    assert restarted.open(late) == (ALICE.peer_id, b"late")
    assert restarted.open(alice.seal(BOB.peer_id, b"next"))[1] == b"next"


def test_changed_only_export_reports_each_change_once(pair):
    alice, bob = pair
    assert bob.export_replay_state(changed_only=True) == {}
    bob.open(alice.seal(BOB.peer_id, b"1"))
    first = bob.export_replay_state(changed_only=True)
    assert list(first) == [ALICE.peer_id]
    assert bob.export_replay_state(changed_only=True) == {}
    assert bob.export_replay_state() == first


def test_removed_and_readded_peer_keeps_its_replay_window(pair):
    alice, bob = pair
    datagram = alice.seal(BOB.peer_id, b"x")
    bob.open(datagram)
    bob.remove_peer(ALICE.peer_id)
    assert reason(bob.open, alice.seal(BOB.peer_id, b"y")) == "unknown_peer"
    bob.add_peer(ALICE.peer_id)
    assert reason(bob.open, datagram) == "replay"


def test_malformed_imported_state_names_the_peer(pair):
    _, bob = pair
    with pytest.raises(ValueError, match=ALICE.peer_id_hex):
        bob.import_replay_state({ALICE.peer_id: b"garbage"})


def test_plaintext_only_between_peers_configured_for_it(tmp_path):
    alice = codec(tmp_path, ALICE, BOB, plaintext=[BOB])
    bob_plain = codec(tmp_path, BOB, ALICE, plaintext=[ALICE], name="bp")
    bob_sealed = codec(tmp_path, BOB, ALICE, name="bs")
    datagram = alice.seal(BOB.peer_id, b"\x0a\x20" + bytes(32))
    assert datagram == b"\x02" + ALICE.peer_id + b"\x0a\x20" + bytes(32)
    assert alice.overhead(BOB.peer_id) == PLAINTEXT_OVERHEAD
    assert bob_plain.overhead(ALICE.peer_id) == PLAINTEXT_OVERHEAD
    assert bob_sealed.overhead(ALICE.peer_id) == SEALED_OVERHEAD
    assert bob_plain.open(datagram) == (ALICE.peer_id, b"\x0a\x20" + bytes(32))
    assert reason(bob_sealed.open, datagram) == "plaintext_refused"
    # Plaintext from a stranger is unknown_peer, whatever its mode.
    assert reason(codec(tmp_path, CAROL, BOB).open, datagram) == "unknown_peer"
    # A sealed datagram authenticates its sender, so a plaintext peer may send one.
    sealed_alice = codec(tmp_path, ALICE, BOB, name="as")
    assert bob_plain.open(sealed_alice.seal(BOB.peer_id, b"s")) == (ALICE.peer_id, b"s")


def test_unknown_types_and_empty_datagrams(pair):
    _, bob = pair
    assert reason(bob.open, b"") == "truncated"
    assert reason(bob.open, b"\x02" + bytes(5)) == "truncated"
    for kind in (0x00, 0x03, 0x0A, 0x12, 0xFF):  # 0x0a: a bare Go-style Payload
        assert reason(bob.open, bytes([kind]) + ALICE.peer_id + bytes(40)) == "bad_version"


def test_peer_management_errors(tmp_path):
    alice = codec(tmp_path, ALICE)
    with pytest.raises(ValueError, match="itself"):
        alice.add_peer(ALICE.peer_id)
    with pytest.raises(ValueError, match="not a usable X25519 public key"):
        alice.add_peer(bytes(32))
    with pytest.raises(ValueError, match="32 bytes"):
        alice.add_peer(b"short")
    assert alice.peers() == []


def test_payload_too_big_for_udp_is_refused(pair):
    alice, _ = pair
    alice.seal(BOB.peer_id, bytes(MAX_DATAGRAM_SIZE - SEALED_OVERHEAD))
    with pytest.raises(ValueError, match="UDP carries at most"):
        alice.seal(BOB.peer_id, bytes(MAX_DATAGRAM_SIZE - SEALED_OVERHEAD + 1))


@pytest.fixture(scope="module")
def bob_for_fuzz(tmp_path_factory):
    bob = codec(tmp_path_factory.mktemp("fuzz"), BOB, ALICE, CAROL, plaintext=[CAROL])
    # A real window state, so the replay check runs against history too.
    alice = codec(tmp_path_factory.mktemp("fuzz-alice"), ALICE, BOB)
    bob.open(alice.seal(BOB.peer_id, b"seen"))
    return bob


@given(
    st.binary(max_size=300)
    | st.builds(
        lambda kind, sender, rest: bytes([kind]) + sender + rest,
        st.sampled_from([0x01, 0x02]),
        st.sampled_from([ALICE.peer_id, CAROL.peer_id, bytes(32)]),
        st.binary(max_size=200),
    )
)
def test_open_on_arbitrary_bytes_raises_only_envelope_error(bob_for_fuzz, data):
    try:
        sender, payload = bob_for_fuzz.open(data)
    except EnvelopeError as exc:
        assert exc.reason in REASONS
    else:
        # Only plaintext from the plaintext peer can get through unsealed.
        assert data[0] == 0x02 and sender == CAROL.peer_id == data[1:33]
        assert payload == data[33:]


def test_open_accepts_any_bytes_like_datagram(pair):
    alice, bob = pair
    for wrap in (bytearray, memoryview):
        assert bob.open(wrap(alice.seal(BOB.peer_id, b"x"))) == (ALICE.peer_id, b"x")
