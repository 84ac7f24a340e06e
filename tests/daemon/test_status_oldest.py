"""Status: the age of the oldest message a peer has not acknowledged
(``pending_oldest_s``; "12 of 40 pending, oldest 3 m"), on both stores."""

from __future__ import annotations

import pytest
import trio

import mvds
from mvds.cli.status import progress
from mvds.daemon.config import NodeConfig, PeerConfig
from mvds.secure import Identity

from nodes import pair


@pytest.fixture(params=["memory", "sqlite"])
def where(request, tmp_path):
    if request.param == "memory":
        return None
    mvds.init_node(tmp_path / "n", listen="127.0.0.1:0")
    return tmp_path / "n"


async def test_oldest_pending_grows_while_the_peer_does_not_ack(where):
    nobody = Identity.generate()  # trusted, but nothing listens at its address
    async with mvds.open_node(where, listen="127.0.0.1:0") as node:
        await node.add_peer("gone", nobody.peer_id, "127.0.0.1:9", ["chat"])
        await node.append("chat", b"first")
        await trio.sleep(1.6)
        await node.append("chat", b"second")
        await trio.sleep(0.3)
        (peer,) = node.status_now()["peers"]
        assert peer["pending"]["message"] == 2
        assert 1.5 <= peer["pending_oldest_s"] < 5  # the first message's age, not the second's
        assert f"2 of 2 pending, oldest {round(peer['pending_oldest_s'])} s" in progress(peer)


async def test_nothing_pending_means_no_oldest():
    async with mvds.open_node() as a, mvds.open_node() as b:
        await pair(a, b)
        (peer,) = a.status_now()["peers"]
        assert peer["pending_oldest_s"] is None
        await a.append("chat", b"hello")
        with trio.fail_after(10):
            while a.status_now()["peers"][0]["pending"]["message"]:
                await trio.sleep(0.02)
        assert a.status_now()["peers"][0]["pending_oldest_s"] is None
