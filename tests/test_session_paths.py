"""Paths and keepalives: anti-amplification, validation, roaming, re-resolution, reachability."""

from __future__ import annotations

from mvds.secure.paths import CONFIGURED, VALIDATED, resolved_address_wins
from mvds.secure.session import PathValidated, PeerReachable, PeerUnreachable
from sessionnet import pair

FORGED = ("192.0.2.66", 6666)


def _established():
    net, a, b, a_addr, b_addr = pair()
    a.send(b.public, b"hello", 0.0)
    net.flush(0.0)
    b.send(a.public, b"hi", 0.1)
    net.flush(0.1)
    return net, a, b, a_addr, b_addr


def test_a_forged_source_copy_of_an_unseen_datagram_gets_at_most_3x_its_bytes():
    net, a, b, a_addr, b_addr = _established()
    # A datagram B sent that A never received (lost after a tap).
    b.send(a.public, b"y" * 150, 1.0)
    ((_, stolen),) = b.datagrams_to_send()
    got = a.datagram_received(FORGED, stolen, 1.0)
    assert got is not None and got.payload == b"y" * 150  # it authenticates (once)
    # A keeps sending its traffic to B's validated address, never to the forger...
    for i in range(50):
        a.send(b.public, b"backlog %d" % i * 20, 1.0 + i / 100)
    out = a.datagrams_to_send()
    to_forged = sum(len(d) for addr, d in out if addr == FORGED)
    assert to_forged <= 3 * len(stolen)
    assert sum(1 for addr, _ in out if addr == b_addr) == 50
    status = a.status(b.public, 2.0)
    assert status["path"] == {"address": b_addr, "state": VALIDATED}
    (candidate,) = status["candidates"]
    assert candidate["address"] == FORGED and candidate["allowance_bytes"] <= 3 * len(stolen)
    # ... and a replay of the same datagram is refused before anything else.
    assert a.datagram_received(("192.0.2.67", 1), stolen, 2.0) is None and a.counters["replay"] == 1


def test_a_peer_that_moved_is_validated_by_challenge_and_wins():
    net, a, b, a_addr, b_addr = _established()
    moved = ("127.0.0.1", 2002)
    net.nodes[moved] = net.nodes.pop(b_addr)  # B now sends and receives on another port
    net.received[moved], net.events[moved] = [], []
    b.send(a.public, b"from the new port", 5.0)
    net.flush(5.0)
    assert [r.payload for r in net.received[a_addr]][-1] == b"from the new port"
    assert any(isinstance(e, PathValidated) and e.addr == moved for e in net.events[a_addr])
    assert a.status(b.public, 5.0)["path"] == {"address": moved, "state": VALIDATED}
    # One-way traffic A -> B keeps arriving at the new port.
    a.send(b.public, b"one way", 40.0)
    net.flush(40.0)
    assert net.received[moved][-1].payload == b"one way"
    # A re-resolution returning the old configured address does not undo it.
    assert a.address_resolved(b.public, b_addr, 40.0) is False
    assert a.status(b.public, 40.0)["path"]["address"] == moved


def test_re_resolution_rule():
    learned, old, new = ("10.0.0.2", 1), ("10.0.0.1", 1), ("10.0.0.3", 1)
    rule = lambda **kw: resolved_address_wins(**{
        "endpoint": learned, "endpoint_state": VALIDATED, "endpoint_last_heard": 100.0,
        "previous_resolved": old, "new_resolved": new, "now": 110.0, "silence_s": 45.0, **kw})
    assert rule() is False  # learned address still answering
    assert rule(now=146.0) is True  # new DNS answer and the learned address went silent
    assert rule(now=146.0, new_resolved=old) is False  # DNS returned nothing new
    assert rule(endpoint_state=CONFIGURED) is True  # nothing learned: follow DNS
    assert rule(endpoint=None, endpoint_state=None) is True
    assert rule(new_resolved=learned, now=500.0) is False


def test_handshake_completion_validates_the_configured_address():
    net, a, b, a_addr, b_addr = pair()
    assert a.status(b.public, 0.0)["path"]["state"] == CONFIGURED
    a.send(b.public, b"x", 0.0)
    net.flush(0.0)
    assert a.status(b.public, 0.0)["path"] == {"address": b_addr, "state": VALIDATED}
    assert b.status(a.public, 0.0)["path"] == {"address": a_addr, "state": VALIDATED}


def test_idle_peers_with_keepalives_stay_reachable_and_silence_makes_them_unreachable():
    net, a, b, a_addr, b_addr = pair(keepalive=True, keepalive_s=15.0)
    now = net.run(0.0, 1.0)
    assert any(isinstance(e, PeerReachable) for e in net.events[a_addr])
    now = net.run(now, 300.0)  # five idle minutes (rekeys included)
    assert a.is_reachable(b.public) and b.is_reachable(a.public)
    assert not any(isinstance(e, PeerUnreachable) for e in net.events[a_addr] + net.events[b_addr])
    assert a.counters["keepalive_sent"] >= 300 / 15 - 2
    assert a.status(b.public, now)["rekeys"] + b.status(a.public, now)["rekeys"] >= 2
    assert a.status(b.public, now)["session_age_s"] < 180
    # B stops (SIGSTOP): A notices within 3 x keepalive_s.
    stopped = net.nodes.pop(b_addr)
    start = now
    while not any(isinstance(e, PeerUnreachable) for e in net.events[a_addr]):
        now = net.run(now, now + 1.0)
        assert now - start <= 3 * 15.0 + 1.0
    # B continues (SIGCONT): reachable again.
    net.nodes[b_addr] = stopped
    net.events[a_addr].clear()
    now = net.run(now, now + 70.0)
    assert any(isinstance(e, PeerReachable) for e in net.events[a_addr])
    assert a.is_reachable(b.public)


def test_keepalive_zero_is_off():
    net, a, b, a_addr, b_addr = pair(keepalive=True, keepalive_s=0.0)
    a.send(b.public, b"x", 0.0)
    net.flush(0.0)
    net.run(0.0, 100.0)
    assert a.counters["keepalive_sent"] == 0 and b.counters["keepalive_sent"] == 0


def test_timers_use_only_the_monotonic_now():
    """The wall clock moves the handshake timestamp only: a session made with the
    wall clock an hour ahead, then an hour behind, behaves the same."""
    for offset in (3600.0, -3600.0):
        net, a, b, a_addr, b_addr = pair(wall_offset=offset)
        a.send(b.public, b"x", 0.0)
        net.flush(0.0)
        # Timers come from now=0 whatever the wall clock says: the reachability deadline.
        assert a.next_timer() == a.reachable_window == 45.0
