"""Pairing as the running node does it: invite, accept, and what follows a
pairing handshake (docs/PROTOCOL.md "Pairing").

:mod:`mvds.daemon.pairing` holds what pairing is without I/O (the code
format, the invite book, the config edit that trusts a peer); the session
layer runs the handshakes (mvds/secure/session.py).  This part is the
orchestration between them and the node: it offers the book's pending
invites to the sessions, turns a session's pairing event into the config
edit that trusts the peer, withdraws invites as they expire, and runs an
acceptance to its end (trust the inviter, wait until it answers, undo on a
timeout).  It reads the wall clock (invite expiry is a wall-clock promise,
printed in the code) and awaits, so it lives apart from the sans-IO parts;
it reaches the node only through the callables it is given, which keeps
``node.py`` the shell that wires the parts together.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

import trio

from mvds.daemon import admin, pairing
from mvds.daemon.commands import Command, NodeError
from mvds.daemon.config import NodeConfig, format_address, format_utc, parse_address
from mvds.ids import parse_group
from mvds.secure import session as sessions_mod
from mvds.secure.session import SessionManager

Edit = Callable[[NodeConfig], NodeConfig]

EXPIRY_CHECK = 1.0
"""Seconds between checks for invites that expired (withdrawn from the
session layer; the acceptance checks the expiry again anyway)."""

ACCEPT_POLL = 0.05
"""Seconds between looks, while accepting, at whether the inviter answered."""


class PairingFlow:
    """The node's invites and acceptances; :class:`~mvds.daemon.node.Node`
    delegates :meth:`Node.invite` and :meth:`Node.accept` here, hands the
    session layer's pairing events to :meth:`paired` inside its step and
    runs :meth:`run` as one of its tasks."""

    def __init__(
        self,
        *,
        invites: pairing.InviteBook,
        sessions: SessionManager,
        own_id: bytes,
        log: Any,
        config: Callable[[], NodeConfig],
        port: Callable[[], int],
        check_edit: Callable[[Edit], Edit],
        submit_edit: Callable[[Edit], Awaitable[Any]],
        reach: Callable[[bytes], Awaitable[None]],
        last_heard: Callable[[bytes], float | None],
        now: Callable[[], float],
        peer_name: Callable[[bytes], str],
    ) -> None:
        """``config``: the node's current config; ``port``: the bound UDP
        port; ``check_edit``: refuse an edit at once (NodeError) or return
        it; ``submit_edit``: queue an edit and wait until its step
        committed; ``reach``: resolve a peer's address and announce this
        node to it now; ``last_heard``: when (engine time, ``now``) the
        engine last heard from a peer."""
        self.invites = invites
        self.sessions = sessions
        self.own_id = own_id
        self.log = log
        self._config = config
        self._port = port
        self._check_edit = check_edit
        self._submit_edit = submit_edit
        self._reach = reach
        self._last_heard = last_heard
        self._now = now
        self._peer_name = peer_name
        self._adopt: set[bytes] = set()
        """Peers paired since the last config swap: their session is kept
        when the config adds them (:meth:`adopted`)."""
        self._expired_logged: set[tuple[int, float]] = set()
        for invite in invites.pending(time.time()):  # a restarted node offers them again
            sessions.offer_invite(invite.slot, self._psk(invite))

    def _psk(self, invite: pairing.Invite) -> bytes:
        return pairing.invite_psk(bytes.fromhex(invite.secret), self.own_id)

    # -- the inviter -----------------------------------------------------------
    async def invite(
        self,
        groups: list[str],
        expires: float,
        name: str | None,
        addresses: list[str] | tuple[str, ...] | None,
    ) -> str:
        """:meth:`Node.invite`: everything checked before the invite is made
        and saved; then its slot is offered to the session layer."""
        config = self._config()
        try:
            for group in groups:
                admin.join(config, group)  # a bad name: refused here, nothing made
            if name is not None:
                admin.check_text("peer name", name)
                if not name:
                    raise ValueError("a peer name must not be empty")
            if addresses is None:
                host = parse_address(config.listen)[0]
                addresses = pairing.reachable_addresses(host, self._port())
            for address in addresses:
                parse_address(address)
            wall = time.time()
            invite = self.invites.create(groups, float(expires), name, wall)
            code = pairing.encode_code(pairing.InviteCode(
                self.own_id, bytes.fromhex(invite.secret), invite.slot, int(invite.expires),
                tuple(addresses), tuple(groups)))
        except ValueError as exc:  # AdminError, PairingError, a bad address
            raise NodeError(str(exc)) from None
        except OSError as exc:
            raise NodeError(f"cannot save the invite: {exc.strerror or exc}") from None
        self.sessions.offer_invite(invite.slot, self._psk(invite))
        self.log.info("invite.created", slot=invite.slot, groups=groups,
                      expires_in_s=round(invite.expires - wall, 1))
        return code

    def paired(self, event: sessions_mod.InviteAccepted | sessions_mod.InviteAnswered) -> Command | None:
        """A session-layer pairing event into the config edit that follows it
        (queued in the same step), or None when the invite cannot be used:
        the peer is then dropped from the session layer again."""
        address = format_address(*event.addr[:2])
        if isinstance(event, sessions_mod.InviteAnswered):
            self.log.info("pairing.answered", peer=self._peer_name(event.peer_id), address=address)
            return Command(edit=lambda config: pairing.set_address(config, event.peer_id, address))
        wall = time.time()
        try:
            invite = self.invites.use(event.slot, event.peer_id, wall)  # saved before trusting
        except (pairing.PairingError, OSError) as exc:
            self.sessions.remove_peer(event.peer_id)
            self.log.warning("pairing.refused", claimed_peer=event.peer_id.hex(), source=address,
                             slot=event.slot, reason=str(exc))
            return None
        name = invite.name or pairing.default_name(event.peer_id)
        self._adopt.add(event.peer_id)
        self.log.info("invite.used", slot=event.slot, peer=name, peer_id=event.peer_id.hex(),
                      source=address, groups=invite.groups)
        own = self.own_id
        return Command(edit=lambda config: pairing.trust(
            config, name, event.peer_id, address, invite.groups, own_id=own))

    def adopted(self) -> set[bytes]:
        """The peers paired since the last call (the config swap asks)."""
        adopt, self._adopt = self._adopt, set()
        return adopt

    def expire(self, wall: float) -> None:
        """Withdraw every invite no longer pending from the session layer
        (idempotent); log each expired one once."""
        pending = {i.slot for i in self.invites.pending(wall)}
        for invite in self.invites.invites:
            if invite.slot not in pending:
                self.sessions.withdraw_invite(invite.slot)
                key = (invite.slot, invite.created)
                if invite.state(wall) == "expired" and key not in self._expired_logged:
                    self._expired_logged.add(key)
                    self.log.info("invite.expired", slot=invite.slot)

    async def run(self) -> None:
        """The node's task: :meth:`expire` every :data:`EXPIRY_CHECK` seconds."""
        while True:
            await trio.sleep(EXPIRY_CHECK)
            self.expire(time.time())

    # -- the acceptor ------------------------------------------------------------
    async def accept(self, code: str, name: str | None, timeout: float) -> dict[str, Any]:
        """:meth:`Node.accept`: trust the inviter (and join the code's groups)
        through a config edit, then wait for its answer; on a timeout the
        edit is undone (when the inviter was not configured before)."""
        try:
            code_fields = pairing.decode_code(code)
        except pairing.PairingError as exc:
            raise NodeError(str(exc)) from None
        inviter = code_fields.peer_id
        if inviter == self.own_id:
            raise NodeError("this invite code was made by this node; accept it on another one")
        if name is not None:
            try:
                admin.check_text("peer name", name)
            except ValueError as exc:
                raise NodeError(str(exc)) from None
        if not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
            raise NodeError("timeout is between 0 and 3600 seconds")
        config = self._config()
        existing = config.peer_with_id(inviter)
        peer_name = existing.name if existing else (name or pairing.default_name(inviter))
        v6 = ":" in parse_address(config.listen)[0]
        targets = pairing.socket_addresses(code_fields.addresses, v6)
        if not code_fields.addresses:
            raise NodeError("the invite code holds no address")
        self.sessions.accept_invite(inviter, code_fields.psk, code_fields.slot, targets)
        started = self._now()
        had = {parse_group(g) for g in config.all_groups()}
        added_groups = [g for g in code_fields.groups if parse_group(g) not in had]
        first = code_fields.addresses[0]
        own = self.own_id
        edit = self._check_edit(lambda config: pairing.trust(
            config, peer_name, inviter, first, code_fields.groups, own_id=own))
        try:
            await self._submit_edit(edit)
        except NodeError:
            self.sessions.cancel_accept(inviter)
            raise
        entry = self._config().peer_with_id(inviter)
        await self._reach(inviter)
        with trio.move_on_after(timeout):
            while True:
                heard = self._last_heard(inviter)
                if heard is not None and heard >= started:
                    assert entry is not None
                    self.log.info("pairing.done", peer=entry.name, peer_id=inviter.hex(),
                                  groups=list(code_fields.groups))
                    return {"peer": entry.name, "peer_id": inviter.hex(),
                            "groups": list(code_fields.groups)}
                await trio.sleep(ACCEPT_POLL)
        self.sessions.cancel_accept(inviter)
        if existing is None:  # undo: the peer and the groups this pairing added

            def undo(config: NodeConfig) -> NodeConfig:
                for peer in config.peers:
                    if peer.peer_id == inviter:
                        config = admin.remove_peer(config, peer.name)
                for group in added_groups:
                    if any(parse_group(g) == parse_group(group) for g in config.all_groups()):
                        config = admin.leave(config, group)
                return config

            await self._submit_edit(undo)
        hint = ""
        if code_fields.expires <= time.time():
            hint = f" (by this machine's clock it expired {format_utc(code_fields.expires)})"
        self.log.warning("pairing.failed", peer_id=inviter.hex(), timeout_s=timeout)
        raise NodeError("the inviting node refused or did not answer: the code may be expired "
                        f"or used, or the node unreachable{hint}")
