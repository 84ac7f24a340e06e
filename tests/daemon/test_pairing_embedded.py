"""Pairing through the embedding API: node.invite() / node.accept() on loopback."""

from __future__ import annotations

import pytest
import trio

import mvds
from mvds.daemon.node import NodeError
from mvds.daemon.pairing import decode_code, encode_code

from nodes import collect


async def test_invite_and_accept_pair_two_strangers_both_ways():
    async with mvds.open_node() as a, mvds.open_node() as b:
        code = await a.invite(["chat"], name="bob")
        assert decode_code(code).addresses == ("%s:%d" % a.address,)
        result = await b.accept(code, name="alice", timeout=10)
        assert result == {"peer": "alice", "peer_id": a.peer_id.hex(), "groups": ["chat"]}
        assert [p.name for p in a.config.peers] == ["bob"] and a.config.peers[0].groups == ["chat"]
        assert [p.name for p in b.config.peers] == ["alice"]
        await a.append("chat", b"hi from a")
        (got,) = await collect(b, 1)
        assert got.body == b"hi from a"
        await b.append("chat", b"hi from b")
        (got,) = await collect(a, 1)
        assert got.body == b"hi from b"
        # The inviter learned the acceptor's address from the handshake.
        assert a.config.peers[0].address == "%s:%d" % b.address


async def test_a_used_code_is_refused_and_nothing_stays_configured():
    async with mvds.open_node() as a, mvds.open_node() as b, mvds.open_node() as c:
        code = await a.invite(["chat"])
        await b.accept(code, timeout=10)
        await c.join("mine")
        with pytest.raises(NodeError, match="refused or did not answer: the code may be expired or used"):
            await c.accept(code, timeout=2)
        assert c.config.peers == [] and c.config.groups == ["mine"]  # as before the accept
        assert [p.peer_id for p in a.config.peers] == [b.peer_id]
        assert a.status_now()["invites"] == {"pending": 0, "used": 1, "expired": 0}


async def test_an_expired_code_is_refused():
    async with mvds.open_node() as a, mvds.open_node() as b:
        code = await a.invite(["chat"], expires=0.2)
        await trio.sleep(1.5)
        with pytest.raises(NodeError, match="code may be expired or used.*expired"):
            await b.accept(code, timeout=2)
        assert a.config.peers == [] and b.config.peers == []
        assert a.status_now()["invites"]["expired"] == 1


async def test_a_tampered_secret_is_refused():
    async with mvds.open_node() as a, mvds.open_node() as b:
        fields = decode_code(await a.invite(["chat"]))
        wrong = bytes(x ^ 1 for x in fields.secret)
        forged = encode_code(type(fields)(fields.peer_id, wrong, fields.slot, fields.expires,
                                          fields.addresses, fields.groups))
        with pytest.raises(NodeError, match="refused or did not answer"):
            await b.accept(forged, timeout=2)
        assert a.config.peers == [] and b.config.peers == []
        assert a.status_now()["invites"]["pending"] == 1  # still there for the real holder


async def test_bad_codes_and_own_codes_are_one_line_errors():
    async with mvds.open_node() as a:
        code = await a.invite([])
        with pytest.raises(NodeError, match="made by this node"):
            await a.accept(code)
        with pytest.raises(NodeError, match="checksum"):
            await a.accept(code[:-3] + ("aaa" if not code.endswith("aaa") else "bbb"))
        with pytest.raises(NodeError, match="not an invite code"):
            await a.accept("hello")
        with pytest.raises(NodeError, match="control character"):
            await a.invite(["bad\ngroup"])
