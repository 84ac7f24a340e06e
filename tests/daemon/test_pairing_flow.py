"""The pairing flow (mvds/daemon/pairing_flow.py) without a daemon: the
node's side is the callables it is given, here a config held in a list.
The handshakes themselves are tests/test_session_invite.py; two running
nodes pairing, tests/daemon/test_pairing_*.py."""

from __future__ import annotations

import time

import pytest
import structlog
import structlog.testing

from mvds.daemon import pairing
from mvds.daemon.commands import NodeError
from mvds.daemon.config import NodeConfig, PeerConfig
from mvds.daemon.pairing_flow import PairingFlow
from mvds.ids import parse_group
from mvds.secure import Identity
from mvds.secure import session as sessions_mod
from mvds.secure.session import SessionManager

PEER_ADDR = ("127.0.0.1", 7001)


class RecordingSessions(SessionManager):
    """The real session layer, noting which invite slots were withdrawn."""

    def __init__(self, identity: Identity) -> None:
        super().__init__(identity, keepalive_s=0)
        self.withdrawn: list[int] = []

    def withdraw_invite(self, slot: int) -> None:
        self.withdrawn.append(slot)
        super().withdraw_invite(slot)


def make_flow(config: NodeConfig, *, heard: float | None = None):
    """A flow over an in-memory invite book; ``held[0]`` is the node's config,
    which submitted edits change (as a committed step would)."""
    me = Identity.generate()
    held = [config]
    sessions = RecordingSessions(me)

    def check_edit(edit):
        try:
            edit(held[0])
        except ValueError as exc:
            raise NodeError(str(exc)) from None
        return edit

    async def submit_edit(edit):
        held[0] = edit(held[0])

    async def reach(peer_id):
        pass

    flow = PairingFlow(
        invites=pairing.InviteBook.load(None), sessions=sessions, own_id=me.peer_id,
        log=structlog.get_logger(), config=lambda: held[0], port=lambda: 7000,
        check_edit=check_edit, submit_edit=submit_edit, reach=reach,
        last_heard=lambda peer_id: heard, now=time.time, peer_name=lambda peer_id: peer_id.hex()[:8],
    )
    return flow, held, sessions


async def test_an_invite_trusts_the_one_who_used_it_and_refuses_a_second_use():
    flow, _, sessions = make_flow(NodeConfig(listen="127.0.0.1:7000"))
    code = await flow.invite(["chat"], 600, "bob", None)
    fields = pairing.decode_code(code)
    assert fields.addresses == ("127.0.0.1:7000",) and fields.groups == ("chat",)
    bob, eve = Identity.generate().peer_id, Identity.generate().peer_id

    command = flow.paired(sessions_mod.InviteAccepted(bob, fields.slot, PEER_ADDR))
    assert command is not None and command.edit is not None
    trusted = command.edit(NodeConfig())
    entry = trusted.peer_named("bob")
    assert entry is not None and entry.peer_id == bob
    assert entry.address == "127.0.0.1:7001" and entry.groups == ["chat"]
    assert flow.invites.summary(time.time())["used"] == 1
    assert flow.adopted() == {bob}
    assert flow.adopted() == set()  # handed over once, to the config swap

    sessions.add_peer(eve, PEER_ADDR)  # the session layer let the handshake through
    with structlog.testing.capture_logs() as logs:
        again = flow.paired(sessions_mod.InviteAccepted(eve, fields.slot, PEER_ADDR))
    assert again is None
    assert not sessions.knows(eve)
    assert flow.adopted() == set()
    refused = [line for line in logs if line["event"] == "pairing.refused"]
    assert refused and refused[0]["reason"] == "the invite is used"


async def test_the_answer_of_an_inviter_moves_its_address():
    inviter = Identity.generate()
    config = NodeConfig(peers=[PeerConfig("alice", inviter.peer_id_hex, "127.0.0.1:9", ["chat"])])
    flow, _, _ = make_flow(config)
    command = flow.paired(sessions_mod.InviteAnswered(inviter.peer_id, ("127.0.0.1", 9100)))
    assert command is not None and command.edit is not None
    assert command.edit(config).peer_named("alice").address == "127.0.0.1:9100"


async def test_expired_and_used_invites_are_withdrawn_and_an_expiry_is_logged_once():
    flow, _, sessions = make_flow(NodeConfig(listen="127.0.0.1:7000"))
    short = pairing.decode_code(await flow.invite([], 1, None, None)).slot
    used = pairing.decode_code(await flow.invite([], 600, None, None)).slot
    long = pairing.decode_code(await flow.invite([], 600, None, None)).slot
    assert flow.paired(sessions_mod.InviteAccepted(Identity.generate().peer_id, used, PEER_ADDR))
    later = time.time() + 5
    with structlog.testing.capture_logs() as logs:
        flow.expire(later)
        flow.expire(later)
    assert sorted(sessions.withdrawn) == sorted([short, short, used, used])
    assert long not in sessions.withdrawn
    assert [(line["event"], line["slot"]) for line in logs] == [("invite.expired", short)]


async def test_an_unanswered_acceptance_undoes_only_what_it_added():
    inviter = Identity.generate()
    code = pairing.encode_code(pairing.InviteCode(
        inviter.peer_id, bytes(16), 5, int(time.time()) + 600, ("127.0.0.1:7000",), ("chat", "news")))
    mine = NodeConfig(listen="127.0.0.1:7001", groups=["chat"])
    flow, held, sessions = make_flow(mine)
    with pytest.raises(NodeError, match="refused or did not answer"):
        await flow.accept(code, "alice", 0.1)
    assert held[0].peers == []
    assert sorted(parse_group(g) for g in held[0].all_groups()) == [parse_group("chat")]


async def test_an_answered_acceptance_keeps_the_inviter():
    inviter = Identity.generate()
    code = pairing.encode_code(pairing.InviteCode(
        inviter.peer_id, bytes(16), 5, int(time.time()) + 600, ("127.0.0.1:7000",), ("chat",)))
    flow, held, _ = make_flow(NodeConfig(listen="127.0.0.1:7001"), heard=time.time() + 60)
    result = await flow.accept(code, "alice", 5)
    assert result == {"peer": "alice", "peer_id": inviter.peer_id.hex(), "groups": ["chat"]}
    assert held[0].peer_named("alice").peer_id == inviter.peer_id
