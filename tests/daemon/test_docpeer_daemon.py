"""A peer written from docs/PROTOCOL.md alone syncs with a real `mvds run` daemon.

tests/interop/docpeer.py never imports mvds; here it talks to a daemon
process over real UDP, over sessions (0x03-0x06: docpeer's DocSession) and
in the plaintext mode (0x02).  docpeer's DocLink sealed mode is the retired
static-key envelope (0x01): the daemon refuses it.
"""

from __future__ import annotations

import json

import pytest

from interop import docpeer
from procs import Daemon, cli, stop_all, wait_until


@pytest.mark.parametrize("plaintext", [False, True], ids=["sessions", "plaintext"])
def test_docpeer_and_a_daemon_exchange_messages(tmp_path, plaintext):
    node = tmp_path / "node"
    node_id = bytes.fromhex(cli("init", str(node), check=True).stdout.strip())
    me = docpeer.DocIdentity.generate()
    peer = docpeer.DocPeer(me)
    link = docpeer.DocLink(me, node_id, plaintext=True) if plaintext else docpeer.DocSession(me, node_id)
    extra = ["--plaintext"] if plaintext else []
    cli("peer", "add", str(node), "doc", me.public.hex(), "%s:%d" % peer.address,
        "--group", "chat", *extra, check=True)
    daemon = Daemon(node).start()
    try:
        address = tuple(daemon.status()["listen"].rsplit(":", 1))
        address = (address[0], int(address[1]))
        group = docpeer.group_id("chat")

        # docpeer -> daemon: a MESSAGE is ACKed and handed to the application.
        message = docpeer.DocMessage(group, 1764000000, b"hello from the document")
        peer.send(link, address, docpeer.DocPayload(messages=[message]))
        acked = False
        for _ in range(20):
            sender, payload = peer.receive({node_id: link}, timeout=5)
            assert sender == node_id
            if message.id in payload.acks:
                acked = True
                break
        assert acked, "the daemon did not ACK docpeer's message"
        tail = cli("tail", str(node), "--json", check=True).stdout.splitlines()
        assert [json.loads(line)["text"] for line in tail] == ["hello from the document"]
        assert json.loads(tail[0])["id"] == message.id.hex()

        # daemon -> docpeer: a MESSAGE arrives, docpeer ACKs, the daemon settles.
        sent_id = bytes.fromhex(cli("send", str(node), "chat", "hello, document", check=True).stdout.strip())
        received = None
        for _ in range(50):
            _, payload = peer.receive({node_id: link}, timeout=5)
            for m in payload.messages:
                if m.id == sent_id:
                    received = m
            if received:
                break
        assert received is not None and received.body == b"hello, document"
        assert received.parents == [message.id], "parents are the group's leaves"
        peer.send(link, address, docpeer.DocPayload(acks=[sent_id]))
        wait_until(
            lambda: sum(daemon.status()["peers"][0]["pending"].values()) == 0,
            10, what="the daemon to settle its record for docpeer",
        )
        drops = daemon.status()["drops"]
        # A simultaneous initiation (docpeer's and the daemon's) is refused by design.
        assert not {k: v for k, v in drops.items() if k not in ("no_address", "handshake_collision")}, drops
    finally:
        peer.close()
        stop_all([daemon])


def test_the_retired_static_key_envelope_is_dropped_as_bad_version(tmp_path):
    node = tmp_path / "node"
    node_id = bytes.fromhex(cli("init", str(node), check=True).stdout.strip())
    me = docpeer.DocIdentity.generate()
    peer = docpeer.DocPeer(me)
    link = docpeer.DocLink(me, node_id)  # type 0x01
    cli("peer", "add", str(node), "doc", me.public.hex(), "%s:%d" % peer.address,
        "--group", "chat", check=True)
    daemon = Daemon(node).start()
    try:
        host, port = daemon.status()["listen"].rsplit(":", 1)
        group = docpeer.group_id("chat")
        message = docpeer.DocMessage(group, 1764000000, b"old envelope")
        peer.send(link, (host, int(port)), docpeer.DocPayload(messages=[message]))
        wait_until(lambda: daemon.status()["drops"].get("bad_version", 0) >= 1, 10,
                   what="the 0x01 datagram to be dropped")
        assert daemon.status()["messages_stored"] == 0
    finally:
        peer.close()
        stop_all([daemon])
