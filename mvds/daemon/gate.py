"""The datagram gate: bytes in -> ``(peer, Payload)`` or a counted drop;
``(peer, Payload)`` out -> datagrams (sans-IO).

Two envelopes share the socket, told apart by the first byte:

- **sessions** (types 0x03-0x06, every peer not configured ``plaintext``):
  :class:`~mvds.secure.session.SessionManager` runs the Noise IK
  handshakes, opens and seals transport datagrams with per-session keys
  (nonces and replay windows in memory only), validates paths and sends
  keepalives; it decides where a peer's datagrams go;
- **plaintext** (0x02, interop testing only): :class:`Envelope`, today
  :class:`~mvds.secure.EnvelopeCodec`, sent to the address in the peer
  registry.

Incoming, in this order, each step cheaper than the next and none of them
trusting the one before: the envelope is opened (unknown or forged senders,
replays, garbage: dropped before any protobuf parsing), the sender's byte
budget is spent (after authentication, so a forger cannot use up a peer's
budget), the payload is decoded and the peer's counters updated.  A
plaintext peer's address is learned from its datagrams (it proves nothing,
as plaintext never does); a session peer's paths are the session layer's.

Outgoing, a payload is split to fit ``max_datagram`` after the envelope's
overhead and each piece sealed.  Sealing touches only memory: the node
seals after its store transaction committed, so a step that fails to
commit sends nothing and uses up nothing.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from mvds.daemon.config import format_address
from mvds.daemon.diagnose import UnknownSenders
from mvds.daemon.logthrottle import LogThrottle
from mvds.daemon.peers import PeerRegistry
from mvds.secure import EnvelopeError
from mvds.secure import sessionwire
from mvds.secure.session import SessionManager
from mvds.wire import Payload, WireError, decode_payload, split_payload


class Envelope(Protocol):
    """What the gate needs of the plaintext envelope."""

    def open(self, data: bytes) -> tuple[bytes, bytes]: ...

    def seal(self, peer_id: bytes, plaintext: bytes) -> bytes: ...

    def overhead(self, peer_id: bytes) -> int: ...


class DatagramGate:
    """Datagrams to payloads and back, for the peers in ``peers``."""

    def __init__(
        self,
        envelope: Envelope,
        peers: PeerRegistry,
        *,
        sessions: SessionManager,
        max_datagram: int,
        drop_log_interval: float,
        log: Any,
    ) -> None:
        self.envelope = envelope
        self.sessions = sessions
        self.peers = peers
        self.max_datagram = max_datagram
        self.log = log
        self.drops = LogThrottle(interval=drop_log_interval)
        """Datagrams dropped before the engine, by reason (rate-limited logging)."""
        self._session_drops: dict[str, int] = {}
        self.unknown = UnknownSenders()
        """Who the ``unknown_peer`` drops claimed to be (mvds doctor)."""

    def open(self, data: bytes, addr: Any, clock: float) -> tuple[bytes, Payload] | None:
        """The sender and payload of an incoming datagram, or None (dropped and
        counted, or a session datagram without a payload: handshake, keepalive,
        path probe).  ``clock`` is monotonic seconds."""
        if data and data[0] in sessionwire.SESSION_TYPES:
            received = self.sessions.datagram_received(addr, data, clock)
            if received is None:  # a drop, or a handshake/keepalive/path datagram
                self._count_session_drops(addr, clock)
                return None
            peer_id, plain = received.peer_id, received.payload
            state = self.peers.get(peer_id)
            if state is None and self.sessions.knows(peer_id):
                # Just paired (an invite): its config entry comes with this
                # step's commit; MVDS resends the payload.  Not a warning.
                self.drops.counts["pairing_pending"] += 1
                return None
            if state is None or state.config.plaintext:
                self.drop("unknown_peer", addr, clock)
                return None
        else:
            try:
                peer_id, plain = self.envelope.open(data)
            except EnvelopeError as exc:
                claimed = exc.claimed
                if claimed is not None:
                    self.unknown.seen(claimed, format_address(*addr[:2]), time.time())
                self.drop(exc.reason, addr, clock, claimed=claimed)
                return None
            state = self.peers.get(peer_id)
            if state is None:  # removed while its datagram was queued
                self.drop("unknown_peer", addr, clock, claimed=peer_id)
                return None
            if state.address is None or state.address[:2] != addr[:2]:
                if state.address is not None:
                    self.log.info(
                        "peer.address_changed", peer=state.config.name,
                        old=format_address(*state.address[:2]), new=format_address(*addr[:2]),
                    )
                state.address = addr
        # Spent after authentication, so a forger cannot use up a peer's budget.
        if state.budget is not None and not state.budget.allow(len(data), clock):
            state.counters["rate_limited"] += 1
            self.drop("rate_limited", addr, clock)
            return None
        try:
            payload = decode_payload(plain)
        except WireError as exc:
            self.drop("malformed", addr, clock, detail=str(exc))
            return None
        counters = state.counters
        counters["datagrams_in"] += 1
        counters["bytes_in"] += len(data)
        return peer_id, payload

    _SESSION_DROPS = {
        # transport datagrams
        "truncated": "truncated", "unknown_index": "unknown_index", "expired": "expired",
        "replay": "replay", "auth_failed": "auth_failed", "malformed": "malformed",
        "bad_version": "bad_version",
        # handshake messages refused (also reported as HandshakeRefused events)
        "bad_length": "truncated", "bad_mac1": "auth_failed", "bad_cookie": "auth_failed",
        "unknown_peer": "unknown_peer", "handshake_failed": "auth_failed",
        "handshake_replay": "handshake_replay", "rate_limited": "handshake_rate_limited",
        "collision": "handshake_collision",
    }
    """Session-layer counter -> the gate's drop reason."""

    EXPECTED_DROPS = frozenset({"handshake_collision"})
    """Drops that are part of the protocol working, logged at debug only."""

    def _count_session_drops(self, addr: Any, clock: float) -> None:
        """Mirror the session layer's drop counters into the gate's (logged, throttled)."""
        counters = self.sessions.counters
        seen = self._session_drops
        for counter, reason in self._SESSION_DROPS.items():
            now_count = counters[counter]
            before = seen.get(counter, 0)
            if now_count != before:
                seen[counter] = now_count
                for _ in range(now_count - before):
                    self.drop(reason, addr, clock)

    def drop(
        self, reason: str, addr: Any, clock: float, detail: str | None = None,
        claimed: bytes | None = None,
    ) -> None:
        """Count a dropped datagram; log it unless this reason was logged lately
        (with the sender id it claimed, for ``unknown_peer``)."""
        count = self.drops.count(reason, clock)
        if count is not None:
            fields: dict[str, Any] = {"reason": reason, "source": format_address(*addr[:2]), "count": count}
            if claimed is not None:
                fields["claimed_peer"] = claimed.hex()
            if detail:
                fields["detail"] = detail
            # Both sides initiating at once is normal start-up (one initiation
            # wins): counted, logged at debug, not a warning.
            level = self.log.debug if reason in self.EXPECTED_DROPS else self.log.warning
            level("datagram.dropped", **fields)

    def seal(self, peer_id: bytes, payload: Payload, clock: float) -> list[tuple[bytes, Any]]:
        """The datagrams (with their destination) that carry ``payload``.

        A session peer's datagrams may include a handshake (its payloads
        wait in the session layer until the session is up) or be fewer
        than the pieces (an unvalidated path's byte limit).
        """
        state = self.peers.get(peer_id)
        if state is None:
            self.drops.counts["no_address"] += 1
            return []
        counters = state.counters
        out: list[tuple[bytes, Any]] = []
        if state.config.plaintext:
            if state.address is None:
                self.drops.counts["no_address"] += 1
                return []
            limit = self.max_datagram - self.envelope.overhead(peer_id)
            seal = self.envelope.seal
            for chunk in split_payload(payload, limit):
                datagram = seal(peer_id, chunk)
                out.append((datagram, state.address))
                counters["datagrams_out"] += 1
                counters["bytes_out"] += len(datagram)
            return out
        sessions = self.sessions
        limit = self.max_datagram - sessionwire.TRANSPORT_OVERHEAD
        for chunk in split_payload(payload, limit):
            sessions.send(peer_id, chunk, clock)
            counters["datagrams_out"] += 1
            counters["bytes_out"] += len(chunk) + sessionwire.TRANSPORT_OVERHEAD
        return self.session_output()

    def open_all(self, datagrams: list[tuple[bytes, Any]], clock: float) -> list[tuple[bytes, Payload]]:
        """:meth:`open` each ``(data, addr)``; the payloads that came through, in order."""
        opened_all = []
        for data, addr in datagrams:
            opened = self.open(data, addr, clock)
            if opened is not None:
                opened_all.append(opened)
        return opened_all

    def run_timers(self, clock: float) -> None:
        """The session timers that are due (handshake retries, keepalives,
        rekeys, reachability); what they send comes out of :meth:`session_output`."""
        due = self.sessions.next_timer()
        if due is not None and due <= clock:
            self.sessions.tick(clock)

    def session_output(self) -> list[tuple[bytes, Any]]:
        """What the session layer wants sent (handshakes, keepalives, sealed payloads)."""
        return [(data, addr) for addr, data in self.sessions.datagrams_to_send()]
