"""The sans-IO MVDS engine: the protocol logic every part of mvds drives.

No sockets, no clock, no threads.  Shaped like aioquic's ``QuicConnection``:

* inputs: :meth:`Engine.receive` (a payload from a peer), :meth:`Engine.append`
  (a local message), :meth:`Engine.share` / :meth:`Engine.unshare`,
  :meth:`Engine.announce` — each with the current time ``now``;
* outputs: :meth:`Engine.payloads_to_send` (one payload per peer that has
  something to send), :meth:`Engine.events` (for the application) and
  :meth:`Engine.next_timer` (when to call ``payloads_to_send`` again).

All durable state lives in the store (see :mod:`mvds.store.base`); the
engine's own fields are transient (ACKs waiting to go out, which peers have
new records, when each peer was last heard), so after a crash or a failed
transaction a new engine on the same store carries on.

Time is split into epochs of ``config.epoch_length`` seconds.  Epochs pace
retransmission only (every record due in an epoch goes out in one payload per
peer); new records go out as soon as the caller asks for payloads after
``flush_delay``, so delivery latency on a good link is set by the network.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter, OrderedDict, deque
from typing import TYPE_CHECKING, Iterable
from mvds.engine.catchup import Catchup
from mvds.engine.config import EngineConfig
from mvds.engine.events import (
    Event,
    GaveUp,
    MessageAcknowledged,
    MessageReceived,
    MessageRefused,
    PeerReachable,
)
from mvds.engine.records import UNKNOWN_GROUP, Delivery, Mode, Record, RecordType
from mvds.engine.rtt import RttEstimator
from mvds.ids import ID_SIZE
from mvds.wire import FEATURE_STREAM_ACK, Message, Payload

if TYPE_CHECKING:  # the store imports engine.records: avoid the cycle at run time
    from mvds.store.base import Store

_SENT_AT_LIMIT = 1 << 16
_BUMPED_LIMIT = 4096
_REFUSED_EVENT_INTERVAL = 60.0
"""Seconds between two MessageRefused events for one peer: a peer that
keeps writing into a group we do not share with it is reported, not logged
once per message."""

_OFFER = RecordType.OFFER
_REQUEST = RecordType.REQUEST
_MESSAGE = RecordType.MESSAGE


class Engine:
    """One MVDS node's protocol state machine."""

    def __init__(self, store: Store, config: EngineConfig | None = None, *, now: float) -> None:
        self.store = store
        self.config = config or EngineConfig()
        self._epoch_length = self.config.epoch_length
        self._rng = random.Random(self.config.seed)
        # Transient state: none of it needs to survive a restart.
        self._flush_at: dict[bytes, float] = {}
        self._acks: dict[bytes, list[bytes]] = {}
        self._direct: dict[bytes, list[Message]] = {}
        self._announce: set[bytes] = set()
        self._events: deque[Event] = deque()
        self._last_heard: dict[bytes, float] = {}
        self._last_answer: dict[bytes, float] = {}
        """When each peer last answered one of our records (ACK, or REQUEST
        for an OFFER): only a peer that answers gets the online cap."""
        self._refused: dict[bytes, tuple[float, int]] = {}
        """Per peer: when the last MessageRefused event went out, and how
        many refusals were not reported since (rate-limited reporting)."""
        self._ephemeral_seen: OrderedDict[bytes, None] = OrderedDict()
        self._bumped: OrderedDict[tuple[bytes, bytes], int] = OrderedDict()
        """Last timestamp given to a repeated body, by (group, body digest),
        so the N-th identical append starts where the previous one ended
        instead of walking past N-1 taken ids -- also once the clock moved
        on to a second whose natural timestamp is taken too."""
        self._next_due: float | None = None
        self._next_due_stale = True
        """The earliest send time of any in-flight record, kept between the
        calls that can change it, so next_timer() does not rescan peers."""
        self._rtt: dict[bytes, RttEstimator] = {}
        self._sent_at: dict[tuple[bytes, bytes], float] = {}
        """When each record in flight after exactly one send went out: its
        answer is a round-trip sample (Karn's rule)."""
        self._answering: set[tuple[bytes, bytes]] = set()
        """OFFERs turned into MESSAGEs by a REQUEST this step: sent now, but
        an answer, not a retransmission."""
        self.stats: Counter[str] = Counter()
        self.peer_stats: dict[bytes, Counter[str]] = {}
        """Per-peer counters (payloads and records in/out, retransmissions)."""
        # Records left from a previous run (never sent, or sent and unsettled)
        # resume at once: a restarted node does not wait for the next epoch.
        for peer in store.peers_with_records():
            self._flush_at[peer] = now
        # Range-based reconciliation, all of it in mvds/engine/catchup.py;
        # the hooks below are the only places the engine calls it.
        self._catchup = Catchup(self, now) if self.config.reconcile else None

    # -- time -----------------------------------------------------------
    def epoch(self, now: float) -> int:
        """The epoch ``now`` falls in."""
        return math.floor(now / self._epoch_length)

    def resume_horizon(self) -> int | None:
        """The most epochs ahead any send of this engine can be scheduled
        (None: the policy has no cap, e.g. linear)."""
        policy = self.config.policy
        cap = getattr(policy, "max_delay", None)
        if cap is None:
            return None
        jitter = getattr(policy, "jitter", 0.0)
        rto = math.ceil(self.config.max_rto / self._epoch_length)
        return math.ceil(cap * (1 + jitter)) + rto + 2

    def resume(self, now: float) -> int:
        """After a restart: records stored with a send epoch further ahead
        than :meth:`resume_horizon` were scheduled under a clock that was
        ahead of today's (the wall clock went back between the runs): they
        are due now.  Returns how many moved (writes to the store: call it
        inside a transaction)."""
        horizon = self.resume_horizon()
        if horizon is None:
            return 0
        epoch = self.epoch(now)
        moved = 0
        for peer in self.store.peers_with_records():
            moved += self.store.pull_forward(peer, epoch + horizon, epoch)
        if moved:
            self.stats["resumed_early"] += moved
            self._next_due_stale = True
        return moved

    # -- inputs: local ------------------------------------------------------
    def append(
        self,
        group_id: bytes,
        body: bytes,
        now: float,
        *,
        timestamp: int | None = None,
        ephemeral: bool = False,
        mode: Mode | None = None,
        max_sends: int | None = None,
        ttl: float | None = None,
    ) -> Message:
        """Append a message to a group and start syncing it to the group's peers.

        The message's parents are the group's current DAG leaves.  Without an
        explicit ``timestamp`` it is ``floor(now)``, bumped by a second while
        that would reproduce an id already stored, so two appends never
        collapse into one message; with an explicit timestamp an identical
        message is returned as it is (appends are idempotent then).

        ``mode`` overrides the node's mode for this message towards the
        peers it is shared with now (the override is not stored: a peer the
        group is shared with later, and relays by other nodes, get it in
        their sender's mode, which is how the receiver is served anyway);
        ``max_sends``
        and ``ttl`` (seconds) bound its retransmission to each peer.
        Ephemeral messages are sent once to the peers sharing the group and
        are neither stored, acknowledged, retransmitted nor relayed.
        """
        if len(group_id) != ID_SIZE:
            raise ValueError(f"group id must be {ID_SIZE} bytes")
        if max_sends is not None and max_sends < 1:
            raise ValueError("max_sends must be at least 1")
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be positive")
        self._next_due_stale = True
        self.store.join(group_id)
        peers = self.store.shared_peers(group_id)
        kind = _OFFER if (mode or self.config.mode) is Mode.INTERACTIVE else _MESSAGE
        expires_at = now + ttl if ttl is not None else None
        message = self._append_one(
            group_id, body, now, timestamp, ephemeral, peers, kind, max_sends, expires_at
        )
        for peer in peers:
            self._schedule_flush(peer, now)
        return message

    def append_many(self, group_id: bytes, bodies: Iterable[bytes], now: float) -> list[Message]:
        """Append several messages to a group, as :meth:`append` would one by
        one (each the parent of the next), with the per-call work done once."""
        if len(group_id) != ID_SIZE:
            raise ValueError(f"group id must be {ID_SIZE} bytes")
        self._next_due_stale = True
        self.store.join(group_id)
        peers = self.store.shared_peers(group_id)
        kind = _OFFER if self.config.mode is Mode.INTERACTIVE else _MESSAGE
        append = self._append_one
        out = [append(group_id, body, now, None, False, peers, kind, None, None) for body in bodies]
        for peer in peers:
            self._schedule_flush(peer, now)
        return out

    def _append_one(
        self,
        group_id: bytes,
        body: bytes,
        now: float,
        timestamp: int | None,
        ephemeral: bool,
        peers: list[bytes],
        kind: RecordType,
        max_sends: int | None,
        expires_at: float | None,
    ) -> Message:
        """One append, its arguments checked; the caller schedules the flush."""
        store = self.store
        message = Message(
            group_id,
            math.floor(now) if timestamp is None else timestamp,
            body,
            self._parents_for(group_id),
            ephemeral,
        )
        if store.has_message(message.id):
            if timestamp is not None:
                return store.get_message(message.id) or message
            message = self._next_free(message)
        self.stats["appended"] += 1
        if ephemeral:
            self._remember_ephemeral(message.id)
            for peer in peers:
                self._direct.setdefault(peer, []).append(message)
            return message
        store.add_message(message, ready=True, received_from=None)
        if peers:
            epoch = math.floor(now / self._epoch_length)
            insert, message_id = store.insert_record, message.id
            for peer in peers:
                insert(Record(message_id, peer, group_id, kind, 0, epoch, max_sends, expires_at))
        return message

    def _next_free(self, message: Message) -> Message:
        """The same message at the first later timestamp whose id is not taken.

        The id does not cover parents, so appending an identical body twice in
        one second would collapse two messages into one; each repeat moves a
        second ahead.  Remembering where the last repeat of this body ended
        keeps a long run of identical appends linear instead of quadratic.
        """
        # Keyed by content, not by the id at the natural timestamp: identical
        # appends faster than one a second run ahead of the clock, and each
        # new second would otherwise rescan every timestamp taken so far.
        natural = (message.group_id, hashlib.sha256(message.body).digest())
        timestamp = message.timestamp
        last = self._bumped.get(natural)
        if last is not None and last >= timestamp:
            timestamp = last
        store = self.store
        group_id, body, parents = message.group_id, message.body, message.parents
        while True:
            timestamp += 1
            message = Message(group_id, timestamp, body, parents, message.ephemeral)
            if not store.has_message(message.id):
                break
        bumped = self._bumped
        bumped[natural] = timestamp
        bumped.move_to_end(natural)
        if len(bumped) > _BUMPED_LIMIT:
            bumped.popitem(last=False)
        return message

    def _parents_for(self, group_id: bytes) -> tuple[bytes, ...]:
        leaves = self.store.leaves(group_id)
        if len(leaves) > self.config.max_parents:
            # Deterministic choice; the leaves left out stay leaves and are
            # picked up by a later append.
            leaves = sorted(leaves)[: self.config.max_parents]
        return tuple(leaves)

    def join(self, group_id: bytes) -> None:
        """Become a member of a group without sharing it with anyone yet."""
        self.store.join(group_id)

    def share(self, group_id: bytes, peer: bytes, now: float) -> None:
        """Sync ``group_id`` with ``peer`` from now on, existing messages included."""
        store = self.store
        self._next_due_stale = True
        store.join(group_id)
        if not store.share(group_id, peer):
            return
        if self._catchup is not None and self._catchup.on_share(group_id, peer, now):
            return  # the history is reconciled instead (catchup.py)
        kind = _OFFER if self.config.mode is Mode.INTERACTIVE else _MESSAGE
        # A record for every message of the group's history, in bulk: a
        # store holding a million messages must not hold a million records
        # in memory to do it.
        store.add_group_records(group_id, peer, kind, self.epoch(now))
        self._schedule_flush(peer, now)

    def unshare(self, group_id: bytes, peer: bytes, now: float) -> None:
        """Stop syncing ``group_id`` with ``peer``; its pending records go."""
        self._next_due_stale = True
        if self._catchup is not None:
            self._catchup.on_unshare(group_id, peer)
        if self.store.unshare(group_id, peer):
            if self.store.delete_group_records(group_id, peer):
                self._schedule_flush(peer, now)

    def announce(self, peer: bytes, now: float) -> None:
        """Send ``peer`` a payload even if it is empty: "I am online now".

        Hearing from a peer after a silence makes its records for us due at
        once (the reachability rule), so a mostly-offline node calls this
        when it comes back online.
        """
        self._announce.add(peer)
        self._schedule_flush(peer, now)

    # -- inputs: from the network ---------------------------------------------
    def receive(self, peer: bytes, payload: Payload, now: float) -> None:
        """Process a payload that arrived from ``peer``."""
        self._next_due_stale = True
        epoch = self.epoch(now)
        stats = self.stats
        stats["payloads_in"] += 1
        self._peer_counter(peer)["payloads_in"] += 1
        last_heard = self._last_heard.get(peer)
        self._heard(peer, now, epoch)
        if payload.acks:
            self._on_acks(peer, payload.acks, now)
        if payload.messages:
            # A peer that takes stream ACKs (PROTOCOL 16.10) gets one for
            # the new messages of each step instead of an ACK per message.
            ranged = self._catchup is not None and bool(payload.features & FEATURE_STREAM_ACK)
            self._on_messages(peer, payload.messages, epoch, now, ranged)
        if payload.offers:
            self._on_offers(peer, payload.offers, epoch, now)
        if payload.requests:
            self._on_requests(peer, payload.requests, epoch, now)
        if self._catchup is not None:  # features and reconcile messages
            silence = None if last_heard is None else now - last_heard
            self._catchup.on_payload(peer, payload, silence, now)

    def _heard(self, peer: bytes, now: float, epoch: int) -> None:
        """Reachability: a peer heard after a silence is back, so stop backing off.

        Only on the transition from unreachable (never heard, or silent for
        ``offline_after``) to reachable.  A peer that keeps talking but does
        not ACK (docs/PROTOCOL.md section 15: a reference peer answers every
        payload with an empty one and never re-ACKs a duplicate) would
        otherwise make its backed-off records due on every datagram: a
        retransmission storm instead of a backoff.
        """
        last = self._last_heard.get(peer)
        self._last_heard[peer] = now
        if last is not None and now - last < self.config.offline_after:
            return  # still reachable: no transition, no pull
        self._events.append(PeerReachable(peer))
        self._pull_forward(peer, now, epoch)

    def window_opened(self, peer: bytes, now: float) -> None:
        """``peer`` is heard for the first time since our radio came back up:
        both radios are up now, so make its records in long backoff due at
        once, as hearing it after a silence does.

        A bursty node (up 2 s of 4) hears its peers more often than
        ``offline_after``, so the reachability rule never fires, and
        retransmissions backed off to seconds mostly fall outside the short
        shared windows.  The caller calls this once per peer per window,
        which bounds it like the reachability transition.
        """
        self._pull_forward(peer, now, self.epoch(now))

    def _pull_forward(self, peer: bytes, now: float, epoch: int) -> None:
        # Records waiting out the peer's round-trip time are not "in long
        # backoff": pulling them forward would resend what is still on its way.
        beyond = max(self.config.reachability_backoff, self._rto_epochs(peer) + 1)
        moved = self.store.pull_forward(peer, epoch + beyond, epoch)
        if moved:
            self.stats["reachability_pulls"] += moved
            self._schedule_flush(peer, now)

    def _on_acks(self, peer: bytes, acks: list[bytes], now: float) -> None:
        store = self.store
        self.stats["acks_in"] += len(acks)
        if self._catchup is not None:
            self._catchup.on_acks(peer, acks, now)  # streamed gives (catchup.py)
        settled = False
        for message_id in acks:
            record = store.get_record(message_id, peer)
            if record is None or record.kind is _REQUEST:
                # An ACK says the peer holds the message; it does not settle
                # our own request for it.
                continue
            self._answered(record, now)
            store.delete_record(message_id, peer)
            self._events.append(MessageAcknowledged(message_id, peer))
            settled = True
        if settled:
            self._last_answer[peer] = now
        if settled and store.has_new_records(peer):
            self._schedule_flush(peer, now)

    def _accepts(self, group_id: bytes, peer: bytes) -> bool:
        store = self.store
        if store.is_shared(group_id, peer):
            return True
        return self.config.accept_unshared and store.is_member(group_id)

    def _on_messages(
        self, peer: bytes, messages: list[Message], epoch: int, now: float, ranged: bool = False
    ) -> None:
        store = self.store
        stats = self.stats
        acks = self._acks.get(peer)
        config = self.config
        for message in messages:
            stats["messages_in"] += 1
            group_id = message.group_id
            if not self._accepts(group_id, peer):
                stats["dropped_unshared_group"] += 1
                if not message.ephemeral:
                    # Not stored, not delivered, but ACKed: the ACK is the
                    # only "stop" a reference peer understands, and without
                    # it the sender retransmits forever.  It reveals nothing:
                    # we ACK whether or not we are in the group.
                    if acks is None:
                        acks = self._acks[peer] = []
                    acks.append(message.id)
                    self._refuse(peer, message, "unshared_group", now)
                continue
            if len(message.parents) > 1:
                message = self._normalized_parents(message)
            if len(message.body) > config.max_body:
                stats["dropped_oversized_body"] += 1
                continue
            message_id = message.id
            if message_id in message.parents:
                # Ids do not cover metadata, so a hostile peer can name a
                # message as its own parent; causal delivery would hold it
                # forever.
                stats["dropped_self_parent"] += 1
                continue
            if message.ephemeral:
                self._on_ephemeral(peer, message)
                continue
            # ACK every persistent MESSAGE, duplicates too: our earlier ACK
            # may have been lost.  (The shell sends it only after commit.)
            # A new one from a peer that takes stream ACKs is noted instead
            # (catchup.py): the step's new ones are ACKed at once.
            known = store.has_message(message_id)
            if ranged and not known:
                self._catchup.received(peer, message, now)  # type: ignore[union-attr]
            else:
                if acks is None:
                    acks = self._acks[peer] = []
                acks.append(message_id)
            # The peer holds it, so nothing we owe it about this message.
            own = store.get_record(message_id, peer)
            if own is not None and own.kind is not _REQUEST:
                store.delete_record(message_id, peer)
                self._events.append(MessageAcknowledged(message_id, peer))
            if known:
                stats["duplicates_in"] += 1
                if not store.is_ready(message_id):
                    self._request_missing(message_id, peer, group_id, epoch, now)
                continue
            self._on_new_message(peer, message, epoch, now)
        if acks:
            self._schedule_flush(peer, now)

    def _normalized_parents(self, message: Message) -> Message:
        """``message`` with repeated parent ids counted once, and at most
        ``max_parents`` of them (docs/PROTOCOL.md section 12.1).

        Deployed reference peers repeat one parent dozens of times, and any
        node may have more leaves than we track after out-of-order arrival.
        Dropping such a message would leave it unacknowledged forever, so it
        is kept with its first ``max_parents`` distinct parents: causal
        delivery waits for those, the rest count as satisfied.  Metadata is
        not part of the id, so the message is the same message; relays carry
        the normalized list, which every mvds peer accepts.
        """
        parents = message.parents
        distinct = tuple(dict.fromkeys(parents))
        if len(distinct) == len(parents) and len(distinct) <= self.config.max_parents:
            return message
        if len(distinct) != len(parents):
            self.stats["parents_repeated"] += 1
        if len(distinct) > self.config.max_parents:
            self.stats["parents_beyond_limit"] += 1
            distinct = distinct[: self.config.max_parents]
        return Message._from_wire(
            message.group_id, message.timestamp, message.body, distinct,
            message.ephemeral, None, message.id,
        )

    def _refuse(self, peer: bytes, message: Message, reason: str, now: float) -> None:
        """Report a refused message as an event, at most once a minute per peer."""
        last, suppressed = self._refused.get(peer, (None, 0))
        if last is not None and now - last < _REFUSED_EVENT_INTERVAL:
            self._refused[peer] = (last, suppressed + 1)
            return
        self._refused[peer] = (now, 0)
        self._events.append(
            MessageRefused(message.id, peer, message.group_id, reason, suppressed)
        )

    def _on_new_message(self, peer: bytes, message: Message, epoch: int, now: float) -> None:
        store = self.store
        message_id = message.id
        store.delete_requests_for(message_id)
        store.add_message(message, ready=False, received_from=peer)
        self.stats["stored_in"] += 1
        # Relay: every other peer sharing the group should get it too.
        kind = _OFFER if self.config.mode is Mode.INTERACTIVE else _MESSAGE
        group_id = message.group_id
        for other in store.shared_peers(group_id):
            if other != peer and store.get_record(message_id, other) is None:
                store.insert_record(Record(message_id, other, group_id, kind, 0, epoch))
                self._schedule_flush(other, now)
        if self.config.delivery is Delivery.EVENTUAL:
            self._deliver(message, peer)
            for parent in message.parents:
                if not store.has_message(parent):
                    self._request(parent, peer, group_id, epoch, now)
            return
        missing = [p for p in message.parents if not store.is_ready(p)]
        if not missing:
            self._deliver_cascade(message, peer)
            return
        store.add_waiting(message_id, missing)
        self.stats["held_for_parents"] += 1
        for parent in missing:
            if not store.has_message(parent):
                self._request(parent, peer, group_id, epoch, now)

    def _deliver(self, message: Message, peer: bytes) -> None:
        seq = self.store.mark_ready(message.id, deliver=True)
        self.stats["delivered"] += 1
        self._events.append(MessageReceived(message, seq, peer))

    def _deliver_cascade(self, message: Message, peer: bytes) -> None:
        """Hand over ``message`` and every held descendant it completes."""
        store = self.store
        self._deliver(message, peer)
        stack = store.release_waiting(message.id)
        while stack:
            child_id = stack.pop()
            stored = store.get_stored(child_id)
            if stored is None or stored.ready:
                continue
            self._deliver(stored.message, stored.received_from or peer)
            stack.extend(store.release_waiting(child_id))

    def _request_missing(
        self, message_id: bytes, peer: bytes, group_id: bytes, epoch: int, now: float
    ) -> None:
        """A held message arrived again: ask this peer for its missing parents."""
        for parent in self.store.waiting_parents(message_id):
            if not self.store.has_message(parent):
                self._request(parent, peer, group_id, epoch, now)

    def _request(
        self, message_id: bytes, peer: bytes, group_id: bytes, epoch: int, now: float
    ) -> None:
        store = self.store
        if store.get_record(message_id, peer) is None:
            if store.request_count(peer) >= self.config.max_requests:
                # A peer cannot make us hold unbounded sync state (an OFFER
                # flood of ids that do not exist); honest peers re-offer.
                self.stats["requests_capped"] += 1
                self._peer_counter(peer)["requests_capped"] += 1
                return
            store.insert_record(
                Record(
                    message_id,
                    peer,
                    group_id,
                    _REQUEST,
                    0,
                    epoch,
                    self.config.request_max_sends,
                )
            )
            self._schedule_flush(peer, now)

    def _on_ephemeral(self, peer: bytes, message: Message) -> None:
        if message.id in self._ephemeral_seen:
            self.stats["duplicates_in"] += 1
            return
        self._remember_ephemeral(message.id)
        self.stats["delivered"] += 1
        # Delivered on arrival even in causal mode: nothing would ever
        # retransmit an ephemeral message that waited for its parents.
        self._events.append(MessageReceived(message, None, peer))

    def _remember_ephemeral(self, message_id: bytes) -> None:
        seen = self._ephemeral_seen
        seen[message_id] = None
        if len(seen) > self.config.ephemeral_memory:
            seen.popitem(last=False)

    def _on_offers(self, peer: bytes, offers: list[bytes], epoch: int, now: float) -> None:
        """OFFERs: ACK what we hold, REQUEST what we lack — within shared groups.

        An offer names only an id.  We answer for a message we hold only if
        its group is shared with the offerer (an ACK would tell a stranger
        which messages of other groups we hold), and request unknown ids only
        from a peer that shares some group with us (nothing it could send
        would be accepted otherwise).
        """
        store = self.store
        stats = self.stats
        stats["offers_in"] += len(offers)
        acks = self._acks.get(peer)
        may_request: bool | None = None
        for message_id in offers:
            record = store.get_record(message_id, peer)
            if record is not None and record.kind is not _REQUEST:
                # It offers what we were about to give it: it holds it.
                store.delete_record(message_id, peer)
                self._events.append(MessageAcknowledged(message_id, peer))
                record = None
            message = store.get_message(message_id) if store.has_message(message_id) else None
            if message is not None:
                if not self._accepts(message.group_id, peer):
                    stats["offers_refused"] += 1
                    continue
                # Tell the offerer we hold it, or it offers forever.
                if acks is None:
                    acks = self._acks[peer] = []
                acks.append(message_id)
                self._schedule_flush(peer, now)
            elif record is None:
                if may_request is None:
                    may_request = self._shares_any(peer)
                if not may_request:
                    stats["offers_refused"] += 1
                    continue
                self._request(message_id, peer, UNKNOWN_GROUP, epoch, now)

    def _shares_any(self, peer: bytes) -> bool:
        """Whether ``peer`` may send us messages of some group."""
        store = self.store
        if self.config.accept_unshared:
            return True
        return any(store.is_shared(group_id, peer) for group_id in store.groups())

    def _on_requests(self, peer: bytes, requests: list[bytes], epoch: int, now: float) -> None:
        store = self.store
        stats = self.stats
        stats["requests_in"] += len(requests)
        for message_id in requests:
            message = store.get_message(message_id)
            if message is None:
                stats["requests_unknown"] += 1
                continue
            if not store.is_shared(message.group_id, peer):
                stats["requests_refused"] += 1
                continue
            record = store.get_record(message_id, peer)
            if record is None:
                store.insert_record(
                    Record(message_id, peer, message.group_id, _MESSAGE, 0, epoch)
                )
            elif record.kind is not _MESSAGE:
                # Spec: the OFFER is replaced by the MESSAGE, due now.  The
                # send count carries over so limits still hold.
                self._answered(record, now)
                self._last_answer[peer] = now
                record.kind = _MESSAGE
                record.group_id = message.group_id
                record.send_epoch = epoch
                store.update_record(record)
                if record.send_count:
                    self._answering.add((message_id, peer))
            else:
                # Already being sent: its own schedule (and reachability)
                # governs resends, so a flood of REQUESTs cannot amplify.
                continue
            self._schedule_flush(peer, now)

    # -- outputs ------------------------------------------------------------
    def _schedule_flush(self, peer: bytes, now: float) -> None:
        if peer not in self._flush_at:
            self._flush_at[peer] = now + self.config.flush_delay

    def payloads_to_send(self, now: float) -> list[tuple[bytes, Payload]]:
        """Build one payload for each peer that has something due.

        Includes every ACK owed, every new record that fits the peer's
        in-flight window, and every in-flight record whose send epoch has come.
        Marks what it includes as sent; the caller must send the payloads
        (after committing the store's transaction).
        """
        epoch = self.epoch(now)
        store = self.store
        if self._catchup is not None:
            self._catchup.tick(now)  # due anti-entropy rounds, stalled sessions
        peers = {peer for peer, at in self._flush_at.items() if at <= now}
        dues: dict[bytes, int] = {}
        for peer in store.peers_with_records():
            due = store.next_due_epoch(peer)
            if due is not None:
                dues[peer] = due
                if due <= epoch:
                    peers.add(peer)
        out = []
        for peer in sorted(peers):
            self._flush_at.pop(peer, None)
            payload = self._build(peer, epoch, now)
            if payload is not None:
                out.append((peer, payload))
            due = store.next_due_epoch(peer)
            if due is None:
                dues.pop(peer, None)
            else:
                dues[peer] = due
        self._next_due = min(dues.values()) * self._epoch_length if dues else None
        self._next_due_stale = False
        return out

    def _build(self, peer: bytes, epoch: int, now: float) -> Payload | None:
        store = self.store
        stats = self.stats
        payload = Payload()
        acks = self._acks.pop(peer, None)
        if acks:
            payload.acks = acks
        direct = self._direct.pop(peer, None)
        if direct:
            payload.messages.extend(direct)
        announce = peer in self._announce
        self._announce.discard(peer)
        if self._catchup is not None:  # differences into records, reconcile messages
            self._catchup.fill(peer, payload, now)
        sent: list[Record] = []
        for record in store.due_records(peer, epoch):
            if self._gives_up(record, now):
                continue
            if self._add_record(payload, record):
                sent.append(record)
        retransmitted = len(sent)
        if self._answering:
            answers = sum(1 for r in sent if (r.message_id, peer) in self._answering)
            retransmitted -= answers
            self._answering.difference_update((r.message_id, peer) for r in sent)
        stats["retransmissions"] += retransmitted
        fresh = store.new_requests(peer, self.config.max_inflight)
        window = self.config.max_inflight
        for group_id in store.groups_with_new_records(peer):
            room = window - store.inflight_count(peer, group_id)
            if room > 0:
                fresh.extend(store.new_records(peer, group_id, room))
        for record in fresh:
            if record.expires_at is not None and now >= record.expires_at:
                self._give_up(record, "expired")
            elif self._add_record(payload, record):
                sent.append(record)
        sent_at = self._sent_at
        for record in sent:
            record.send_count += 1
            if record.send_count == 1:
                sent_at[(record.message_id, peer)] = now
            else:
                sent_at.pop((record.message_id, peer), None)
            record.send_epoch = self._next_send_epoch(record, epoch, now)
            store.update_record(record)
        if len(sent_at) > _SENT_AT_LIMIT:
            # Records settled by other paths (unshare, give up, restart) leave
            # entries behind; forgetting them costs only a few samples.
            sent_at.clear()
        if payload.is_empty() and not announce:
            return None
        if self._catchup is not None:
            self._catchup.sent(peer, payload)  # what its stream ACKs name
        counts = (
            ("payloads_out", 1),
            ("acks_out", len(payload.acks)),
            ("offers_out", len(payload.offers)),
            ("requests_out", len(payload.requests)),
            ("messages_out", len(payload.messages)),
            ("retransmissions", retransmitted),
        )
        peer_counter = self._peer_counter(peer)
        for name, value in counts:
            if name != "retransmissions":
                stats[name] += value
            peer_counter[name] += value
        return payload

    def _peer_counter(self, peer: bytes) -> Counter[str]:
        counter = self.peer_stats.get(peer)
        if counter is None:
            counter = self.peer_stats[peer] = Counter()
        return counter

    def _add_record(self, payload: Payload, record: Record) -> bool:
        kind = record.kind
        if kind is _MESSAGE:
            message = self.store.get_message(record.message_id)
            if message is None:  # cannot happen with a consistent store
                self.store.delete_record(record.message_id, record.peer)
                self.stats["records_orphaned"] += 1
                return False
            payload.messages.append(message)
        elif kind is _OFFER:
            payload.offers.append(record.message_id)
        else:
            payload.requests.append(record.message_id)
        return True

    def _gives_up(self, record: Record, now: float) -> bool:
        """End a due record that reached its limit or expiry."""
        if record.max_sends is not None and record.send_count >= record.max_sends:
            self._give_up(record, "max_sends")
            return True
        if record.expires_at is not None and now >= record.expires_at:
            self._give_up(record, "expired")
            return True
        return False

    def _give_up(self, record: Record, reason: str) -> None:
        self.store.delete_record(record.message_id, record.peer)
        self.stats["gave_up"] += 1
        self._events.append(GaveUp(record.message_id, record.peer, record.kind, reason))

    def _next_send_epoch(self, record: Record, epoch: int, now: float) -> int:
        wait = max(1, self.config.policy.delay(record.send_count, self._rng))
        # The online cap needs an answering peer, not just a talking one: a
        # peer that talks but never ACKs this record (a reference peer never
        # re-ACKs a duplicate) gets the policy's full backoff.
        answered = self._last_answer.get(record.peer)
        if answered is not None and now - answered < self.config.offline_after:
            wait = min(wait, self.config.online_backoff)
        # Never sooner than the peer usually takes to answer.
        wait = max(wait, self._rto_epochs(record.peer))
        # Sent mid-epoch: count from the next boundary, so the wait is never
        # shorter than ``wait`` whole epochs.
        if now > epoch * self._epoch_length:
            wait += 1
        due = epoch + wait
        if record.expires_at is not None:
            due = min(due, math.ceil(record.expires_at / self._epoch_length))
        return due

    def _answered(self, record: Record, now: float) -> None:
        """The peer answered ``record`` (ACK, or REQUEST for an OFFER)."""
        sent = self._sent_at.pop((record.message_id, record.peer), None)
        if sent is not None and record.send_count == 1:
            estimator = self._rtt.get(record.peer)
            if estimator is None:
                estimator = self._rtt[record.peer] = RttEstimator()
            estimator.sample(now - sent)

    def _rto_epochs(self, peer: bytes) -> int:
        """The peer's retransmission timeout in whole epochs (0 if unknown)."""
        estimator = self._rtt.get(peer)
        if estimator is None:
            return 0
        timeout = estimator.timeout(self.config.max_rto)
        return 0 if timeout is None else math.ceil(timeout / self._epoch_length)

    def rtt(self, peer: bytes) -> float | None:
        """The smoothed round-trip time to ``peer`` in seconds, if measured."""
        estimator = self._rtt.get(peer)
        return None if estimator is None else estimator.srtt

    def next_timer(self) -> float | None:
        """When ``payloads_to_send`` next has work (may be in the past), or None."""
        if self._next_due_stale:
            dues = [
                due
                for due in map(self.store.next_due_epoch, self.store.peers_with_records())
                if due is not None
            ]
            self._next_due = min(dues) * self._epoch_length if dues else None
            self._next_due_stale = False
        times = list(self._flush_at.values())
        if self._next_due is not None:
            times.append(self._next_due)
        if self._catchup is not None:
            catchup = self._catchup.next_time()
            if catchup is not None:
                times.append(catchup)
        return min(times) if times else None

    def events(self) -> list[Event]:
        """Drain and return the events emitted since the last call."""
        out = list(self._events)
        self._events.clear()
        return out

    # -- introspection --------------------------------------------------------
    def last_heard(self, peer: bytes) -> float | None:
        """When something last arrived from ``peer`` (engine clock), if ever."""
        return self._last_heard.get(peer)

    def pending(self) -> dict[tuple[bytes, RecordType], int]:
        """Sync state size per (peer, record type)."""
        return self.store.record_stats()

    def is_quiet(self) -> bool:
        """No sync state and nothing queued: every record is settled."""
        return (
            self.store.record_count() == 0
            and not self._acks
            and not self._direct
            and not self._announce
            and (self._catchup is None or self._catchup.idle())
        )

