"""The datagram gate: bytes in -> ``(peer, Payload)`` or a counted drop;
``(peer, Payload)`` out -> sealed datagrams (sans-IO).

Incoming, in this order, each step cheaper than the next and none of them
trusting the one before: the envelope is opened (unknown or forged senders,
replays, garbage: dropped before any protobuf parsing), the sender's byte
budget is spent (after authentication, so a forger cannot use up a peer's
budget), the payload is decoded, the peer's counters are updated and its
address learned (an authenticated source: roaming).  Outgoing, a payload
is split to fit ``max_datagram`` after the envelope's overhead and each
piece sealed.

The envelope is anything with ``open(data) -> (peer_id, plaintext)``
(raising :class:`~mvds.secure.EnvelopeError` with a ``reason``),
``seal(peer_id, plaintext) -> bytes`` and ``overhead(peer_id) -> int``
(:class:`Envelope`): today :class:`~mvds.secure.EnvelopeCodec`; a session
layer (handshakes, path validation, keepalives) slots in here as another
implementation, or beside the gate for its own datagrams.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from mvds.daemon.config import format_address
from mvds.daemon.diagnose import UnknownSenders
from mvds.daemon.logthrottle import LogThrottle
from mvds.daemon.peers import PeerRegistry
from mvds.secure import EnvelopeError
from mvds.wire import Payload, WireError, decode_payload, split_payload


class Envelope(Protocol):
    """What the gate needs of the layer that authenticates datagrams."""

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
        max_datagram: int,
        drop_log_interval: float,
        log: Any,
    ) -> None:
        self.envelope = envelope
        self.peers = peers
        self.max_datagram = max_datagram
        self.log = log
        self.drops = LogThrottle(interval=drop_log_interval)
        """Datagrams dropped before the engine, by reason (rate-limited logging)."""
        self.unknown = UnknownSenders()
        """Who the ``unknown_peer`` drops claimed to be (mvds doctor)."""

    def open(self, data: bytes, addr: Any, clock: float) -> tuple[bytes, Payload] | None:
        """The sender and payload of an incoming datagram, or None (dropped,
        counted).  ``clock`` is monotonic seconds, for the byte budget."""
        try:
            peer_id, plain = self.envelope.open(data)
        except EnvelopeError as exc:
            claimed = getattr(exc, "claimed", None)
            if claimed is not None:
                self.unknown.seen(claimed, format_address(*addr[:2]), time.time())
            self.drop(exc.reason, addr, clock, claimed=claimed)
            return None
        state = self.peers.get(peer_id)
        if state is None:  # removed while its datagram was queued
            self.drop("unknown_peer", addr, clock, claimed=peer_id)
            return None
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
        if state.address is None or state.address[:2] != addr[:2]:
            if state.address is not None:
                self.log.info(
                    "peer.address_changed", peer=state.config.name,
                    old=format_address(*state.address[:2]), new=format_address(*addr[:2]),
                )
            state.address = addr  # roaming: authenticated, so trust the source
        return peer_id, payload

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
            self.log.warning("datagram.dropped", **fields)

    def seal(self, peer_id: bytes, payload: Payload) -> list[tuple[bytes, Any]]:
        """The datagrams (with their destination) that carry ``payload``."""
        state = self.peers.get(peer_id)
        if state is None or state.address is None:
            self.drops.counts["no_address"] += 1
            return []
        limit = self.max_datagram - self.envelope.overhead(peer_id)
        out = []
        counters = state.counters
        seal = self.envelope.seal
        for chunk in split_payload(payload, limit):
            datagram = seal(peer_id, chunk)
            out.append((datagram, state.address))
            counters["datagrams_out"] += 1
            counters["bytes_out"] += len(datagram)
        return out
