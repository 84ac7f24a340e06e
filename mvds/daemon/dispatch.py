"""What the node does with the events of a committed step: the engine's
(deliveries to subscribers, ACKs to waiters, counters, log lines) and the
session layer's (reachability, sessions, paths, refused handshakes).

Called by the shell after the commit only, so nothing here reports what a
rolled-back step did.  No I/O: log lines, counters and hand-offs to the
subscriptions and the ack book; the caller passes the times.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from mvds.daemon.acks import AckBook
from mvds.daemon.config import format_address
from mvds.daemon.delivered import DeliveredMessage
from mvds.daemon.diagnose import UnknownSenders, similar_name
from mvds.daemon.logthrottle import LogThrottle
from mvds.daemon.peers import PeerRegistry
from mvds.daemon.subscriptions import Subscriptions
from mvds.daemon.trace import Tracer
from mvds.engine import GaveUp, MessageAcknowledged, MessageReceived, MessageRefused, PeerReachable
from mvds.ids import short
from mvds.secure import session as sessions_mod


class Dispatcher:
    """Turns a step's events into log lines, counters and hand-offs."""

    def __init__(
        self,
        *,
        log: Any,
        tracer: Tracer,
        counters: Counter[str],
        subscriptions: Subscriptions,
        acks: AckBook,
        peers: PeerRegistry,
        unknown: UnknownSenders,
        warnings: LogThrottle,
        group_names: Callable[[], dict[bytes, str]],
    ) -> None:
        self.log = log
        self.tracer = tracer
        self.counters = counters
        self.subscriptions = subscriptions
        self.acks = acks
        self.peers = peers
        self.unknown = unknown
        self.warnings = warnings
        self.group_names = group_names

    def peer_name(self, peer_id: bytes) -> str:
        """The configured name of a peer, else its short id."""
        return self.peers.name(peer_id, short(peer_id))

    def engine_events(self, events: list[Any], now: float, clock: float) -> None:
        """The engine's events of a committed step (``now`` engine time,
        ``clock`` monotonic)."""
        delivered = False
        counters = self.counters
        debug = self.tracer.enabled
        name = self.peer_name
        for event in events:
            if isinstance(event, MessageReceived):
                counters["delivered"] += 1
                delivered = True
                if debug:
                    m = event.message
                    self.tracer.line(clock, "message.delivered", message=short(m.id), seq=event.seq,
                                     via=name(event.peer),
                                     group=self.group_names().get(m.group_id, short(m.group_id)))
                if event.seq is None:
                    m = event.message
                    received = DeliveredMessage(
                        None, m.group_id, m.id, m.timestamp, m.body, event.peer, True,
                        self.group_names().get(m.group_id),
                    )
                    self.subscriptions.publish(received)
            elif isinstance(event, MessageAcknowledged):
                counters["acknowledged"] += 1
                if debug:
                    self.tracer.line(clock, "message.acked", message=short(event.message_id),
                                     peer=name(event.peer))
                self.acks.acknowledged(event.message_id, event.peer, now)
            elif isinstance(event, GaveUp):
                counters["gave_up"] += 1
                left_out = self.tracer.limit.allow("message.gave_up", clock)
                if left_out is not None:  # a flood of expiries: a few lines a second
                    fields: dict[str, Any] = {}
                    if left_out:
                        fields["left_out"] = left_out
                    self.log.warning(
                        "message.gave_up", message=short(event.message_id),
                        peer=name(event.peer), reason=event.reason, **fields,
                    )
            elif isinstance(event, PeerReachable):
                state = self.peers.get(event.peer)
                if state is not None and state.config.plaintext:  # sessions report the others
                    self.log.info("peer.reachable", peer=name(event.peer))
            elif isinstance(event, MessageRefused):  # rate-limited by the engine
                names = self.group_names()
                extra: dict[str, Any] = {}
                group_name = names.get(event.group_id)
                if group_name is None:  # a group we do not know: perhaps a typo of ours
                    guess = similar_name(event.group_id, names.values())
                    if guess:
                        extra["similar_to"] = guess
                else:
                    extra["group_name"] = group_name
                self.log.warning(
                    "message.refused", message=short(event.message_id),
                    peer=name(event.peer), group=event.group_id.hex(),
                    reason=event.reason, suppressed=event.suppressed, **extra,
                )
        if delivered:
            self.subscriptions.notify()

    def session_events(self, events: list[Any], clock: float, wall: float) -> None:
        """Log what the session layer reports (reachability, sessions,
        paths, refused handshakes); ``wall`` is Unix time for the evidence
        ``mvds doctor`` shows about an untrusted node."""
        log = self.log
        name = self.peer_name
        for event in events:
            if isinstance(event, sessions_mod.PeerReachable):
                log.info("peer.reachable", peer=name(event.peer_id))
            elif isinstance(event, sessions_mod.PeerUnreachable):
                heard = event.last_heard_s
                log.info("peer.unreachable", peer=name(event.peer_id),
                         last_heard_s=None if heard is None else round(heard, 1))
            elif isinstance(event, sessions_mod.SessionEstablished):
                self.counters["sessions_established"] += 1
                log.debug(
                    "session.established", peer=name(event.peer_id),
                    initiator=event.initiator, rekey=event.rekey,
                )
            elif isinstance(event, sessions_mod.PathValidated):
                log.info(
                    "peer.path_validated", peer=name(event.peer_id),
                    address=format_address(*event.addr[:2]),
                )
            elif isinstance(event, sessions_mod.HandshakeRefused):
                if event.reason == "unknown_peer" and event.claimed is not None:
                    # A handshake from a node we do not trust names its key:
                    # mvds doctor shows it (a one-sided peer add).
                    self.unknown.seen(event.claimed, format_address(*event.addr[:2]), wall)
                if self.warnings.count(f"handshake/{event.reason}", clock) is not None:
                    # A collision is both sides initiating at once: expected.
                    (log.debug if event.reason == "collision" else log.warning)(
                        "handshake.refused", reason=event.reason,
                        source=format_address(*event.addr[:2]),
                        peer=None if event.peer_id is None else name(event.peer_id),
                        claimed_peer=None if event.claimed is None else event.claimed.hex(),
                    )
