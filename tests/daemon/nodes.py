"""Helpers for tests of in-process nodes (the embedding API) on loopback."""

from __future__ import annotations

import trio


def addr(node) -> str:
    """The node's UDP address as a peer entry writes it."""
    return "%s:%d" % node.address


async def pair(a, b, groups=("chat",), **kwargs):
    """Make a and b trust each other and share ``groups``."""
    await a.add_peer("b", b.peer_id, addr(b), list(groups), **kwargs)
    await b.add_peer("a", a.peer_id, addr(a), list(groups), **kwargs)


async def collect(node, count, since=0, timeout=10.0, group=None):
    """The first ``count`` messages after ``since`` (fewer if the stream ends)."""
    out = []
    with trio.fail_after(timeout):
        async for message in node.messages(since, group=group):
            out.append(message)
            if len(out) >= count:
                return out
    return out


async def sessions_settled(*nodes, timeout=20.0):
    """Wait until every node's session peers are established with no
    handshake in flight (start-up handshakes may cross and retry)."""
    def settled(node) -> bool:
        return all(p["session"] is None or (p["session"]["established"]
                                            and not p["session"]["handshake_pending"])
                   for p in node.status_now()["peers"])

    with trio.fail_after(timeout):
        while not all(settled(n) for n in nodes):
            await trio.sleep(0.02)
