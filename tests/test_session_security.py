"""Session layer under attack: forward secrecy, handshake replay, floods, forged sources (sans-IO)."""

from __future__ import annotations

import itertools

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from mvds.secure import noise
from mvds.secure import sessionwire as sw
from mvds.secure.cookie import PER_SOURCE_BURST, PER_SOURCE_HPS, UNDER_LOAD_HPS, HandshakeLimiter
from mvds.secure.keys import direction_key
from mvds.secure.session import SessionManager
from sessionnet import pair


# -- forward secrecy -------------------------------------------------------------------------
def _attacker_keys(a, b) -> list[bytes]:
    """Every key an attacker holding both static private keys can derive without the ephemerals."""
    ss = a.identity.shared_secret(b.public)
    keys = [ss, direction_key(ss, a.public, b.public), direction_key(ss, b.public, a.public)]
    # The Noise chain as far as the statics reach: ck after "ss" alone, and its split.
    for pattern in ("IK", "IKpsk2"):
        sym = noise.SymmetricState(f"Noise_{pattern}_25519_ChaChaPoly_SHA256".encode())
        sym.mix_key(ss)
        keys.append(sym.ck)
        keys.extend(k.key for k in sym.split())
        keys.extend(noise.hkdf(ss, b"", 2))
        keys.extend(noise.hkdf(sym.ck, sw.NO_PSK, 3))
    return keys


def test_recorded_traffic_cannot_be_opened_with_both_static_private_keys():
    net, a, b, a_addr, b_addr = pair()
    secrets = [b"secret %d" % i for i in range(10)]
    for i, text in enumerate(secrets):
        a.send(b.public, text, float(i))
        b.send(a.public, text[::-1], float(i))
        net.flush(float(i))
    assert [r.payload for r in net.received[b_addr]] == secrets  # the traffic really flowed
    transport = [d for _, _, d in net.record if d[0] == sw.TYPE_TRANSPORT]
    assert len(transport) >= 20
    # The attacker now has both static private keys...
    keys = _attacker_keys(a, b)
    # ... and the handshake messages: it can replay the initiator's half
    # (es and ss use only static keys on the responder side) but not ee/se,
    # which need an ephemeral private key that was never stored.
    initiation = next(d for _, _, d in net.record if d[0] == sw.TYPE_INITIATION)
    responder = noise.HandshakeState(
        "IKpsk2", False, sw.PROLOGUE, noise.KeyPair(b.identity._private), psk=sw.NO_PSK
    )
    timestamp = responder.read_message(sw.parse_initiation(initiation)[1])
    assert len(timestamp) == 13  # the first message IS readable with the statics (as in WireGuard)
    keys.append(responder.ss.ck)
    keys.extend(k.key for k in noise.SymmetricState.split(responder.ss))
    opened = 0
    for data, key in itertools.product(transport, keys):
        _, counter = sw.parse_transport_head(data)
        for nonce in (sw.transport_nonce(counter), b"\0" * 4 + counter.to_bytes(8, "big")):
            for aad in (data[:16], b""):
                try:
                    ChaCha20Poly1305(key).decrypt(nonce, data[16:], aad)
                    opened += 1
                except Exception:
                    pass
    assert opened == 0
    # Control: with the real session keys (which live only in memory) they do open.
    session = b._peers[a.public].current
    sample = next(d for s, _, d in net.record if d[0] == sw.TYPE_TRANSPORT and s == a_addr)
    assert session.open(sw.parse_transport_head(sample)[1], sample) is not None


def test_keys_of_a_replaced_session_are_dropped():
    net, a, b, a_addr, b_addr = pair()
    a.send(b.public, b"x", 0.0)
    net.flush(0.0)
    old = a._peers[b.public].current
    a.tick(180.0)
    assert old._seal is None and old._open is None
    assert old.local_index not in a._sessions


# -- handshake replay ---------------------------------------------------------------------------
def test_a_replayed_initiation_is_refused_by_a_live_responder():
    net, a, b, a_addr, b_addr = pair()
    a.send(b.public, b"x", 0.0)
    net.flush(0.0)
    initiation = next(d for _, _, d in net.record if d[0] == sw.TYPE_INITIATION)
    before = b.state_size()
    b.datagram_received(("198.51.100.7", 9), initiation, 30.0)
    assert b.counters["handshake_replay"] == 1 and b.counters["handshake_responded"] == 1
    assert b.state_size()["sessions"] == before["sessions"]
    # B answers by initiating itself, to A's known path, not (beyond 3x) to the replayer.
    out = b.datagrams_to_send()
    assert [d[0] for _, d in out] == [sw.TYPE_INITIATION, sw.TYPE_INITIATION]
    assert {addr for addr, _ in out} == {a_addr, ("198.51.100.7", 9)}


def test_initiator_restarted_with_clock_behind_still_connects():
    """A restored/restarted A whose wall clock is a day behind: its initiations
    carry old timestamps, which the live B refuses as replays; B then initiates
    itself, and the pair has a session again within one round trip."""
    net, a, b, a_addr, b_addr = pair()
    a.send(b.public, b"before", 0.0)
    net.flush(0.0)
    identity = a.identity
    del net.nodes[a_addr]
    a2 = net.add(a_addr, identity=identity, seed=9, wall_offset=-86400.0)
    a2.add_peer(b.public, b_addr)
    a2.send(b.public, b"after restore", 10.0)
    net.flush(10.0)
    assert b.counters["handshake_replay"] == 1
    assert [r.payload for r in net.received[b_addr]] == [b"before", b"after restore"]


def test_responder_restart_forgets_timestamps_so_a_replay_gets_one_response_and_nothing_else():
    net, a, b, a_addr, b_addr = pair()
    a.send(b.public, b"x", 0.0)
    net.flush(0.0)
    initiation = next(d for _, _, d in net.record if d[0] == sw.TYPE_INITIATION)
    b2 = SessionManager(b.identity)
    b2.add_peer(a.public, a_addr)
    spoofed = ("203.0.113.5", 4000)
    b2.datagram_received(spoofed, initiation, 50.0)
    out = b2.datagrams_to_send()
    assert [(addr, len(d)) for addr, d in out] == [(spoofed, sw.RESPONSE_SIZE)]  # 92 for 149
    assert b2._peers[a.public].current is None  # unconfirmed: the replayer has no keys
    b2.datagram_received(spoofed, initiation, 51.0)
    assert b2.counters["handshake_replay"] == 1


# -- floods and cookies --------------------------------------------------------------------------
def test_spoofed_flood_at_10x_the_per_source_limit_costs_no_state_and_honest_peers_connect():
    net, a, b, a_addr, b_addr = pair()
    # The attacker knows B's public key (it is public), so its initiations pass mac1.
    attacker = SessionManager(noise_identity())
    attacker.add_peer(b.public, b_addr)
    seconds, sources = 2, 50
    rate = int(10 * PER_SOURCE_HPS)  # per source per second
    sent = 0
    for second in range(seconds):
        for k in range(rate):
            now = second + k / rate
            for s in range(sources):
                attacker._initiate(attacker._peers[b.public], now)
                (_, data), = attacker.datagrams_to_send()
                b.datagram_received((f"10.{s}.0.1", 1000 + k), data, now)
                sent += 1
    # The flood is 10x the per-source limit from each of 50 spoofed sources.
    assert sent == seconds * rate * sources == 5000
    served = b.counters["unknown_peer"] + b.counters["rate_limited"] + b.counters["handshake_failed"]
    assert b.counters["cookie_sent"] >= sent - (UNDER_LOAD_HPS * (seconds + 1))
    # Only initiations inside the node-wide budget reached the responder's DH.
    assert served <= UNDER_LOAD_HPS * (seconds + 1)
    # No state for any of it: no sessions, no pending handshakes, and per-source
    # buckets only for what passed the node-wide budget.
    size = b.state_size()
    assert size["sessions"] == 0 and size["pending"] == 0
    assert size["sources"] <= UNDER_LOAD_HPS * (seconds + 1)
    # While the flood runs, an honest peer still gets a session (cookie round trip).
    a.send(b.public, b"honest", 1.99)  # the flood's last initiation was at 1.98
    net.flush(1.99)
    assert [r.payload for r in net.received[b_addr]] == [b"honest"]
    assert a.counters["cookie_received"] >= 1


def noise_identity():
    from mvds.secure import Identity
    return Identity.generate()


def test_responder_dh_calls_are_bounded_under_a_flood(monkeypatch):
    """Count only B's DH: every initiation the flood sends is pre-built."""
    net, a, b, a_addr, b_addr = pair()
    attacker = SessionManager(noise_identity())
    attacker.add_peer(b.public, b_addr)
    floods = []
    for i in range(1000):
        attacker._initiate(attacker._peers[b.public], 0.0)
        floods.append(attacker.datagrams_to_send()[0][1])
    calls = {"dh": 0}
    real = noise.dh

    def counting(private, public):
        calls["dh"] += 1
        return real(private, public)

    monkeypatch.setattr(noise, "dh", counting)
    for i, data in enumerate(floods):
        now = i / 500  # 500 initiations/s for 2 s from 10 spoofed sources
        b.datagram_received((f"10.0.{i % 10}.1", 2000), data, now)
    assert 500 / 10 == 10 * PER_SOURCE_HPS  # each source at 10x its limit
    budget = UNDER_LOAD_HPS * 3  # burst + 2 s of refill
    # An unknown initiator is refused after one DH (es) and the static decryption.
    assert calls["dh"] <= budget * 1
    assert b.counters["cookie_sent"] >= 1000 - budget
    assert b.state_size()["sessions"] == 0


def test_per_source_limit_is_counted():
    limiter = HandshakeLimiter(under_load_hps=1000)
    allowed = sum(limiter.source_allows(("10.0.0.1", p), 0.0) for p in range(100))
    assert allowed == PER_SOURCE_BURST
    assert limiter.sources_tracked == 1


def test_a_cookie_is_bound_to_the_source_address():
    net, a, b, a_addr, b_addr = pair(limiter=None)
    b._limiter = HandshakeLimiter(under_load_hps=0.001)  # always under load
    b._limiter._global._tokens = 0
    a.send(b.public, b"x", 0.0)
    net.flush(0.0)
    assert [r.payload for r in net.received[b_addr]] == [b"x"]  # via the cookie retry
    # The same mac2 from another address is not accepted.
    initiation = [d for s, _, d in net.record if d[0] == sw.TYPE_INITIATION][-1]
    assert initiation[-16:] != bytes(16)
    assert not b._cookies.valid_mac2(initiation, ("127.0.0.9", 1001), 0.0)
    assert b._cookies.valid_mac2(initiation, a_addr, 0.0)
