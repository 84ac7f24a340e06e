"""Human status and doctor output: plurals, human units, durations; the
diagnosis rules on status objects (pure: no daemon needed)."""

from __future__ import annotations

from mvds.cli.status import render
from mvds.daemon.config import NodeConfig, PeerConfig
from mvds.daemon.diagnose import diagnose, human_bytes, human_duration, plural, similar_name
from mvds.daemon.status import build_status
from mvds.engine import RecordType
from mvds.ids import parse_group

PEER = bytes(range(32))


def status(messages: int, **live) -> dict:
    config = NodeConfig(listen="127.0.0.1:7400", groups=["chat"],
                        peers=[PeerConfig("bob", PEER.hex(), "127.0.0.1:7401", ["chat"])])
    pending = {(PEER, RecordType.MESSAGE): 12}
    peers_live = {PEER: {"reachable": True, "last_heard_s": 2.0, "acknowledged": 28,
                         "last_ack_s": 185.0, "datagrams_in": 1, "datagrams_out": 1,
                         **live.pop("peer", {})}}
    base = {"online": True, "uptime_s": 100.0, "datagrams_in": 1, "datagrams_out": 2,
            "bytes_in": 2048, "bytes_out": 3 * 1024 * 1024, "drops": {}}
    return build_status(config, "ab" * 32, pending=pending, messages_stored=messages,
                        last_seq=messages, peers_live=peers_live, live={**base, **live})


def test_plurals_units_and_sync_progress():
    text = render(status(1))
    assert "store    1 message, last seq 1" in text
    assert "in 1 datagram / 2.0 KiB, out 2 datagrams / 3.0 MiB" in text
    assert "12 of 40 pending, last ack 3 m ago" in text
    live = {"pending_oldest_s": 305.0}
    assert "12 of 40 pending, oldest 5 m, last ack 3 m ago" in render(status(1, peer=live))
    assert "2 s ago" in text
    assert "4 messages" in render(status(4))
    assert "invites" not in text
    assert "invites  1 pending, 2 used" in render(status(1, invites={"pending": 1, "used": 2, "expired": 0}))


def test_helpers():
    assert [plural(n, "record") for n in (0, 1, 2)] == ["0 records", "1 record", "2 records"]
    assert [human_bytes(n) for n in (0, 1023, 1536, 5 << 20, 3 << 30)] == [
        "0 B", "1023 B", "1.5 KiB", "5.0 MiB", "3.0 GiB"]
    assert [human_duration(s) for s in (5, 180, 7500, 90000, 400000)] == [
        "5 s", "3 m", "2 h 5 m", "25 h", "4 d"]
    assert similar_name(parse_group("Chat"), ["chat", "other"]) == "Chat"
    assert similar_name(parse_group("zzz"), ["chat"]) is None


def test_diagnosis_rules():
    assert [f["problem"] for f in diagnose({"running": False})] == ["not_running"]
    idle = status(1)
    idle["peers"][0].update(reachable=False, last_heard_s=500.0, pending={"offer": 0, "request": 0, "message": 0})
    assert diagnose(idle) == [], "a peer heard before with nothing waiting is idle, not a problem"
    waiting = status(1)
    waiting["peers"][0].update(reachable=False, last_heard_s=500.0)
    (finding,) = diagnose(waiting)
    assert finding["problem"] == "unreachable" and "last heard 8 m ago" in finding["detail"]
    assert "12 records waiting" in finding["detail"]
    small = status(1, receive_buffer=212992, receive_buffer_small=True)
    assert [f["problem"] for f in diagnose(small)] == ["small_receive_buffer"]
    assert "208.0 KiB" in diagnose(small)[0]["detail"]
