"""Clock skew from the handshake timestamp: the session layer measures it,
status shows it per peer, doctor names it past CLOCK_SKEW_LIMIT_S."""

from __future__ import annotations

import random

import trio

import mvds
from mvds.cli.doctor import fix
from mvds.daemon.diagnose import CLOCK_SKEW_LIMIT_S, diagnose
from mvds.secure import Identity
from mvds.secure.session import SessionManager

from nodes import addr


def test_the_responder_measures_the_initiators_clock_offset():
    a = SessionManager(Identity.generate(), wall_offset=1_700_000_000.0 + 300, rng=random.Random(1))
    b = SessionManager(Identity.generate(), wall_offset=1_700_000_000.0, rng=random.Random(2))
    a.add_peer(b.public, ("127.0.0.1", 2))
    b.add_peer(a.public, ("127.0.0.1", 1))
    a.send(b.public, b"x", 10.0)
    for dst, data in a.datagrams_to_send():
        b.datagram_received(("127.0.0.1", 1), data, 10.05)  # 50 ms on the way
    skew = b.status(a.public, 10.05)["clock_skew_s"]
    assert abs(skew - (300 - 0.05)) < 1e-3
    assert a.status(b.public, 10.05)["clock_skew_s"] is None  # the initiator cannot tell


def _status(skew):
    return {"running": True, "uptime_s": 10, "peers": [{
        "name": "bob", "address": "h:1", "reachable": True, "last_heard_s": 1.0,
        "pending": {}, "clock_skew_s": skew}]}


def test_doctor_names_a_large_skew_only():
    assert diagnose(_status(None)) == [] and diagnose(_status(CLOCK_SKEW_LIMIT_S - 1)) == []
    (finding,) = diagnose(_status(-125.4))
    assert finding["problem"] == "clock_skew"
    assert finding["detail"].startswith("clock skew ~125 s: bob's clock is behind this node's")
    assert "NTP" in fix(finding, "DIR", {})


async def test_a_node_with_its_clock_ahead_shows_up_in_status_and_doctor():
    async with mvds.open_node() as a, mvds.open_node() as b:
        a.sessions.wall_offset += 600  # a's wall clock is 10 minutes ahead
        await a.add_peer("b", b.peer_id, addr(b), ["chat"])
        await b.add_peer("a", a.peer_id, addr(a), [])  # b does not initiate (no groups)
        await a.append("chat", b"hi")
        with trio.fail_after(10):
            while b.status_now()["peers"][0]["clock_skew_s"] is None:
                await trio.sleep(0.02)
        status = b.status_now()
        assert 599 <= status["peers"][0]["clock_skew_s"] <= 601
        (finding,) = [f for f in status["findings"] if f["problem"] == "clock_skew"]
        assert finding["peer"] == "a" and "clock skew ~600 s: a's clock is ahead" in finding["detail"]
