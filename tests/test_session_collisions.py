"""Session layer on bursty, lossy links: crossing handshakes, lost confirmations,
the radio coming back, the retry schedule (sans-IO, a fake clock)."""

from __future__ import annotations

from mvds.secure import sessionwire as sw
from mvds.secure.session import KEEP_PREVIOUS_S, MAX_RETRY_S
from sessionnet import pair


def _out(manager):
    return manager.datagrams_to_send()


def _deliver(net, src_manager, dst_manager, datagrams, now):
    """Hand ``datagrams`` (from ``src_manager``) to ``dst_manager``; the payloads it got."""
    src = net.addr_of(src_manager)
    got = []
    for _, data in datagrams:
        received = dst_manager.datagram_received(src, data, now)
        if received is not None:
            got.append(received.payload)
    return got


def test_a_lost_confirmation_and_the_responders_own_handshake_end_on_one_session():
    """a's confirmation of session 1 is lost; b (which holds session 1 only as
    its unconfirmed answer) starts session 2 to send; a's data on session 1
    arrives at b after b completed session 2.  Both must end on the same
    session, so that traffic still flows both ways once the previous
    sessions have expired (before: b promoted session 1 on that datagram
    while a moved to session 2, each sending on the other's previous)."""
    net, a, b, a_addr, b_addr = pair()
    a.send(b.public, b"x", 0.0)
    _deliver(net, a, b, _out(a), 0.0)  # initiation 1
    _deliver(net, b, a, _out(b), 0.0)  # response 1: a is established
    assert a.status(b.public, 0.0)["established"]
    _out(a)  # "x" on session 1, the confirmation: lost
    b.send(a.public, b"y", 1.0)  # b has no usable session: initiation 2
    init2 = _out(b)
    assert [d[0] for _, d in init2] == [sw.TYPE_INITIATION]
    _deliver(net, b, a, init2, 1.0)
    response2 = _out(a)
    a.send(b.public, b"z", 1.0)  # a still sends on session 1 (its current)
    z_on_1 = _out(a)
    _deliver(net, a, b, response2, 1.0)  # b completes session 2, sends "y" on it
    y_on_2 = _out(b)
    assert _deliver(net, a, b, z_on_1, 1.0) == [b"z"]  # late, on session 1: still received
    assert _deliver(net, b, a, y_on_2, 1.0) == [b"y"]  # confirms session 2 at a
    net.flush(1.0)
    sa, sb = a._peers[b.public].current, b._peers[a.public].current
    assert sa.local_index == sb.remote_index and sb.local_index == sa.remote_index, "different sessions"
    later = 1.0 + KEEP_PREVIOUS_S + 1
    net.run(1.0, later, step=1.0)  # the previous sessions expire
    a.send(b.public, b"after a", later)
    b.send(a.public, b"after b", later)
    net.flush(later)
    assert b"after a" in [r.payload for r in net.received[b_addr]]
    assert b"after b" in [r.payload for r in net.received[a_addr]]


def test_a_confirmed_answer_drops_the_initiation_still_pending():
    """b answered a's initiation, then had a Payload to send before a's
    confirmation came (no usable session yet: b initiates too, and that
    initiation is lost).  The confirmation makes a fresh session: b drops
    its pending initiation instead of retrying it (a second handshake)."""
    net, a, b, a_addr, b_addr = pair()
    a.send(b.public, b"from a", 0.0)
    _deliver(net, a, b, _out(a), 0.0)
    answer = _out(b)
    b.send(a.public, b"from b", 0.1)  # b's own initiation: lost
    assert [d[0] for _, d in _out(b)] == [sw.TYPE_INITIATION]
    _deliver(net, b, a, answer, 0.2)  # a is established and confirms with "from a"
    assert _deliver(net, a, b, _out(a), 0.2) == [b"from a"]
    assert b._peers[a.public].pending is None
    net.flush(0.2)
    assert [r.payload for r in net.received[a_addr]] == [b"from b"]  # b's queue went on the session
    net.run(0.2, 20.0, step=0.1)
    assert b.counters["handshake_initiated"] == 1 and a.counters["handshake_initiated"] == 1


def test_link_up_retries_a_pending_handshake_at_once():
    """The radio was down for 20 s: the retries backed off to MAX_RETRY_S.
    When it comes back, the initiation goes out at once, not up to 8 s
    later; the backoff goes on (a dead peer costs one more initiation)."""
    net, a, b, a_addr, b_addr = pair()
    net.drop = lambda src, dst, data: True
    a.send(b.public, b"x", 0.0)
    net.run(0.0, 20.0, step=0.05)
    assert a.next_timer() - 20.0 > 1.0, "backed off"
    before = a.counters["handshake_initiated"]
    net.drop = lambda src, dst, data: False
    a.link_up(20.0)
    assert a.counters["handshake_initiated"] == before + 1
    assert a.next_timer() >= 20.0 + MAX_RETRY_S, "the backoff is not reset"
    net.flush(20.0)
    assert [r.payload for r in net.received[b_addr]] == [b"x"]
    a.link_up(21.0)  # established: nothing to retry
    assert a.datagrams_to_send() == [] and a.counters["handshake_initiated"] == before + 1


def test_link_up_starts_a_handshake_for_a_keepalive_peer_that_yielded():
    """A keepalive peer that yielded in a collision has no initiation of its
    own pending; if its answer was lost, link_up still starts one at once."""
    net, a, b, a_addr, b_addr = pair(keepalive=True)
    low, high = sorted((a, b), key=lambda m: m.public)
    high.tick(0.0)  # keepalive peer without a session: initiates
    _out(high)  # lost
    low.tick(0.0)
    _deliver(net, low, high, _out(low), 0.0)  # high yields and answers
    _out(high)  # the answer: lost
    assert high._peers[low.public].pending is None and high._peers[low.public].current is None
    high.link_up(0.5)
    assert [d[0] for _, d in _out(high)] == [sw.TYPE_INITIATION]


def test_a_collision_resends_ours_at_once_even_right_after_a_retry():
    """The peer's initiation shows it is up now: the smaller key resends its
    own at once, even 0.1 s after its last one (a retry wait is only 0.25 s,
    a longer guard suppressed most such resends)."""
    net, a, b, a_addr, b_addr = pair()
    low, high = sorted((a, b), key=lambda m: m.public)
    low.send(high.public, b"from low", 0.0)
    _out(low)  # lost
    high.send(low.public, b"from high", 0.1)
    _deliver(net, high, low, _out(high), 0.1)
    assert low.counters["collision"] == 1
    resent = _out(low)
    assert [d[0] for _, d in resent] == [sw.TYPE_INITIATION]
    _deliver(net, low, high, resent, 0.1)  # high yields and answers
    net.flush(0.1)
    assert low.status(high.public, 0.1)["established"] and high.status(low.public, 0.1)["established"]
    assert [r.payload for r in net.received[net.addr_of(high)]] == [b"from low"]
    assert [r.payload for r in net.received[net.addr_of(low)]] == [b"from high"]
