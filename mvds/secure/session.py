"""The session layer: Noise IKpsk2 handshakes, transport sessions, paths, keepalives (sans-IO).

Like the engine, a :class:`SessionManager` has no sockets and no clock.
The caller (the daemon's datagram gate) feeds it:

- ``datagram_received(addr, data, now)`` for every datagram whose type
  byte is in :data:`SESSION_TYPES`; it returns a :class:`Received` (an
  authenticated plaintext Payload from a peer) or None;
- ``send(peer_id, payload, now)`` for every encoded Payload to a peer;
- ``tick(now)`` when ``next_timer()`` is due;

and collects ``datagrams_to_send()`` (``(addr, bytes)`` pairs) and
``events()`` after each call.  ``now`` is always a monotonic clock in
seconds; the wall clock is used for exactly one thing, the handshake
timestamp, as ``now + wall_offset``.

Lifetimes (WireGuard's numbers, see docs/PROTOCOL.md "Sessions"):

- a session's initiator starts a new handshake when the session is
  ``REKEY_AFTER_S`` old or has sent ``REKEY_AFTER_MESSAGES`` datagrams
  (its responder at ``REKEY_AFTER_S + RESPONDER_REKEY_DELAY_S``, so the
  two do not usually start at once); nothing is sent or accepted on a
  session older than ``REJECT_AFTER_S`` or past ``REJECT_AFTER_MESSAGES``;
- the session replaced by a rekey keeps receiving for
  ``KEEP_PREVIOUS_S`` (datagrams in flight), then its keys are dropped;
- a lost handshake is retried every ``REKEY_TIMEOUT_S``, ``STEADY_RETRIES``
  times, then doubling to ``MAX_RETRY_S``, plus up to ``JITTER_FRACTION`` random jitter; a peer
  without keepalives gives up after ``REKEY_ATTEMPT_S`` until the next send;
  :meth:`SessionManager.link_up` (the local radio came back) retries at once.

Nothing here is ever written to disk: nonces start at 0 in every session
and the replay windows live in memory, so a restart, a restore or a
snapshot revert simply makes a new session with new keys.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from mvds.secure import sessionwire as sw
from mvds.secure.cookie import CookieJar, HandshakeLimiter
from mvds.secure.identity import Identity
from mvds.secure.noise import HandshakeState, KeyPair, NoiseError
from mvds.secure.paths import CONFIGURED, PeerPaths, resolved_address_wins, same_address
from mvds.secure.replay import ReplayWindow

__all__ = [
    "HandshakeRefused",
    "InviteAccepted",
    "InviteAnswered",
    "PathValidated",
    "PeerReachable",
    "PeerUnreachable",
    "Received",
    "SessionEstablished",
    "SessionManager",
]

REKEY_AFTER_S = 120.0
REJECT_AFTER_S = 180.0
RESPONDER_REKEY_DELAY_S = 10.0
REKEY_AFTER_MESSAGES = 2**60
REJECT_AFTER_MESSAGES = 2**64 - 2**13 - 1
REKEY_TIMEOUT_S = 0.25
"""The wait before the first handshake retries (WireGuard waits 5 s).  Short
because bursty devices (the compose sketch: radios up 2 s of 4, 20% loss
each way at each end, the two up together 1 s of 4) must complete a
handshake inside a shared up-window.  scripts/handshake_sim.py, 1000
seeds: with 1 s retries (8, 10% jitter) and no link_up 41% completed within
the first shared window (p99 98 s); with this schedule, link_up and the
collision resend 92% (p99 9.6 s).  The responder's per-source limit (5 a
second, burst 10) is above it."""
STEADY_RETRIES = 16
"""A lost handshake is retried every REKEY_TIMEOUT_S this many times (about
5 s: a lossy link needs several tries) before the wait doubles."""
MAX_RETRY_S = 8.0
"""The longest wait between handshake attempts.  Short on purpose: a mostly
offline device is reachable in short windows, and a retry that backs off to
a minute misses them (the compose network's bursty nodes took 38 s to
handshake with 60 s); a dead peer costs one 149-byte initiation per 8 s."""
COLLISION_RESEND_S = 0.05
"""A collision (the peer's initiation while ours is pending) resends ours at
once, at most this often: the peer is up now, and with retries every
0.25 s a longer guard suppressed most of these resends (a 50 ms guard
only absorbs duplicates)."""
REPLAY_ANSWER_S = 1.0
"""A refused replayed initiation starts a handshake of ours at most this often
(a flood of replays costs at most one initiation a second)."""
JITTER_FRACTION = 0.5
"""Each retry wait is stretched by a random 0-50%: two nodes whose radios
cycle with a common period must not retry in lockstep with it (8 s waits on
a 4 s cycle hit the same phase every time with 10% jitter)."""
REKEY_ATTEMPT_S = 90.0
KEEP_PREVIOUS_S = 10.0
COOKIE_VALID_S = 115.0
"""An initiator uses a received cookie this long (the responder's secret
lives 120-240 s; 5 s margin for latency, as WireGuard)."""
DEFAULT_KEEPALIVE_S = 15.0
REACHABLE_MULTIPLE = 3
"""Reachable = an established session heard from within 3 x keepalive_s."""
REACHABLE_WITHOUT_KEEPALIVE_S = 45.0
"""The reachability window when keepalives are off (keepalive_s = 0)."""
QUEUE_MAX = 128
"""Payloads kept per peer while its handshake runs (MVDS retransmits the rest)."""
CHALLENGE_INTERVAL_S = 1.0
REPLAY_WINDOW = 8192
MAX_INVITES = 16
"""Pending invites a node offers at once (each may hold one unconfirmed
handshake from an unknown key: the state an invite costs is bounded)."""
MAX_INVITE_ADDRESSES = 4
"""Addresses an accepting node sends each initiation to (the code's list)."""


# -- outputs ---------------------------------------------------------------------
@dataclass(frozen=True)
class Received:
    """An authenticated Payload from ``peer_id``, arrived from ``addr``."""

    peer_id: bytes
    payload: bytes
    addr: Any


@dataclass(frozen=True)
class SessionEstablished:
    peer_id: bytes
    initiator: bool
    rekey: bool
    addr: Any


@dataclass(frozen=True)
class PeerReachable:
    peer_id: bytes


@dataclass(frozen=True)
class PeerUnreachable:
    peer_id: bytes
    last_heard_s: float | None = None
    """Seconds since anything was heard from the peer (None: never)."""


@dataclass(frozen=True)
class PathValidated:
    peer_id: bytes
    addr: Any


@dataclass(frozen=True)
class InviteAccepted:
    """Inviter side: the holder of invite ``slot``'s secret completed a
    handshake as ``peer_id`` (its first transport datagram confirmed the
    invite-psk session).  The peer is now known to the session layer with
    the normal psk; the caller decides whether to trust it (config)."""

    peer_id: bytes
    slot: int
    addr: Any


@dataclass(frozen=True)
class InviteAnswered:
    """Acceptor side: the inviting node answered our invite-psk handshake
    from ``addr`` (so it holds the secret); later handshakes use the normal psk."""

    peer_id: bytes
    addr: Any


@dataclass(frozen=True)
class HandshakeRefused:
    """A handshake message was refused; ``reason`` is also counted in ``counters``."""

    reason: str
    addr: Any
    peer_id: bytes | None = None
    claimed: bytes | None = None
    """For ``unknown_peer``: the static key the initiation named (decrypted,
    not proven: for diagnostics such as `mvds doctor`, never for trust)."""


# -- state -----------------------------------------------------------------------------
class Session:
    """One direction pair of transport keys, its counters and its replay window."""

    __slots__ = (
        "peer", "local_index", "remote_index", "initiator", "created", "_seal", "_open",
        "sent", "window", "response_addr",
    )

    def __init__(self, peer: "_Peer", local_index: int, remote_index: int, initiator: bool,
                 send_key: bytes, recv_key: bytes, created: float) -> None:
        self.peer = peer
        self.local_index = local_index
        self.remote_index = remote_index
        self.initiator = initiator
        self.created = created
        self._seal: ChaCha20Poly1305 | None = ChaCha20Poly1305(send_key)
        self._open: ChaCha20Poly1305 | None = ChaCha20Poly1305(recv_key)
        self.sent = 0
        self.window = ReplayWindow(REPLAY_WINDOW)
        self.response_addr: Any = None

    def usable(self, now: float) -> bool:
        return (
            self._seal is not None
            and now - self.created < REJECT_AFTER_S
            and self.sent < REJECT_AFTER_MESSAGES
        )

    def seal(self, plaintext: bytes) -> bytes:
        counter = self.sent
        self.sent += 1
        head = sw.transport_head(self.remote_index, counter)
        return head + self._seal.encrypt(sw.transport_nonce(counter), plaintext, head)  # type: ignore[union-attr]

    def open(self, counter: int, data: bytes) -> bytes | None:
        if self._open is None:
            return None
        try:
            return self._open.decrypt(
                sw.transport_nonce(counter), data[sw.TRANSPORT_HEADER_SIZE :], data[: sw.TRANSPORT_HEADER_SIZE]
            )
        except InvalidTag:
            return None

    def erase(self) -> None:
        """Drop the keys (Python cannot promise the bytes are zeroed; no reference is kept)."""
        self._seal = None
        self._open = None


class _Pending:
    """Our outstanding initiation to a peer."""

    __slots__ = ("handshake", "local_index", "mac1", "sent_at", "first_at", "attempts", "retry_at",
                 "cookie_retry_used")

    def __init__(self) -> None:
        self.handshake: HandshakeState | None = None
        self.local_index = 0
        self.mac1 = b""
        self.sent_at = 0.0
        self.first_at = 0.0
        self.attempts = 0
        self.retry_at = 0.0
        self.cookie_retry_used = False


class _Peer:
    def __init__(self, peer_id: bytes, psk: bytes | None, keepalive: bool) -> None:
        self.peer_id = peer_id
        self.psk = psk if psk is not None else sw.NO_PSK
        self.keepalive = keepalive
        self.mac1_key = sw.mac1_key(peer_id)
        self.current: Session | None = None
        self.previous: Session | None = None
        self.previous_until = 0.0
        self.next: Session | None = None  # responder side, until the initiator's first datagram
        self.pending: _Pending | None = None
        self.cookie: bytes | None = None
        self.cookie_at = 0.0
        self.greatest_timestamp = -1  # received from this peer (memory only)
        self.last_timestamp_sent = -1
        self.last_sent: float | None = None
        self.last_received: float | None = None
        self.reachable = False
        self.queue: deque[bytes] = deque(maxlen=QUEUE_MAX)
        self.paths = PeerPaths()
        self.rekeys = 0
        self.last_handshake: float | None = None
        self.last_initiated: float | None = None
        self.next_attempt = 0.0  # keepalive peers without a session: next handshake try
        self.failed_attempts = 0
        self.clock_skew: float | None = None
        """Its wall clock minus ours (s), from its last accepted initiation's timestamp."""

    def sessions(self) -> list[Session]:
        return [s for s in (self.current, self.previous, self.next) if s is not None]


class SessionManager:
    """All sessions of one node (see the module docstring for the calling contract)."""

    def __init__(
        self,
        identity: Identity,
        *,
        keepalive_s: float = DEFAULT_KEEPALIVE_S,
        wall_offset: float | None = None,
        rng: random.Random | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        limiter: HandshakeLimiter | None = None,
    ) -> None:
        if keepalive_s < 0:
            raise ValueError("keepalive_s must be >= 0 (0 = off)")
        self.identity = identity
        self._static = KeyPair(identity._private)  # noqa: SLF001 (same package)
        self.public = self._static.public
        self._mac1_key = sw.mac1_key(self.public)
        self.keepalive_s = float(keepalive_s)
        # The wall clock is read here once (unless given): timestamps are
        # now + wall_offset, so every later input stays the caller's monotonic now.
        self.wall_offset = time.time() - time.monotonic() if wall_offset is None else wall_offset
        self._rng = rng or random.SystemRandom()
        self._random_bytes = random_bytes
        self._cookies = CookieJar(random_bytes)
        self._limiter = limiter or HandshakeLimiter()
        self._peers: dict[bytes, _Peer] = {}
        self._sessions: dict[int, Session] = {}
        self._pending: dict[int, _Peer] = {}
        self._out: list[tuple[Any, bytes]] = []
        self._events: list[Any] = []
        self.counters: Counter[str] = Counter()
        # Pairing (docs/PROTOCOL.md "Pairing"): invites we offer, slot -> psk,
        # and per slot at most one handshake from a key we do not know yet;
        # invites we accept, inviter id -> (psk, slot, extra addresses).
        self._invites: dict[int, bytes] = {}
        self._invitees: dict[int, _Peer] = {}
        self._invite_sessions: dict[int, int] = {}  # local index -> slot
        self._accepting: dict[bytes, tuple[bytes, int, tuple[Any, ...]]] = {}

    # -- configuration ---------------------------------------------------------------
    def add_peer(self, peer_id: bytes, address: Any = None, *, keepalive: bool = False,
                 psk: bytes | None = None) -> None:
        """Trust ``peer_id`` (its static X25519 key); ``address`` is the resolved configured one."""
        peer_id = bytes(peer_id)
        if peer_id == self.public:
            raise ValueError("a node cannot add itself as a peer")
        self.identity.shared_secret(peer_id)  # ValueError for an unusable key
        if psk is not None and len(psk) != 32:
            raise ValueError("a psk is 32 bytes")
        peer = self._peers.get(peer_id)
        if peer is None:
            peer = self._peers[peer_id] = _Peer(peer_id, psk, keepalive)
        else:
            peer.keepalive = keepalive
            peer.psk = psk if psk is not None else sw.NO_PSK
        if address is not None and peer.paths.endpoint is None:
            peer.paths.endpoint = address
            peer.paths.state = CONFIGURED
            peer.paths.configured = address

    # -- pairing --------------------------------------------------------------------
    def offer_invite(self, slot: int, psk: bytes) -> None:
        """Accept initiations that carry invite ``slot`` (1-127) and prove ``psk``."""
        if not 1 <= slot <= 127 or len(psk) != 32:
            raise ValueError("an invite slot is 1-127 and its psk 32 bytes")
        if slot not in self._invites and len(self._invites) >= MAX_INVITES:
            raise ValueError(f"at most {MAX_INVITES} pending invites")
        self._invites[slot] = bytes(psk)

    def withdraw_invite(self, slot: int) -> None:
        """Forget invite ``slot`` and any unconfirmed handshake made with it."""
        self._invites.pop(slot, None)
        self._drop_invitee(slot)

    def _drop_invitee(self, slot: int) -> None:
        peer = self._invitees.pop(slot, None)
        if peer is not None and self._peers.get(peer.peer_id) is not peer:
            for session in peer.sessions():
                self._invite_sessions.pop(session.local_index, None)
                self._erase(session)

    def accept_invite(self, peer_id: bytes, psk: bytes, slot: int, addresses: Any = ()) -> None:
        """Our next handshakes with ``peer_id`` carry invite ``slot`` and use
        ``psk``, sent to its path and to ``addresses`` too, until one is answered."""
        if not 1 <= slot <= 127 or len(psk) != 32:
            raise ValueError("an invite slot is 1-127 and its psk 32 bytes")
        self._accepting[bytes(peer_id)] = (bytes(psk), slot, tuple(addresses)[:MAX_INVITE_ADDRESSES])
        peer = self._peers.get(bytes(peer_id))
        if peer is not None:
            self._drop_pending(peer)

    def cancel_accept(self, peer_id: bytes) -> None:
        self._accepting.pop(bytes(peer_id), None)

    def knows(self, peer_id: bytes) -> bool:
        """Whether ``peer_id`` is a peer here (configured, or just paired)."""
        return bytes(peer_id) in self._peers

    def remove_peer(self, peer_id: bytes) -> None:
        peer = self._peers.pop(bytes(peer_id), None)
        if peer is not None:
            self._drop_pending(peer)
            for session in peer.sessions():
                self._erase(session)

    def set_keepalive(self, peer_id: bytes, wanted: bool) -> None:
        """Mark whether ``peer_id`` gets keepalives (the daemon: it shares a group with us)."""
        self._peers[peer_id].keepalive = wanted

    def address_resolved(self, peer_id: bytes, addr: Any, now: float) -> bool:
        """The caller re-resolved the peer's configured name to ``addr``; True if it is now used.

        See :func:`mvds.secure.paths.resolved_address_wins` for the rule.
        """
        peer = self._peers[peer_id]
        paths = peer.paths
        wins = resolved_address_wins(
            endpoint=paths.endpoint, endpoint_state=paths.state,
            endpoint_last_heard=paths.last_heard, previous_resolved=paths.configured,
            new_resolved=addr, now=now, silence_s=self.reachable_window,
        )
        paths.configured = addr
        if wins:
            paths.endpoint = addr
            paths.state = CONFIGURED
            paths.last_heard = None
        return wins

    @property
    def reachable_window(self) -> float:
        if self.keepalive_s > 0:
            return REACHABLE_MULTIPLE * self.keepalive_s
        return REACHABLE_WITHOUT_KEEPALIVE_S

    # -- outputs ---------------------------------------------------------------------------
    def datagrams_to_send(self) -> list[tuple[Any, bytes]]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[Any]:
        out, self._events = self._events, []
        return out

    def _refuse(
        self, reason: str, addr: Any, peer: _Peer | None = None, claimed: bytes | None = None
    ) -> None:
        self.counters[reason] += 1
        self._events.append(
            HandshakeRefused(reason, addr, peer.peer_id if peer else None, claimed)
        )

    def _drop(self, reason: str) -> None:
        self.counters[reason] += 1

    def _emit(self, peer: _Peer, addr: Any, data: bytes) -> bool:
        """Queue one datagram to ``addr`` for ``peer``, within the path's amplification limit."""
        if addr is None:
            self.counters["no_address"] += 1
            return False
        if not peer.paths.may_send(addr, len(data)):
            self.counters["amplification_limited"] += 1
            return False
        self._out.append((addr, data))
        return True

    # -- input -----------------------------------------------------------------------------------
    def datagram_received(self, addr: Any, data: bytes, now: float) -> Received | None:
        if type(data) is not bytes:
            data = bytes(data)
        if not data:
            self._drop("truncated")
            return None
        kind = data[0]
        if kind == sw.TYPE_TRANSPORT:
            return self._on_transport(addr, data, now)
        if kind == sw.TYPE_INITIATION:
            self._on_initiation(addr, data, now)
        elif kind == sw.TYPE_RESPONSE:
            self._on_response(addr, data, now)
        elif kind == sw.TYPE_COOKIE_REPLY:
            self._on_cookie_reply(addr, data, now)
        else:
            self._drop("bad_version")
        return None

    def _on_initiation(self, addr: Any, data: bytes, now: float) -> None:
        if len(data) != sw.INITIATION_SIZE:
            return self._refuse("bad_length", addr)
        if not sw.check_mac1(data, self._mac1_key):
            return self._refuse("bad_mac1", addr)
        if self._limiter.under_load(now) and not self._cookies.valid_mac2(data, addr, now):
            sender_index, _ = sw.parse_initiation(data)
            reply = sw.seal_cookie_reply(
                sender_index, self._cookies.cookie(addr, now), self.public,
                data[-32:-16], self._random_bytes(12),
            )
            self._out.append((addr, reply))  # 52 bytes for 148: no amplification
            self.counters["cookie_sent"] += 1
            return None
        if not self._limiter.source_allows(addr, now):
            return self._refuse("rate_limited", addr)
        sender_index, message = sw.parse_initiation(data)
        handshake = HandshakeState(
            sw.PROTOCOL_PATTERN, False, sw.PROLOGUE, self._static, psk=sw.NO_PSK
        )
        found: list[_Peer] = []
        unknown: list[bytes] = []

        def check_static(rs: bytes) -> None:
            peer = self._peers.get(rs)
            if peer is None:
                unknown.append(bytes(rs))
                if not self._invites:
                    raise LookupError
                return  # an invite may vouch for it: decided after the payload
            handshake.psk = peer.psk
            found.append(peer)

        try:
            payload = handshake.read_message(message, check_static=check_static)
        except LookupError:
            return self._refuse("unknown_peer", addr, claimed=unknown[0] if unknown else None)
        except NoiseError:
            return self._refuse("handshake_failed", addr, found[0] if found else None)
        if len(payload) != sw.INITIATION_PAYLOAD_SIZE:
            return self._refuse("handshake_failed", addr, found[0] if found else None)
        # Pairing: the flags byte's upper 7 bits name an invite slot.  IKpsk2
        # mixes the psk into the RESPONSE, so the initiation reads the same
        # with any psk; the invite's psk is chosen here and proved by the
        # initiator's first transport datagram (see _on_transport).
        slot = payload[sw.TIMESTAMP_SIZE] >> 1
        invite_psk = self._invites.get(slot) if slot else None
        if found:
            peer = found[0]
        elif invite_psk is None:
            return self._refuse("unknown_peer", addr, claimed=unknown[0])
        else:
            peer = self._invitee(slot, unknown[0])
        if invite_psk is not None:
            handshake.psk = invite_psk
        timestamp = int.from_bytes(payload[: sw.TIMESTAMP_SIZE], "big")
        yielding = bool(payload[sw.TIMESTAMP_SIZE] & sw.FLAG_ANSWER)
        if timestamp <= peer.greatest_timestamp:
            self._refuse("handshake_replay", addr, peer)
            # A replay, or the peer restarted with its clock behind: start a
            # handshake of our own (to its known path; to this source only
            # within the amplification limit), which cannot be replayed.
            peer.paths.heard(addr, len(data), now)
            if peer.pending is None and (
                peer.last_initiated is None or now - peer.last_initiated >= REPLAY_ANSWER_S
            ):
                self._initiate(peer, now, extra_addr=addr, answer=True)
            return None
        peer.greatest_timestamp = timestamp
        # Its wall clock at sending minus ours now (the one-way delay, ms,
        # is the error): mvds doctor reports a large skew.
        peer.clock_skew = sw.timestamp_seconds(timestamp) - (now + self.wall_offset)
        if peer.pending is not None:
            if self.public < peer.peer_id and not yielding:
                # Both initiated: the smaller public key's initiation wins, unless
                # the peer's initiation answers one of ours it refused as stale
                # (we restarted with the clock behind): then ours cannot succeed.
                self._refuse("collision", addr, peer)
                # The peer is up and has not got our initiation (lost, or
                # still on its way): a fresh one now, not after the retry wait.
                if peer.last_initiated is None or now - peer.last_initiated >= COLLISION_RESEND_S:
                    self._initiate(peer, now)
                return None
            self._drop_pending(peer)
        local_index = self._new_index()
        body = sw.response_head(local_index, sender_index) + handshake.write_message(b"")
        send, recv = handshake.split()
        session = Session(peer, local_index, sender_index, False, send.key, recv.key, now)  # type: ignore[arg-type]
        send.clear(), recv.clear()
        session.response_addr = addr
        if peer.next is not None:
            self._erase(peer.next)
        peer.next = session
        self._sessions[local_index] = session
        if invite_psk is not None:
            self._invite_sessions[local_index] = slot
        peer.paths.heard(addr, len(data), now)
        response, _ = sw.add_macs(body, peer.mac1_key, None)
        self._emit(peer, addr, response)
        self.counters["handshake_responded"] += 1
        return None

    def _invitee(self, slot: int, peer_id: bytes) -> _Peer:
        """The unconfirmed peer of invite ``slot``: one per slot (a newer key
        replaces an older one's handshake; the real acceptor simply retries)."""
        peer = self._invitees.get(slot)
        if peer is None or peer.peer_id != peer_id:
            self._drop_invitee(slot)
            peer = self._invitees[slot] = _Peer(peer_id, None, False)
        return peer

    def _invite_confirmed(self, peer: _Peer, slot: int, addr: Any) -> None:
        """The invite's secret is proved: the invite is used up (in memory at
        once, so a second acceptor cannot race in) and the peer known with
        the normal psk; the caller makes it trusted (or removes it)."""
        self._invites.pop(slot, None)
        if self._invitees.get(slot) is peer:
            del self._invitees[slot]
        self._drop_invitee(slot)
        self._peers[peer.peer_id] = peer
        peer.psk = sw.NO_PSK
        self.counters["invite_accepted"] += 1
        self._events.append(InviteAccepted(peer.peer_id, slot, addr))

    def _on_response(self, addr: Any, data: bytes, now: float) -> None:
        if len(data) != sw.RESPONSE_SIZE:
            return self._refuse("bad_length", addr)
        if not sw.check_mac1(data, self._mac1_key):
            return self._refuse("bad_mac1", addr)
        sender_index, receiver_index, message = sw.parse_response(data)
        peer = self._pending.get(receiver_index)
        if peer is None or peer.pending is None:
            return self._refuse("unknown_index", addr)
        handshake = peer.pending.handshake
        try:
            handshake.read_message(message)  # type: ignore[union-attr]
        except NoiseError:
            return self._refuse("handshake_failed", addr, peer)
        send, recv = handshake.split()  # type: ignore[union-attr]
        if self._accepting.pop(peer.peer_id, None) is not None:
            # The inviter answered with the invite's psk: it holds the code.
            self._events.append(InviteAnswered(peer.peer_id, addr))
        local_index = peer.pending.local_index
        del self._pending[local_index]
        peer.pending = None
        session = Session(peer, local_index, sender_index, True, send.key, recv.key, now)  # type: ignore[arg-type]
        send.clear(), recv.clear()
        self._sessions[local_index] = session
        self._install(peer, session, addr, now)
        if peer.next is not None:
            # We answered one of the peer's initiations, unconfirmed so far,
            # and our own handshake completed after it: ours is the newer, and
            # the answered one must never become current later (the peer may
            # already use it, so it keeps receiving, as the previous session).
            # Promoting it on its first datagram would leave the two sides
            # each sending on a session the other holds only as previous, and
            # both directions dead once that expires (WireGuard demotes the
            # same way).
            demoted, peer.next = peer.next, None
            if peer.previous is not None:
                self._erase(peer.previous)
            peer.previous = demoted
            peer.previous_until = now + KEEP_PREVIOUS_S
        paths = peer.paths
        if same_address(addr, paths.endpoint):
            if paths.validate(addr, now):
                self._events.append(PathValidated(peer.peer_id, addr))
        else:
            self._candidate_heard(peer, addr, len(data), now)
        self._heard(peer, now)
        # Confirm the session to the responder: queued payloads, or a keepalive.
        if not self._flush_queue(peer, session, now):
            self._emit(peer, paths.target(), session.seal(b""))
            peer.last_sent = now

    def _flush_queue(self, peer: _Peer, session: Session, now: float) -> bool:
        """Send the payloads queued during the handshake; False if there were none."""
        if not peer.queue:
            return False
        target = peer.paths.target()
        while peer.queue:
            self._emit(peer, target, session.seal(bytes((sw.FRAME_DATA,)) + peer.queue.popleft()))
        peer.last_sent = now
        return True

    def _on_cookie_reply(self, addr: Any, data: bytes, now: float) -> None:
        if len(data) != sw.COOKIE_REPLY_SIZE:
            return self._refuse("bad_length", addr)
        receiver_index, nonce, sealed = sw.parse_cookie_reply(data)
        peer = self._pending.get(receiver_index)
        if peer is None or peer.pending is None:
            return self._refuse("unknown_index", addr)
        cookie = sw.open_cookie_reply(nonce, sealed, peer.peer_id, peer.pending.mac1)
        if cookie is None:
            return self._refuse("bad_cookie", addr, peer)
        peer.cookie, peer.cookie_at = cookie, now
        self.counters["cookie_received"] += 1
        if not peer.pending.cookie_retry_used:
            # Retry at once, once per handshake (a forged reply cannot make us loop).
            self._initiate(peer, now)
            peer.pending.cookie_retry_used = True
        return None

    def _on_transport(self, addr: Any, data: bytes, now: float) -> Received | None:
        if len(data) < sw.TRANSPORT_HEADER_SIZE + 16:
            self._drop("truncated")
            return None
        receiver_index, counter = sw.parse_transport_head(data)
        session = self._sessions.get(receiver_index)
        if session is None:
            self._drop("unknown_index")
            return None
        if now - session.created >= REJECT_AFTER_S or counter >= REJECT_AFTER_MESSAGES:
            self._drop("expired")
            return None
        if not session.window.check(counter):
            self._drop("replay")
            return None
        plaintext = session.open(counter, data)
        if plaintext is None:
            self._drop("auth_failed")
            return None
        session.window.accept(counter)
        peer = session.peer
        if session is peer.next:
            # The initiator's first datagram confirms the responder's session.
            slot = self._invite_sessions.pop(session.local_index, None)
            if slot is not None:
                self._invite_confirmed(peer, slot, addr)
            peer.next = None
            self._install(peer, session, addr, now)
            # A fresh session is up: an initiation of ours still pending is
            # redundant (its late response is refused as unknown_index).
            self._drop_pending(peer)
            if same_address(addr, session.response_addr):
                if peer.paths.validate(addr, now):
                    self._events.append(PathValidated(peer.peer_id, addr))
            self._flush_queue(peer, session, now)
        if not same_address(addr, peer.paths.endpoint):
            self._candidate_heard(peer, addr, len(data), now)
        else:
            peer.paths.last_heard = now
        self._heard(peer, now)
        if not plaintext:
            self.counters["keepalive_received"] += 1
            return None
        frame = plaintext[0]
        if frame == sw.FRAME_DATA:
            return Received(peer.peer_id, plaintext[1:], addr)
        if frame == sw.FRAME_PATH_CHALLENGE and len(plaintext) == 1 + sw.CHALLENGE_SIZE:
            reply_session = peer.current if peer.current is not None and peer.current.usable(now) else session
            if reply_session.usable(now):
                self._emit(peer, addr, reply_session.seal(bytes((sw.FRAME_PATH_RESPONSE,)) + plaintext[1:]))
            return None
        if frame == sw.FRAME_PATH_RESPONSE and len(plaintext) == 1 + sw.CHALLENGE_SIZE:
            candidate = peer.paths.candidates.get(tuple(addr[:2]))
            if candidate is not None and candidate.challenge == plaintext[1:]:
                peer.paths.validate(addr, now)
                self._events.append(PathValidated(peer.peer_id, addr))
            return None
        self._drop("malformed")
        return None

    def _candidate_heard(self, peer: _Peer, addr: Any, size: int, now: float) -> None:
        candidate = peer.paths.heard(addr, size, now)
        if candidate is None:
            return
        session = peer.current
        if session is None or not session.usable(now):
            return
        if candidate.challenged_at is not None and now - candidate.challenged_at < CHALLENGE_INTERVAL_S:
            return
        challenge = self._random_bytes(sw.CHALLENGE_SIZE)
        datagram = session.seal(bytes((sw.FRAME_PATH_CHALLENGE,)) + challenge)
        if self._emit(peer, addr, datagram):
            candidate.challenge = challenge
            candidate.challenged_at = now
            self.counters["path_challenge_sent"] += 1

    def _heard(self, peer: _Peer, now: float) -> None:
        peer.last_received = now
        if not peer.reachable and peer.current is not None:
            peer.reachable = True
            self._events.append(PeerReachable(peer.peer_id))

    def _install(self, peer: _Peer, session: Session, addr: Any, now: float) -> None:
        rekey = peer.current is not None
        if peer.previous is not None:
            self._erase(peer.previous)
        peer.previous = peer.current
        peer.previous_until = now + KEEP_PREVIOUS_S
        peer.current = session
        peer.last_handshake = now
        peer.failed_attempts = 0
        if rekey:
            peer.rekeys += 1
        self._events.append(SessionEstablished(peer.peer_id, session.initiator, rekey, addr))

    def _erase(self, session: Session) -> None:
        session.erase()
        self._sessions.pop(session.local_index, None)
        self._invite_sessions.pop(session.local_index, None)

    # -- sending ---------------------------------------------------------------------------------
    def send(self, peer_id: bytes, payload: bytes, now: float) -> None:
        """Seal ``payload`` (an encoded Payload) to ``peer_id``, or queue it while a handshake runs."""
        peer = self._peers[peer_id]
        session = peer.current
        if session is not None and session.usable(now):
            self._emit(peer, peer.paths.target(), session.seal(bytes((sw.FRAME_DATA,)) + payload))
            peer.last_sent = now
            self._maybe_rekey(peer, session, now)
            return
        peer.queue.append(payload)
        if peer.pending is None:
            self._initiate(peer, now)

    def _maybe_rekey(self, peer: _Peer, session: Session, now: float) -> None:
        if peer.pending is not None:
            return
        age = now - session.created
        due = REKEY_AFTER_S if session.initiator else REKEY_AFTER_S + RESPONDER_REKEY_DELAY_S
        if age >= due or session.sent >= REKEY_AFTER_MESSAGES:
            self._initiate(peer, now)

    def _new_index(self) -> int:
        while True:
            index = self._rng.getrandbits(32)
            if index not in self._sessions and index not in self._pending:
                return index

    def _drop_pending(self, peer: _Peer) -> None:
        if peer.pending is not None:
            self._pending.pop(peer.pending.local_index, None)
            peer.pending.handshake = None
            peer.pending = None

    def _timestamp(self, peer: _Peer, now: float) -> bytes:
        value = max(sw.timestamp_value(now + self.wall_offset), peer.last_timestamp_sent + 1)
        peer.last_timestamp_sent = value
        return sw.timestamp_bytes(value)

    def _initiate(self, peer: _Peer, now: float, extra_addr: Any = None, answer: bool = False) -> None:
        """Send a fresh initiation (new ephemeral key, new timestamp) and arm its retry."""
        pending = peer.pending
        if pending is None:
            pending = peer.pending = _Pending()
            pending.first_at = now
        else:
            self._pending.pop(pending.local_index, None)
        pending.local_index = self._new_index()
        self._pending[pending.local_index] = peer
        psk, flags, extra = peer.psk, sw.FLAG_ANSWER if answer else 0, ()
        invite = self._accepting.get(peer.peer_id)
        if invite is not None:  # pairing: the invite's psk and slot, to every address
            psk, slot, extra = invite
            flags |= slot << 1
        pending.handshake = HandshakeState(
            sw.PROTOCOL_PATTERN, True, sw.PROLOGUE, self._static,
            remote_static=peer.peer_id, psk=psk,
        )
        body = sw.initiation_head(pending.local_index) + pending.handshake.write_message(
            self._timestamp(peer, now) + bytes((flags,))
        )
        cookie = peer.cookie if peer.cookie is not None and now - peer.cookie_at < COOKIE_VALID_S else None
        message, pending.mac1 = sw.add_macs(body, peer.mac1_key, cookie)
        pending.sent_at = now
        doublings = min(max(0, pending.attempts - STEADY_RETRIES + 1), 8)
        delay = min(REKEY_TIMEOUT_S * 2**doublings, MAX_RETRY_S)
        pending.retry_at = now + delay * (1 + JITTER_FRACTION * self._rng.random())
        pending.attempts += 1
        peer.last_initiated = now
        self.counters["handshake_initiated"] += 1
        target = peer.paths.target()
        self._emit(peer, target, message)
        if extra_addr is not None and not same_address(extra_addr, target):
            self._emit(peer, extra_addr, message)
        for address in extra:
            if not same_address(address, target) and not same_address(address, extra_addr):
                self._out.append((address, message))

    def link_up(self, now: float) -> None:
        """The local link came back up (the daemon: its radio schedule turned
        it on): every handshake still pending goes out again at once, and a
        keepalive peer without a session gets an initiation at once.

        Why: the start of our up-window is the best moment to try, and the
        retries made while the link was down were lost on the way out.  The
        backoff is not reset: a dead peer costs one more initiation per
        transition, not a burst of fast retries (resetting it gained nothing
        measurable in scripts/handshake_sim.py).
        """
        for peer in self._peers.values():
            pending = peer.pending
            if pending is not None:
                if pending.sent_at < now:
                    self._initiate(peer, now)
            elif peer.keepalive and self.keepalive_s > 0 and (
                peer.current is None or not peer.current.usable(now)
            ):
                peer.next_attempt = now
                self._initiate(peer, now)

    # -- timers ------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Run every timer that is due at ``now``."""
        for peer in list(self._peers.values()):
            pending = peer.pending
            if pending is not None and now >= pending.retry_at:
                if not peer.keepalive and now - pending.first_at >= REKEY_ATTEMPT_S:
                    self._drop_pending(peer)
                    peer.queue.clear()
                    self.counters["handshake_gave_up"] += 1
                else:
                    self._initiate(peer, now)
            if peer.previous is not None and now >= peer.previous_until:
                self._erase(peer.previous)
                peer.previous = None
            for slot in ("current", "next"):
                session = getattr(peer, slot)
                if session is not None and now - session.created >= REJECT_AFTER_S:
                    self._erase(session)
                    setattr(peer, slot, None)
            if peer.reachable and (
                peer.current is None
                or peer.last_received is None
                or now - peer.last_received >= self.reachable_window
            ):
                peer.reachable = False
                silent = None if peer.last_received is None else now - peer.last_received
                self._events.append(PeerUnreachable(peer.peer_id, silent))
            if peer.keepalive and self.keepalive_s > 0:
                session = peer.current
                if session is not None and session.usable(now):
                    if peer.last_sent is None or now - peer.last_sent >= self.keepalive_s:
                        self._emit(peer, peer.paths.target(), session.seal(b""))
                        peer.last_sent = now
                        self.counters["keepalive_sent"] += 1
                    self._maybe_rekey(peer, session, now)
                elif peer.pending is None and now >= peer.next_attempt:
                    peer.failed_attempts += 1
                    peer.next_attempt = now + min(
                        REKEY_TIMEOUT_S * 2 ** min(peer.failed_attempts, 8), MAX_RETRY_S
                    )
                    self._initiate(peer, now)

    def next_timer(self) -> float | None:
        """The earliest monotonic time at which :meth:`tick` has work, or None."""
        times: list[float] = []
        for peer in self._peers.values():
            if peer.pending is not None:
                times.append(peer.pending.retry_at)
            if peer.previous is not None:
                times.append(peer.previous_until)
            for session in (peer.current, peer.next):
                if session is not None:
                    times.append(session.created + REJECT_AFTER_S)
            if peer.reachable and peer.last_received is not None:
                times.append(peer.last_received + self.reachable_window)
            if peer.keepalive and self.keepalive_s > 0:
                session = peer.current
                if session is not None:
                    since = peer.last_sent if peer.last_sent is not None else session.created
                    times.append(since + self.keepalive_s)
                    due = REKEY_AFTER_S if session.initiator else REKEY_AFTER_S + RESPONDER_REKEY_DELAY_S
                    if peer.pending is None:
                        times.append(session.created + due)
                elif peer.pending is None:
                    times.append(peer.next_attempt)
        return min(times) if times else None

    # -- status ------------------------------------------------------------------------------------
    def is_reachable(self, peer_id: bytes) -> bool:
        return self._peers[peer_id].reachable

    def status(self, peer_id: bytes, now: float) -> dict[str, Any]:
        """Per-peer status for `mvds status` and metrics (all times are ages in seconds)."""
        peer = self._peers[peer_id]
        paths = peer.paths
        current = peer.current
        return {
            "established": current is not None and current.usable(now),
            "reachable": peer.reachable,
            "session_age_s": None if current is None else now - current.created,
            "last_handshake_s": None if peer.last_handshake is None else now - peer.last_handshake,
            "last_heard_s": None if peer.last_received is None else now - peer.last_received,
            "rekeys": peer.rekeys,
            "handshake_pending": peer.pending is not None,
            "path": {"address": paths.endpoint, "state": paths.state},
            "candidates": [
                {"address": c.address, "state": "candidate", "allowance_bytes": c.allowance}
                for c in paths.candidates.values()
            ],
            "keepalive": peer.keepalive and self.keepalive_s > 0,
            "clock_skew_s": peer.clock_skew,
        }

    def state_size(self) -> dict[str, int]:
        """How much state the manager holds (tests: floods must not grow it)."""
        return {
            "sessions": len(self._sessions),
            "pending": len(self._pending),
            "sources": self._limiter.sources_tracked,
            "candidates": sum(len(p.paths.candidates) for p in self._peers.values()),
        }
