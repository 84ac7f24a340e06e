"""Engine settings, with the defaults a daemon on a real network wants."""

from __future__ import annotations

from dataclasses import dataclass, field

from mvds.engine.policy import ExponentialBackoff, RetransmissionPolicy
from mvds.engine.records import Delivery, Mode
from mvds.limits import MAX_BODY_SIZE, MAX_PARENTS_ON_WIRE


@dataclass(frozen=True)
class EngineConfig:
    """Behaviour of one node's engine.

    Times are seconds on the clock the caller passes as ``now``; the daemon
    uses wall-clock time so that persisted schedules survive restarts, the
    simulator uses virtual time.
    """

    mode: Mode = Mode.BATCH
    """How this node sends its own and relayed messages (overridable per append)."""

    delivery: Delivery = Delivery.CAUSAL
    """Hand messages over after their parents (CAUSAL) or on arrival (EVENTUAL)."""

    epoch_length: float = 0.3
    """Seconds per epoch.  Epochs pace retransmission only: new records go out
    after ``flush_delay``, not at the next epoch."""

    flush_delay: float = 0.0
    """How long new records may wait to be coalesced with others into one
    payload.  0 sends them on the caller's next ``payloads_to_send`` call,
    which the daemon makes once it has drained every ready datagram."""

    policy: RetransmissionPolicy = field(default_factory=ExponentialBackoff)
    """Retransmission schedule (epochs to wait after the n-th send)."""

    max_inflight: int = 1024
    """OFFER/MESSAGE records per (peer, group) that may be sent and still
    unsettled.  New records beyond it wait for ACKs: this paces a sender to
    its receiver (a burst of 50,000 messages does not overflow the peer's
    socket buffer) and bounds the retransmission traffic towards an offline
    peer.  Per group, so a group the peer refuses cannot stall the others;
    REQUESTs are never held back (they settle the peer's own window)."""

    reachability_backoff: int = 4
    """When a peer is heard after a silence (never heard, or silent for
    ``offline_after``), its records scheduled more than this many epochs
    ahead become due at once: the peer is evidently back.  Once per such
    transition, never on every payload: a peer that talks without ACKing
    must not defeat the backoff."""

    offline_after: float = 10.0
    """Silence (seconds) after which the next payload from a peer is reported
    as a ``PeerReachable`` event; a peer heard within it counts as online."""

    online_backoff: int = 8
    """Most epochs a record waits between sends while its peer answers
    (it ACKed one of our records, or REQUESTed an OFFER, within
    ``offline_after``).  Long backoff is for peers that are silent or do not
    answer; a peer that is acknowledging our traffic but lost a datagram
    gets it again soon (on a 50%-loss link this ends the tail of stragglers
    waiting out a 64-epoch backoff).  Merely talking is not enough: a peer
    that sends payloads but never ACKs gets the policy's full backoff."""

    max_rto: float = 10.0
    """Ceiling (seconds) of the retransmission timeout measured from a peer's
    round-trip times: records are never resent sooner than the peer usually
    answers (``srtt + 4 * rttvar``, RFC 6298), but a peer that was slow
    once does not hold back retransmissions longer than this."""

    max_parents: int = MAX_PARENTS_ON_WIRE
    """Most parents put on an appended message, and most waited for on a
    received one.  A received message's repeated parent ids count once; one
    with more distinct parents than this is still stored and ACKed, keeping
    its first ``max_parents`` distinct parents (causal delivery waits for
    those; the rest count as satisfied; counted as ``parents_beyond_limit``)."""

    max_body: int = MAX_BODY_SIZE
    """Largest body accepted on a received message (the protocol's limit,
    docs/PROTOCOL.md section 9); a larger one is dropped, unacknowledged,
    and counted (``dropped_oversized_body``).  Every stored message then
    fits one datagram when this node relays it."""

    max_requests: int = 4096
    """Most REQUEST records this node keeps towards one peer (new and in
    flight).  A peer's OFFERs of unknown ids and its messages' unknown
    parents each make a REQUEST; without a cap a peer that floods OFFERs
    for messages that do not exist grows this node's sync state without
    bound.  Beyond the cap further REQUESTs are not made and are counted
    (``requests_capped``); an honest peer keeps offering, so what was not
    requested now is requested once earlier REQUESTs settle."""

    request_max_sends: int | None = 32
    """A REQUEST gives up after this many sends.  Safe: the peer that offered
    the message keeps offering it, and every offer requests it again."""

    accept_unshared: bool = False
    """Accept MESSAGEs for a group this node is in from a peer the group is not
    shared with.  Off for the daemon (a peer may only write into groups shared
    with it: others are ACKed so the sender stops, but neither stored nor
    delivered); the simulator's research scenarios use one-way sharing."""

    ephemeral_memory: int = 4096
    """How many ephemeral message ids are remembered to drop duplicates
    (ephemeral messages are never stored)."""

    seed: int = 0
    """Seed of the jitter generator, for reproducible runs."""

    def __post_init__(self) -> None:
        if self.epoch_length <= 0:
            raise ValueError("epoch_length must be positive")
        if self.flush_delay < 0:
            raise ValueError("flush_delay must not be negative")
        if self.max_inflight < 1:
            raise ValueError("max_inflight must be at least 1")
        if self.online_backoff < 1:
            raise ValueError("online_backoff must be at least 1")
        if self.max_rto < 0:
            raise ValueError("max_rto must not be negative")
        if self.max_parents < 0:
            raise ValueError("max_parents must not be negative")
        if self.max_body < 0:
            raise ValueError("max_body must not be negative")
        if self.max_requests < 1:
            raise ValueError("max_requests must be at least 1")
