"""Session layer: handshake, transport, replay, rekey, collisions, retransmission (sans-IO)."""

from __future__ import annotations


from mvds.secure import sessionwire as sw
from mvds.secure.session import (
    JITTER_FRACTION,
    KEEP_PREVIOUS_S,
    MAX_RETRY_S,
    REKEY_TIMEOUT_S,
    STEADY_RETRIES,
    REJECT_AFTER_S,
    REKEY_AFTER_S,
    Received,
    SessionEstablished,
)
from sessionnet import pair


def test_first_send_handshakes_then_delivers_queued_payloads():
    net, a, b, a_addr, b_addr = pair()
    a.send(b.public, b"one", 0.0)
    a.send(b.public, b"two", 0.0)
    net.flush(0.0)
    assert [r.payload for r in net.received[b_addr]] == [b"one", b"two"]
    assert all(r.peer_id == a.public and r.addr == a_addr for r in net.received[b_addr])
    kinds = [d[0] for _, _, d in net.record]
    assert kinds[:2] == [sw.TYPE_INITIATION, sw.TYPE_RESPONSE]
    assert len(net.record[0][2]) == sw.INITIATION_SIZE and len(net.record[1][2]) == sw.RESPONSE_SIZE
    b.send(a.public, b"back", 0.1)
    net.flush(0.1)
    assert [r.payload for r in net.received[a_addr]] == [b"back"]
    assert any(isinstance(e, SessionEstablished) for e in net.events[b_addr])
    assert a.status(b.public, 0.1)["established"] and b.status(a.public, 0.1)["established"]


def test_nonces_start_at_zero_per_session_and_never_repeat_within_it():
    net, a, b, a_addr, b_addr = pair()
    for i in range(5):
        a.send(b.public, b"x%d" % i, 0.0)
    net.flush(0.0)
    counters = [sw.parse_transport_head(d) for s, _, d in net.record if d[0] == sw.TYPE_TRANSPORT and s == a_addr]
    assert [c for _, c in counters] == [0, 1, 2, 3, 4]


def test_a_replayed_transport_datagram_is_dropped():
    net, a, b, a_addr, b_addr = pair()
    a.send(b.public, b"once", 0.0)
    net.flush(0.0)
    data = next(d for s, _, d in net.record if d[0] == sw.TYPE_TRANSPORT and s == a_addr)
    assert b.datagram_received(a_addr, data, 1.0) is None
    assert b.counters["replay"] == 1
    assert len(net.received[b_addr]) == 1


def test_a_modified_transport_datagram_is_refused():
    net, a, b, a_addr, b_addr = pair()
    a.send(b.public, b"x", 0.0)
    net.flush(0.0)
    a.send(b.public, b"y", 0.1)
    (addr, data), = a.datagrams_to_send()
    forged = bytearray(data)
    forged[-1] ^= 1
    assert b.datagram_received(a_addr, bytes(forged), 0.1) is None
    assert b.counters["auth_failed"] == 1
    assert b.datagram_received(a_addr, data, 0.1) == Received(a.public, b"y", a_addr)


def test_rekey_after_120_s_keeps_the_previous_session_briefly():
    net, a, b, a_addr, b_addr = pair()
    a.send(b.public, b"x", 0.0)
    net.flush(0.0)
    first = a._peers[b.public].current
    # A datagram sealed on the old session but delivered after the rekey.
    a.send(b.public, b"late", REKEY_AFTER_S - 1)
    (late,) = a.datagrams_to_send()
    a.send(b.public, b"trigger", REKEY_AFTER_S)  # sent on the old session, then a new handshake
    net.flush(REKEY_AFTER_S)
    peer = a._peers[b.public]
    assert peer.current is not first and peer.previous is first and peer.rekeys == 1
    assert b.datagram_received(a_addr, late[1], REKEY_AFTER_S + 1) is not None  # in flight: accepted
    a.tick(REKEY_AFTER_S + KEEP_PREVIOUS_S + 0.1)
    assert peer.previous is None and first._seal is None  # erased
    b.tick(REKEY_AFTER_S + KEEP_PREVIOUS_S + 0.1)
    a.send(b.public, b"new", REKEY_AFTER_S + 20)
    net.flush(REKEY_AFTER_S + 20)
    assert net.received[b_addr][-1].payload == b"new"
    assert b.status(a.public, REKEY_AFTER_S + 20)["rekeys"] == 1


def test_nothing_is_sent_on_a_session_older_than_reject_after():
    net, a, b, a_addr, b_addr = pair()
    a.send(b.public, b"x", 0.0)
    net.flush(0.0)
    a.tick(REJECT_AFTER_S)
    b.tick(REJECT_AFTER_S)
    assert a._peers[b.public].current is None
    a.send(b.public, b"later", REJECT_AFTER_S + 1)
    out = a.datagrams_to_send()
    assert [d[0] for _, d in out] == [sw.TYPE_INITIATION]


def test_simultaneous_initiation_resolves_to_one_session():
    net, a, b, a_addr, b_addr = pair()
    a.send(b.public, b"from a", 0.0)
    b.send(a.public, b"from b", 0.0)
    net.flush(0.0)
    assert [r.payload for r in net.received[b_addr]] == [b"from a"]
    assert [r.payload for r in net.received[a_addr]] == [b"from b"]
    low, high = sorted((a, b), key=lambda m: m.public)
    assert low.counters["collision"] == 1 and high.counters["collision"] == 0
    sa, sb = a._peers[b.public].current, b._peers[a.public].current
    assert sa.local_index == sb.remote_index and sb.local_index == sa.remote_index
    assert sa.initiator != sb.initiator and low._peers[high.public].current.initiator


def test_lost_initiations_are_retried_with_backoff_and_jitter():
    net, a, b, a_addr, b_addr = pair()
    net.drop = lambda src, dst, data: True  # the link is down
    a.send(b.public, b"x", 0.0)
    times = []
    now = 0.0
    while now < 60.0:
        before = a.counters["handshake_initiated"]
        timer = a.next_timer()
        if timer is not None and timer <= now:
            a.tick(now)
        if a.counters["handshake_initiated"] > before or now == 0.0:
            times.append(now)
        net.flush(now)
        now = round(now + 0.01, 2)
    gaps = [b_ - a_ for a_, b_ in zip(times, times[1:])]
    # REKEY_TIMEOUT_S (0.25 s) STEADY_RETRIES (16) times, then doubling up
    # to MAX_RETRY_S (8 s) and 8 s from then on, each stretched by up to
    # JITTER_FRACTION (50%).
    bases = [REKEY_TIMEOUT_S] * STEADY_RETRIES
    while bases[-1] < MAX_RETRY_S:
        bases.append(min(bases[-1] * 2, MAX_RETRY_S))
    assert bases[STEADY_RETRIES:] == [0.5, 1, 2, 4, 8]
    bases += [MAX_RETRY_S] * 10
    assert len(gaps) >= STEADY_RETRIES + 5 + 2, gaps
    for gap, base in zip(gaps, bases):
        assert base <= gap <= base * (1 + JITTER_FRACTION) + 0.011, (gap, base)
    stretch = [gap / base - 1 for gap, base in zip(gaps, bases)]
    assert max(stretch) - min(stretch) > JITTER_FRACTION / 2, "the jitter spreads the retries"
    net.drop = lambda src, dst, data: False
    net.run(60.0, 80.0)
    assert [r.payload for r in net.received[b_addr]] == [b"x"]


def test_retry_gives_up_after_rekey_attempt_time_without_keepalive():
    net, a, b, a_addr, b_addr = pair()
    net.drop = lambda src, dst, data: True
    a.send(b.public, b"x", 0.0)
    net.run(0.0, 200.0, step=1.0)
    assert a.counters["handshake_gave_up"] == 1
    assert a._peers[b.public].pending is None and a.next_timer() is None


def test_each_session_has_fresh_ephemeral_keys():
    net, a, b, a_addr, b_addr = pair()
    a.send(b.public, b"x", 0.0)
    net.flush(0.0)
    a.tick(REJECT_AFTER_S); b.tick(REJECT_AFTER_S)
    a.send(b.public, b"y", REJECT_AFTER_S + 1)
    net.flush(REJECT_AFTER_S + 1)
    ephemerals = [d[8:40] for _, _, d in net.record if d[0] == sw.TYPE_INITIATION]
    assert len(ephemerals) == 2 and ephemerals[0] != ephemerals[1]
    assert [r.payload for r in net.received[b_addr]] == [b"x", b"y"]


def test_unknown_peer_initiation_is_refused():
    net, a, b, a_addr, b_addr = pair()
    stranger = net.add(("127.0.0.1", 1003), seed=3)
    stranger.add_peer(b.public, b_addr)
    stranger.send(b.public, b"hi", 0.0)
    net.flush(0.0)
    assert b.counters["unknown_peer"] == 1 and net.received[b_addr] == []


def test_rekey_after_messages_and_reject_before_the_counter_can_wrap():
    from mvds.secure.session import REJECT_AFTER_MESSAGES, REKEY_AFTER_MESSAGES

    net, a, b, a_addr, b_addr = pair()
    a.send(b.public, b"x", 0.0)
    net.flush(0.0)
    session = a._peers[b.public].current
    session.sent = REKEY_AFTER_MESSAGES  # as if 2^60 datagrams had been sent
    a.send(b.public, b"y", 1.0)
    out = a.datagrams_to_send()
    assert [d[0] for _, d in out] == [sw.TYPE_TRANSPORT, sw.TYPE_INITIATION]
    assert sw.parse_transport_head(out[0][1])[1] == REKEY_AFTER_MESSAGES
    session.sent = REJECT_AFTER_MESSAGES
    assert not session.usable(1.0)
    a.send(b.public, b"z", 1.0)  # queued for the new session, never sealed on the old one
    assert [d[0] for _, d in a.datagrams_to_send()] == []
    got = [b.datagram_received(a_addr, data, 1.0) for addr, data in out]
    assert got[0].payload == b"y"
    net.flush(1.0)
    assert net.received[b_addr][-1].payload == b"z"


def test_transport_for_an_unknown_index_is_dropped():
    net, a, b, a_addr, b_addr = pair()
    assert b.datagram_received(a_addr, sw.transport_head(12345, 0) + bytes(16), 0.0) is None
    assert b.counters["unknown_index"] == 1
