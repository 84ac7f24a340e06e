"""The running node's status JSON keeps its shape (issue 13's slimming of
node.py moved the live status into mvds/daemon/status.py): every key, for
a session peer and a plaintext peer, as the CLI and scripts read it."""

from __future__ import annotations

import trio

import mvds
from mvds.daemon.config import NodeConfig, PeerConfig
from mvds.secure import Identity


EXPECTED_TOP = [
    "bytes_in", "bytes_out", "datagrams_in", "datagrams_out", "delivery", "drops", "engine",
    "epoch_ms", "findings", "groups", "invites", "keepalive_s", "last_seq", "listen", "messages_stored",
    "mode", "node", "online", "peer_id", "peers", "receive_buffer", "receive_buffer_small",
    "running", "sessions", "unknown_senders", "uptime_s",
]
EXPECTED_PEER = [
    "acknowledged", "address", "bytes_in", "bytes_out", "clock_skew_s", "datagrams_in", "datagrams_out",
    "group_mismatches", "groups", "id", "last_ack_s", "last_heard_s", "name", "payloads_in",
    "payloads_out", "pending", "pending_oldest_s", "plaintext", "rate_limited", "reachable", "requests_capped",
    "resolved", "retransmissions", "rtt_ms", "session", "unresolved", "unresolved_for_s",
]
EXPECTED_SESSION = [
    "age_s", "candidates", "established", "handshake_pending", "keepalive",
    "last_handshake_s", "path", "rekeys",
]


async def test_the_running_status_has_every_key_for_session_and_plaintext_peers():
    other = Identity.generate()
    config = NodeConfig(
        listen="127.0.0.1:0",
        groups=["chat"],
        peers=[
            PeerConfig("s", other.peer_id_hex, "127.0.0.1:9", ["chat"]),
            PeerConfig("p", Identity.generate().peer_id_hex, "127.0.0.1:9", ["chat"],
                       plaintext=True),
        ],
    )
    async with mvds.open_node(config=config) as node:
        await node.append("chat", b"hello")
        await trio.sleep(0.05)
        status = node.status_now()
        assert sorted(await node.status()) == sorted(status)  # the async name, same builder
    assert sorted(status) == EXPECTED_TOP
    by_name = {peer["name"]: peer for peer in status["peers"]}
    for peer in by_name.values():
        assert sorted(peer) == EXPECTED_PEER
    assert by_name["p"]["session"] is None
    session = by_name["s"]["session"]
    assert sorted(session) == EXPECTED_SESSION
    assert sorted(session["path"]) == ["address", "state"]
    assert session["path"]["address"] == "127.0.0.1:9"
