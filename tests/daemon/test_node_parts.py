"""The parts that left node.py (issue 13: the shell only) without sockets:
ACK waits, debug tracing, event dispatch, group-mismatch accounting, the
argument checks and the address helpers (mvds/daemon/*.py)."""

from __future__ import annotations

from collections import Counter

import pytest
import structlog
import trio
import trio.testing
from structlog.testing import capture_logs

from mvds.daemon.acks import AckBook, AckWaiter, wanted_peers
from mvds.daemon.commands import NodeError, address_arg, checked_body, known_group
from mvds.daemon.config import NodeConfig, PeerConfig
from mvds.daemon.diagnose import GroupCheck, UnknownSenders
from mvds.daemon.dispatch import Dispatcher
from mvds.daemon.logthrottle import LogThrottle
from mvds.daemon.peers import PeerRegistry, link_peers, literal_address
from mvds.daemon.status import session_json
from mvds.daemon.subscriptions import Subscriptions
from mvds.daemon.trace import Tracer, debug_enabled
from mvds.engine import MessageAcknowledged, MessageReceived, MessageRefused
from mvds.ids import parse_group
from mvds.secure import session as sessions_mod
from mvds.wire import Message

A, B, C = b"a" * 32, b"b" * 32, b"c" * 32
CHAT = parse_group("chat")


def config_ab() -> NodeConfig:
    return NodeConfig(peers=[PeerConfig("a", A.hex(), "127.0.0.1:1000", ["chat"]),
                             PeerConfig("b", B.hex(), "127.0.0.1:2000", [])])


# -- acks ---------------------------------------------------------------------
def test_wanted_peers_checks_the_request_before_any_wait():
    config = config_ab()
    assert wanted_peers({A, B}, None, config.peer_named) == ({A, B}, 2)
    assert wanted_peers({A, B}, 1, config.peer_named) == ({A, B}, 1)
    assert wanted_peers({A, B}, ["b"], config.peer_named) == ({B}, 1)
    for peers, says in [(0, "at least 1"), (3, "shared with 2 peers"), (["zed"], "unknown peer"),
                        (["a"], "not shared with 'a'")]:
        with pytest.raises(NodeError, match=says):
            wanted_peers({A, B} if peers != ["a"] else {B}, peers, config.peer_named)
    with pytest.raises(NodeError, match="shared with no peer"):
        wanted_peers(set(), None, config.peer_named)


async def test_an_ack_wakes_its_waiter_and_is_counted_per_peer():
    book = AckBook()
    waiter = AckWaiter({A, B}, 2)
    waiter.acked.add(A)  # settled before the wait
    async with trio.open_nursery() as nursery:
        got: list[list[str]] = []

        async def wait():
            got.append(await book.wait(b"m" * 32, waiter, 5.0, lambda p: p[:1].decode()))

        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        book.acknowledged(b"x" * 32, B, 10.0)  # another message: no effect
        assert got == []
        book.acknowledged(b"m" * 32, B, 12.0)
    assert got == [["a", "b"]]
    assert book.waiters == {}  # nothing left behind
    assert book.acked == Counter({B: 2}) and book.last_ack_s(B, 13.0) == 1.0
    assert book.last_ack_s(A, 13.0) is None


async def test_a_wait_that_times_out_names_who_is_missing():
    book = AckBook()
    waiter = AckWaiter({A, B}, 2, acked={A})
    with pytest.raises(NodeError, match=r"1 of 2 acknowledgements within 0.01 s \(waiting for b\)"):
        await book.wait(b"m" * 32, waiter, 0.01, lambda p: p[:1].decode())
    assert book.waiters == {}


# -- trace --------------------------------------------------------------------
def test_the_tracer_limits_each_event_to_a_burst_and_says_what_it_left_out():
    with capture_logs() as logs:
        tracer = Tracer(structlog.get_logger())
        for i in range(25):
            tracer.line(0.0, "message.appended", n=i)
        tracer.line(5.0, "message.appended", n=99)
    lines = [entry for entry in logs if entry["event"] == "message.appended"]
    assert len(lines) == 21 and lines[-1]["n"] == 99 and lines[-1]["left_out"] == 5
    assert all(entry["log_level"] == "debug" for entry in lines)


def test_retransmissions_are_traced_per_peer_as_the_difference_of_a_step():
    with capture_logs() as logs:
        tracer = Tracer(structlog.get_logger())
        before = tracer.retransmissions_before({A: Counter(retransmissions=2)})
        tracer.retransmissions(0.0, before, {A: Counter(retransmissions=5), B: Counter()},
                               lambda p: p[:1].decode())
    assert [(e["event"], e["peer"], e["count"], e["total"]) for e in logs] == [
        ("records.retransmitted", "a", 3, 5)]


def test_debug_enabled_asks_the_logger():
    class Quiet:
        def isEnabledFor(self, level):
            return False

    assert debug_enabled(Quiet()) is False and debug_enabled(object()) is True


# -- dispatch -----------------------------------------------------------------
def dispatcher(config: NodeConfig):
    peers = PeerRegistry()
    peers.sync(config)
    counters: Counter[str] = Counter()
    acks, unknown = AckBook(), UnknownSenders()
    names = {CHAT: "chat"}
    log = structlog.get_logger()
    tracer = Tracer(log)
    d = Dispatcher(log=log, tracer=tracer, counters=counters,
                   subscriptions=Subscriptions(counters), acks=acks, peers=peers,
                   unknown=unknown, warnings=LogThrottle(interval=60.0),
                   group_names=lambda: names)
    return d, counters, acks, unknown


def test_engine_events_count_deliveries_acks_and_log_a_refused_group_typo():
    d, counters, acks, _ = dispatcher(config_ab())
    message = Message(group_id=CHAT, timestamp=1, body=b"hi")
    with capture_logs() as logs:
        d.engine_events([
            MessageReceived(message, 1, A),
            MessageAcknowledged(message.id, A),
            MessageRefused(b"m" * 32, B, parse_group("Chat"), "unshared_group", 0),
        ], now=100.0, clock=0.0)
    assert counters["delivered"] == 1 and counters["acknowledged"] == 1
    assert acks.acked[A] == 1 and acks.last_ack[A] == 100.0
    (refused,) = [e for e in logs if e["event"] == "message.refused"]
    assert refused["peer"] == "b" and refused["similar_to"] == "Chat"
    (delivered,) = [e for e in logs if e["event"] == "message.delivered"]
    assert delivered["via"] == "a" and delivered["group"] == "chat"


def test_a_refused_handshake_of_an_untrusted_node_is_evidence_for_the_doctor():
    d, counters, _, unknown = dispatcher(config_ab())
    with capture_logs() as logs:
        d.session_events([
            # An untrusted initiator: no peer, the key it named as `claimed`.
            sessions_mod.HandshakeRefused("unknown_peer", ("127.0.0.1", 9), None, C),
            sessions_mod.SessionEstablished(A, True, False, ("127.0.0.1", 1000)),
        ], clock=0.0, wall=50.0)
    (seen,) = unknown.to_json(60.0)
    assert seen["claimed_id"] == C.hex() and seen["source"] == "127.0.0.1:9"
    assert counters["sessions_established"] == 1
    assert [e["event"] for e in logs] == ["handshake.refused", "session.established"]
    assert logs[0]["claimed_peer"] == C.hex()


# -- group check --------------------------------------------------------------
def test_group_check_counts_unshared_groups_and_forgets_them_once_shared():
    check = GroupCheck()
    config = config_ab()
    typo = Message(group_id=parse_group("Chat"), timestamp=1, body=b"")
    fine = Message(group_id=CHAT, timestamp=1, body=b"")
    check.check(config, A, [typo, fine], loose=False, known={CHAT: "chat"})
    check.check(config, B, [fine], loose=True, known={CHAT: "chat"})  # loose: known group ok
    (entry,) = check.for_peer(A, {CHAT: "chat"})
    assert entry["messages"] == 1 and entry["group"] is None and entry["similar"] == "Chat"
    assert check.for_peer(B, {CHAT: "chat"}) == []
    shared = NodeConfig(peers=[PeerConfig("a", A.hex(), "127.0.0.1:1000", ["chat", "Chat"])])
    check.config_changed(shared)
    assert check.for_peer(A, {CHAT: "chat"}) == []


# -- arguments and addresses --------------------------------------------------
def test_argument_checks_answer_in_one_line():
    assert address_arg(("::1", 7000)) == "[::1]:7000" and address_arg("h:1") == "h:1"
    with pytest.raises(NodeError):
        address_arg(7000)
    assert known_group("chat", lambda g: True) == CHAT
    with pytest.raises(NodeError, match="unknown group 'chat'"):
        known_group("chat", lambda g: False)
    with pytest.raises(NodeError, match="32 bytes"):
        known_group(b"short", lambda g: True)
    assert checked_body(bytearray(b"x"), 1) == b"x"
    with pytest.raises(NodeError, match="maximum is 1"):
        checked_body(b"xy", 1)
    with pytest.raises(TypeError):
        checked_body("text", 10)


def test_addresses_literal_and_by_name():
    assert literal_address("127.0.0.1:5", v6=False) == ("127.0.0.1", 5)
    assert literal_address("[::1]:5", v6=True) == ("::1", 5, 0, 0)
    assert literal_address("[::1]:5", v6=False) is None
    assert literal_address("example.org:5", v6=False) is None
    peers = PeerRegistry()
    peers.sync(config_ab())
    peers[A].address = ("127.0.0.1", 1000)
    assert peers.name_at(("127.0.0.1", 1000)) == "a" and peers.name_at(("127.0.0.1", 1)) is None


def test_a_plaintext_peer_goes_silent_once():
    state = PeerRegistry()
    state.sync(config_ab())
    a = state[A]
    assert not a.went_silent(None, 100.0, 10.0)  # never heard: nothing to say
    assert not a.went_silent(95.0, 100.0, 10.0)  # heard recently: up
    assert a.went_silent(95.0, 120.0, 10.0)  # silent now
    assert not a.went_silent(95.0, 130.0, 10.0)  # said once


def test_the_session_block_of_status():
    raw = {"established": True, "session_age_s": 1.23456, "last_handshake_s": None, "rekeys": 0,
           "handshake_pending": False, "keepalive": True,
           "path": {"address": ("127.0.0.1", 5), "state": "validated"},
           "candidates": [{"address": ("::1", 6, 0, 0), "state": "probing",
                           "allowance_bytes": 300}]}
    assert session_json(raw) == {
        "established": True, "age_s": 1.235, "last_handshake_s": None, "rekeys": 0,
        "handshake_pending": False, "keepalive": True,
        "path": {"address": "127.0.0.1:5", "state": "validated"},
        "candidates": [{"address": "[::1]:6", "state": "probing", "allowance_bytes": 300}],
    }


def test_link_peers_follows_the_registry_in_the_codec_and_the_sessions():
    from mvds.secure import EnvelopeCodec, Identity
    from mvds.secure.session import SessionManager

    me, a, b = Identity.generate(), Identity.generate(), Identity.generate()
    config = NodeConfig(listen="127.0.0.1:0", peers=[
        PeerConfig("a", a.peer_id_hex, "127.0.0.1:1000", ["chat"]),
        PeerConfig("b", b.peer_id_hex, "127.0.0.1:2000", [], plaintext=True)])
    peers, codec, sessions = PeerRegistry(), EnvelopeCodec(me), SessionManager(me, keepalive_s=10)
    link_peers(config, *peers.sync(config), codec, sessions)
    assert set(codec.peers()) == {a.peer_id, b.peer_id}
    assert sessions.status(a.peer_id, 0.0)["keepalive"] is True
    assert sessions.status(a.peer_id, 0.0)["path"]["address"] == ("127.0.0.1", 1000)
    unshared = NodeConfig(listen="127.0.0.1:0", peers=[
        PeerConfig("a", a.peer_id_hex, "127.0.0.1:1000", [])])
    changed, removed = peers.sync(unshared)
    assert (changed, removed) == ([], [b.peer_id])
    link_peers(unshared, changed, removed, codec, sessions)
    assert codec.peers() == [a.peer_id]
    assert sessions.status(a.peer_id, 0.0)["keepalive"] is False
