"""Catch-up by range-based set reconciliation: the engine's side of it.

:mod:`mvds.engine.reconcile` finds the difference between two sets; this
module decides when to look for it and turns what it finds into ordinary MVDS
records, paced like every other record:

* **Negotiation.** With ``EngineConfig.reconcile`` on, every payload this
  node sends carries ``features = FEATURE_RECONCILE``.  A peer is taken to
  speak reconciliation while its payloads carry the bit; a payload without
  it (the reference implementation, an older mvds, a node with the setting
  off) makes it a plain MVDS peer, which gets nothing but plain MVDS.
* **When a group is newly shared** with a peer, no record is made per
  historic message.  A durable mark (store meta) says "history not yet
  synced"; once the peer is known to speak reconciliation a session runs,
  and when it completes the mark goes.  If the peer turns out to be plain,
  the history becomes records as before (``Store.add_group_records``).
* **When a peer is heard again** after a silence longer than ``park_after``,
  and when the engine first hears a peer that speaks it (a restart), every
  group shared with it is reconciled.
* **Parking**: a peer that speaks it and has been silent longer than
  ``park_after`` is parked: its records are dropped (and records made for
  it later, by appends and relays, as soon as they appear), and one durable
  mark per (group, peer) says "reconcile when back".  State for an absent
  peer is O(groups), and nothing is sent to it but the reconciliation
  queries that probe for it (backing off up to ``reconcile_interval``).
  Anything from it unparks it; its marked groups are then reconciled.
  A peer that answered only after a long wait (a lossy link, not an
  absence) is given up to ``PATIENCE_CAP`` times longer before it is
  parked again; dropping records for a parked peer always leaves its
  durable mark, so a restart does not forget the news it lacks.
* **Anti-entropy**: each (group, peer) again ``reconcile_interval`` seconds
  after its last completed session.  In sync, that is one fingerprint each
  way.

Of two nodes that speak it, the one with the lower peer id leads
(``EngineConfig.node_id``; the daemon sets it): only it starts the rounds on
reconnect and the anti-entropy rounds; its query starts the other's session
(it takes over, every ``2 * reconcile_interval``, when no query came from the
leader for that long).  Each side still starts the reconciliation of a
group's history it was newly asked to share.  Without ``node_id`` a node
starts every round itself.

What a session finds that the peer lacks goes into a queue, not into the
store: ids (and whole ranges, "all of ours in [lo, hi) except these") are
streamed as MESSAGEs while the (peer, group) window has room and no record
waits in it, so a new peer joining a group of a million messages costs the
sender a window, not a million records.  A given message is tracked in
memory only (id -> resend deadline) until the peer ACKs it: no sync record
is written, updated and deleted per message (that was most of the cost of a
join), and one that is not ACKed in time is streamed again, a few times at
most.  The queue and the window are transient, but the durable "not yet
synced" mark stays until everything a session found is given: a restart
that loses them hellos the peer and syncs the group again.  A parked peer
always has a probe scheduled (also after a restart), so two nodes never
wait on each other to speak first.
**Stream ACKs** (PROTOCOL 16.10): between two nodes that set
``FEATURE_STREAM_ACK``, the new messages of a step are acknowledged by one
StreamAck (their count and the fingerprint of their ids) instead of an ACK
each -- 22 bytes per payload instead of 34 per message, and no per-ACK
work.  The sender keeps the ids it sent the peer, in order (the sent log),
finds the StreamAck's set in it (at its head, nearly always) and settles
those ids as ACKs would; one it cannot find settles nothing, and the resends
that follow are ACKed one by one, as duplicates always are.
What *we* lack is not requested: each side gives, and a query from the peer
starts our own session for that group (unless one just ran), so the peer's
session gives us what we lack while ours gives it what it lacks -- nothing
travels twice, and neither side holds a record for a message it lacks.

A session that gets no answer for a while (a datagram lost, the peer away)
is dropped and started afresh later, the wait doubling on each failure up to
``reconcile_interval``; ranges already in sync cost one fingerprint each.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING

from mvds.engine.reconcile import INFINITY, Session, fingerprint, respond
from mvds.engine.records import UNKNOWN_GROUP, Mode, RecordType
from mvds.store.rangeindex import key_id
from mvds.wire import (
    FEATURE_RECONCILE,
    FEATURE_SKETCH,
    FEATURE_STREAM_ACK,
    Message,
    Mode as RangeMode,
    Payload,
    ReconcileMessage,
    StreamAck,
)

if TYPE_CHECKING:
    from mvds.engine.engine import Engine

_MESSAGE = RecordType.MESSAGE

NEGOTIATE_TIMEOUT = 10.0
"""Seconds a newly shared group's history waits to learn whether the peer
speaks reconciliation; a peer silent that long (an older node that does not
answer a hello, or one that is offline) gets plain MVDS records for it."""

MAX_QUERY_RANGES = 64
"""Most ranges of one query this node answers.  An mvds query fits one
datagram (about 40 ranges at most); each range may cost 16 fingerprints and
a 16-fold answer, so a larger query is ignored (counted) rather than let a
peer buy that much work and traffic with one datagram."""

FIRST_TIMEOUT = 2.0
"""Seconds without an answer before a session is started afresh (doubling)."""

_HISTORY = "rbsr-history/"
"""Meta key prefix of the durable "history not yet synced" marks."""


def _history_key(group_id: bytes, peer: bytes) -> str:
    return f"{_HISTORY}{group_id.hex()}/{peer.hex()}"


_NEW = b"1"
"""Mark value: a newly shared group's history (plain records if the peer
turns out not to speak reconciliation)."""

GIVE_TIMEOUT = 2.0
"""Seconds a streamed give waits for its ACK before it is streamed again (at
least four round-trip times)."""

GIVE_TRIES = 4
"""Times a give is streamed before it is left to the next reconciliation."""

PATIENCE_CAP = 4.0
"""Most times ``park_after`` a peer's parking silence grows to: a peer that
keeps coming back from long gaps is parked after at most this."""

PATIENCE_DECAY = 0.98
"""Per answer that came after a short wait, the raised parking silence
shrinks by this factor (back to ``park_after`` after about 70 such)."""

SENT_LOG_LIMIT = 8192
"""Most messages remembered, per peer, in the order they were sent to it
(what its stream ACKs are matched against, PROTOCOL 16.10); older ones are
forgotten and settled by ordinary ACKs of their resends."""

SEARCH_LIMIT = 2048
"""Most positions of the sent log a stream ACK that does not match at its
head is tried at (a SHA-256 each)."""

MAX_STREAM_ACKS = 4
"""Most StreamAcks of one payload that are matched (an honest node sends
one per payload; the rest are ignored, counted): a StreamAck not at the
head of the log costs up to ``SEARCH_LIMIT`` hashes, which a peer must not
buy by the dozen with one datagram."""

SECOND_LIMIT = 65536
"""Most keys of one second queued at a time for streaming (about 6 MB of
ids).  A second holding more (a bulk import under one timestamp) is given
in slices of this many, each in delivery order; a parent in a later slice
is then REQUESTed by the receiver, as plain MVDS does."""

_PARKED = b"2"
"""Mark value: the peer was parked; reconcile the group when it is back."""


@dataclass
class _Run:
    session: Session
    deadline: float
    timeout: float
    stale: bool = False
    """Records for the peer were dropped (parked) while it ran: its answers
    may predate them, so its completion keeps the mark and looks again."""


@dataclass
class _Cursor:
    """The rest of a :class:`GiveRange` still to be fed into the window."""

    next: bytes
    upper: bytes
    exclude: frozenset[bytes]
    queued: deque = field(default_factory=deque)
    """Ids of the second being given (its keys from before ``next``), in
    the order the store delivered them (:meth:`Catchup._queue_second`)."""


@dataclass
class _Give:
    items: deque = field(default_factory=deque)  # bytes ids and _Cursors
    flight: dict = field(default_factory=dict)
    """Streamed, not yet ACKed: id -> (resend deadline, times streamed)."""
    retry: dict = field(default_factory=dict)
    """Ids queued again after a timeout: id -> times streamed so far."""


class Catchup:
    """Reconciliation state of one engine (all transient but the marks)."""

    def __init__(self, engine: "Engine", now: float) -> None:
        self._engine = engine
        self._store = engine.store
        config = engine.config
        self._interval = config.reconcile_interval
        self._me = config.node_id
        self._park_after = config.park_after
        self._waiting: dict[bytes, float] = {}
        """Per peer, when we first sent it something since we last heard it."""
        self._patience: dict[bytes, float] = {}
        """Per peer, the silence after which it is parked: ``park_after``,
        raised to twice a wait for its answer that ended with one (up to
        ``PATIENCE_CAP`` times ``park_after``), so that a peer behind a
        lossy link, heard between long gaps, is not taken for an absent
        one again and again (each parking drops its records, which only a
        reconciliation -- several round trips through the loss -- brings
        back).  It decays back towards ``park_after`` while the peer is
        heard often."""
        self._supports: dict[bytes, bool] = {}
        self._runs: dict[tuple[bytes, bytes], _Run] = {}
        self._failures: dict[tuple[bytes, bytes], float] = {}
        self._next_round: dict[tuple[bytes, bytes], float] = {}
        self._out: dict[bytes, list[ReconcileMessage]] = {}
        self._give: dict[tuple[bytes, bytes], _Give] = {}
        self._done_at: dict[tuple[bytes, bytes], float] = {}
        self._history: set[tuple[bytes, bytes]] = set()
        self._undecided: dict[tuple[bytes, bytes], float] = {}
        """History marks waiting for the peer's features, with a deadline."""
        self._probes: dict[bytes, tuple[float, float]] = {}
        """Peers asked whether they speak it: (next hello, wait after it).  A
        hello can be lost: until the peer answers, it is repeated at 0.5,
        1, 2, 4 ... seconds (a few datagrams before the deadline)."""
        self._sketches: dict[bytes, bool] = {}
        """Peers that answer ESTIMATE ranges with sketches (16.9)."""
        self._acking: dict[bytes, bool] = {}
        """Peers that take stream ACKs (PROTOCOL 16.10)."""
        self._got: dict[bytes, list[bytes]] = {}
        """Per peer: ids of new messages from it not yet acknowledged, in
        the order they arrived (one stream ACK at the next payload to it)."""
        self._sent: dict[bytes, dict[bytes, int]] = {}
        """Per peer that takes stream ACKs: the messages sent to it and not
        yet acknowledged, in the order they went out (id -> id as the
        integer fingerprints sum)."""
        self._parked: set[bytes] = set()
        """Peers silent longer than ``park_after``: no records are kept for
        them, one mark per (group, peer) says "reconcile when back"."""
        store = self._store
        for group_id, peers in store.sharing().items():
            for peer in peers:
                mark = store.get_meta(_history_key(group_id, peer))
                if mark == _PARKED:
                    self._history.add((group_id, peer))
                    self._parked.add(peer)
                    # Probe it: the probes scheduled before the restart are
                    # lost, and a quiet peer with nothing to give would
                    # never speak first (it may be there, waiting for news).
                    self._next_round[(group_id, peer)] = now + FIRST_TIMEOUT
                elif mark:
                    self._history.add((group_id, peer))
                    self._undecided[(group_id, peer)] = now + NEGOTIATE_TIMEOUT
                    self._probes[peer] = (now, 0.5)

    # -- inputs -------------------------------------------------------------
    def on_share(self, group_id: bytes, peer: bytes, now: float) -> bool:
        """A group was newly shared; True if its history is ours to sync
        (else the engine makes one record per message, plain MVDS)."""
        if self._supports.get(peer) is False:
            return False
        self._history.add((group_id, peer))
        self._store.set_meta(_history_key(group_id, peer), _NEW)
        if self._supports.get(peer):
            self._start(group_id, peer, now)
        else:
            self._engine.announce(peer, now)  # tells it we speak reconciliation
            self._undecided[(group_id, peer)] = now + NEGOTIATE_TIMEOUT
            self._probes[peer] = (now + 0.5, 1.0)
        return True

    def on_unshare(self, group_id: bytes, peer: bytes) -> None:
        key = (group_id, peer)
        self._runs.pop(key, None)
        self._give.pop(key, None)
        self._next_round.pop(key, None)
        self._undecided.pop(key, None)
        self._clear_history(group_id, peer)

    def on_payload(
        self, peer: bytes, payload: Payload, silence: float | None, now: float
    ) -> None:
        """After the engine processed a payload's records; ``silence`` is how
        long the peer had not been heard (None: never, since we started)."""
        if self.pending(peer):
            self._engine._schedule_flush(peer, now)  # settled records made room
        if peer in self._parked:
            self._parked.discard(peer)  # back: its marks get it reconciled below
            self._engine.stats["reconcile_unparked"] += 1
            # A probe sent while it was away is lost and may be in a long
            # backoff: start afresh now instead of waiting it out.
            for key in [k for k in self._runs if k[1] == peer]:
                del self._runs[key]
            for key in [k for k in self._failures if k[1] == peer]:
                del self._failures[key]
        waited = self._waiting.pop(peer, None)
        self._learn_patience(peer, None if waited is None else now - waited)
        speaks = bool(payload.features & FEATURE_RECONCILE)
        known = self._supports.get(peer)
        self._supports[peer] = speaks
        self._sketches[peer] = bool(payload.features & FEATURE_SKETCH)
        acking = speaks and bool(payload.features & FEATURE_STREAM_ACK)
        self._acking[peer] = acking
        if not acking:
            self._sent.pop(peer, None)
        if payload.stream_acks:
            self._on_stream_acks(peer, payload, now)
        if not speaks:
            if known is not False:
                self._plain(peer, now)
            return
        if known is not True:
            # First payload from it that says so (new peer, or our restart):
            # answer so it learns we speak it too, and catch up every group.
            self._engine.announce(peer, now)
            self._reconcile_all(peer, now)
        elif silence is not None and silence > self._park_after:
            self._reconcile_all(peer, now)  # back after a long absence
        for message in payload.reconcile:
            self._engine.stats["reconcile_in"] += 1
            if message.reply:
                self._on_reply(peer, message, now)
            else:
                self._on_query(peer, message, now)

    def _learn_patience(self, peer: bytes, silence: float | None) -> None:
        """``silence``: how long we waited for the peer to answer anything
        since we last sent it something (None: we sent nothing since we
        last heard it, so its silence was idleness, which says nothing)."""
        if silence is None:
            return
        base = self._park_after
        patience = self._patience.get(peer, base)
        if silence > base / 2:
            # Answered after a long wait: that was loss (or a short
            # absence), not a departure; wait longer before parking it.
            patience = min(PATIENCE_CAP * base, max(patience, 2 * silence))
        else:
            patience = max(base, patience * PATIENCE_DECAY)
        if patience > base:
            self._patience[peer] = patience
        else:
            self._patience.pop(peer, None)

    def on_acks(self, peer: bytes, acks: list[bytes], now: float) -> None:
        """The peer ACKed ``acks``: streamed gives among them are settled,
        which makes room in the window for more."""
        sent = self._sent.get(peer)
        if sent:
            for message_id in acks:
                sent.pop(message_id, None)
        settled = False
        for (_, p), give in self._give.items():
            if p == peer and give.flight:
                flight = give.flight
                for message_id in acks:
                    if flight.pop(message_id, None) is not None:
                        settled = True
        if settled:
            self._engine._last_answer[peer] = now
            self._engine._schedule_flush(peer, now)

    # -- stream ACKs (PROTOCOL 16.10) -----------------------------------------
    def received(self, peer: bytes, message: Message, now: float) -> None:
        """A new message from ``peer``, which takes stream ACKs: noted, and
        acknowledged with the others of this step in the next payload."""
        self._got.setdefault(peer, []).append(message.id)
        self._engine._schedule_flush(peer, now)

    def sent(self, peer: bytes, payload: Payload) -> None:
        """``payload`` goes to ``peer``: remember its messages, in order,
        to match the peer's stream ACKs against."""
        if not self._acking.get(peer) or not payload.messages:
            return
        log = self._sent.get(peer)
        if log is None:
            log = self._sent[peer] = {}
        for message in payload.messages:
            if not message.ephemeral:
                mid = message.id
                log.pop(mid, None)  # sent again: now at the end
                log[mid] = int.from_bytes(mid, "little")
        while len(log) > SENT_LOG_LIMIT:
            del log[next(iter(log))]

    def _on_stream_acks(self, peer: bytes, payload: Payload, now: float) -> None:
        """Each stream ACK names the next ``count`` messages the peer got
        from us by their fingerprint: find them in the sent log (at its
        head; else with one of the head's missing, lost or late; else
        further on, what precedes taken as lost) and settle them as ACKs
        would.  No match settles nothing: what was sent is sent again by
        its own timer, and the peer ACKs a message it holds one by one."""
        stats = self._engine.stats
        log = self._sent.get(peer)
        for n, ack in enumerate(payload.stream_acks):
            stats["stream_acks_in"] += 1
            if n >= MAX_STREAM_ACKS:
                stats["stream_acks_ignored"] += 1
                continue
            found = _match(log, ack.count, ack.fingerprint) if log else None
            if found is None:
                stats["stream_acks_unmatched"] += 1
                continue
            ids, dropped = found
            assert log is not None
            for mid in ids:
                del log[mid]
            for mid in dropped:
                del log[mid]
            stats["stream_acked"] += len(ids)
            settled = False
            rest = ids
            for (_, p), give in self._give.items():
                if p == peer and give.flight:
                    flight = give.flight
                    left = [mid for mid in rest if flight.pop(mid, None) is None]
                    settled = settled or len(left) < len(rest)
                    rest = left
            if settled:
                self._engine._last_answer[peer] = now
                self._engine._schedule_flush(peer, now)  # room in the window
            if rest:  # records: settled as by ACKs (events, round trips)
                self._engine._on_acks(peer, rest, now)

    def _on_query(self, peer: bytes, message: ReconcileMessage, now: float) -> None:
        store = self._store
        if not store.is_shared(message.group_id, peer):
            self._engine.stats["reconcile_refused"] += 1
            return  # says nothing about groups not shared with it
        if len(message.ranges) > MAX_QUERY_RANGES:
            self._engine.stats["reconcile_refused_large"] += 1
            return
        replies = respond(store.range_index(message.group_id), message)
        self._queue(peer, replies, now)
        key = (message.group_id, peer)
        # Each side gives only what the other lacks, so a query that shows a
        # difference starts our session too (its query travels with our
        # answer): both directions.  In sync, the answer is all SKIP and
        # that is the whole round.
        differs = any(r.mode is not RangeMode.SKIP for reply in replies for r in reply.ranges)
        done = self._done_at.get(key)
        if differs and key not in self._runs and (done is None or now - done > FIRST_TIMEOUT):
            self._start(*key, now)
        if not self._leads(peer) and key not in self._runs:
            # The other side leads; should it stop querying (an older
            # version, a different setting), we run rounds ourselves.
            self._next_round[key] = now + 2 * self._interval

    def _on_reply(self, peer: bytes, message: ReconcileMessage, now: float) -> None:
        key = (message.group_id, peer)
        run = self._runs.get(key)
        if run is None:
            return
        queries = run.session.receive(message)
        run.deadline = now + run.timeout
        self._collect(key, run.session, now)
        self._queue(peer, queries, now)
        if run.session.done:
            del self._runs[key]
            self._done_at[key] = now
            self._failures.pop(key, None)
            self._engine.stats["reconcile_sessions_done"] += 1
            self._engine.stats["reconcile_sketches_decoded"] += run.session.sketches
            self._next_round[key] = now + self._interval * (1 if self._leads(peer) else 2)
            if run.stale:
                self._next_round[key] = now  # it may have missed dropped news
            elif key in self._give:
                # What it found is still to be given, from memory: a durable
                # mark covers it until it is (a restart that loses the queue
                # then hellos the peer and syncs the group again, by
                # reconciliation or, if the peer says nothing, by records).
                self._mark(key)
            else:
                self._clear_history(*key)

    # -- sessions -------------------------------------------------------------
    def _leads(self, peer: bytes) -> bool:
        """Whether this node runs the pair's routine reconciliations."""
        return not self._me or self._me < peer

    def _reconcile_all(self, peer: bytes, now: float) -> None:
        """Reconcile every group shared with ``peer`` -- if this side leads;
        groups whose history is still ours to sync are reconciled anyway."""
        store = self._store
        leads = self._leads(peer)
        for group_id, peers in store.sharing().items():
            key = (group_id, peer)
            if peer in peers and key not in self._runs and (leads or key in self._history):
                self._start(group_id, peer, now)

    def _start(self, group_id: bytes, peer: bytes, now: float) -> None:
        key = (group_id, peer)
        give = self._give.get(key)
        if give is not None and (give.items or give.flight):
            # Still giving what the last session found: a new one would find
            # the same again and give it twice.  Look again later.
            self._next_round[key] = now + min(self._interval, 10 * FIRST_TIMEOUT)
            return
        index = self._store.range_index(group_id)
        if not len(index):
            # Nothing to give: the peer's sessions give us what we lack.
            # Look again later (never leave a due round behind: it would
            # be due for ever).
            self._clear_history(group_id, peer)
            self._next_round[key] = now + self._interval * (1 if self._leads(peer) else 2)
            return
        # A sketch answer is many datagrams, all needed: after a session
        # timed out (loss), the next ones split (each datagram on its own).
        sketch = self._sketches.get(peer, False) and key not in self._failures
        session = Session(group_id, index, sketch=sketch)
        timeout = self._failures.get(key, FIRST_TIMEOUT)
        self._runs[key] = _Run(session, now + timeout, timeout)
        self._next_round.pop(key, None)
        self._engine.stats["reconcile_sessions"] += 1
        self._queue(peer, session.start(), now)

    def _plain(self, peer: bytes, now: float) -> None:
        """The peer does not speak reconciliation: plain MVDS for it."""
        self._parked.discard(peer)
        for key in [k for k in self._runs if k[1] == peer]:
            del self._runs[key]
        for key in [k for k in self._next_round if k[1] == peer]:
            del self._next_round[key]
        for group_id, p in sorted(self._history):
            if p == peer:
                self._fall_back(group_id, peer, now)

    def _fall_back(self, group_id: bytes, peer: bytes, now: float) -> None:
        """The group's history goes to ``peer`` as plain MVDS records."""
        engine = self._engine
        self._undecided.pop((group_id, peer), None)
        if self._store.is_shared(group_id, peer):
            kind = RecordType.OFFER if engine.config.mode is Mode.INTERACTIVE else _MESSAGE
            self._store.add_group_records(group_id, peer, kind, engine.epoch(now))
            engine._schedule_flush(peer, now)
            engine.stats["reconcile_fallbacks"] += 1
        self._clear_history(group_id, peer)

    def _mark(self, key: tuple[bytes, bytes]) -> None:
        """A durable "history not yet synced" mark for (group, peer)."""
        if key not in self._history:
            self._history.add(key)
            self._store.set_meta(_history_key(*key), _NEW)

    def _clear_history(self, group_id: bytes, peer: bytes) -> None:
        self._undecided.pop((group_id, peer), None)
        if (group_id, peer) in self._history:
            self._history.discard((group_id, peer))
            self._store.set_meta(_history_key(group_id, peer), b"")

    def _queue(self, peer: bytes, messages: list[ReconcileMessage], now: float) -> None:
        if messages:
            self._out.setdefault(peer, []).extend(messages)
            self._engine._schedule_flush(peer, now)

    def _collect(self, key: tuple[bytes, bytes], session: Session, now: float) -> None:
        """Move what the session learned into the feeding queues."""
        group_id, peer = key
        session.need.clear()  # the peer's own session gives us those (see above)
        if session.give_ids or session.give_ranges:
            self._engine._schedule_flush(peer, now)
        if session.give_ids or session.give_ranges:
            give = self._give.setdefault(key, _Give())
            give.items.extend(session.give_ids)
            give.items.extend(_Cursor(g.lower, g.upper, g.exclude) for g in session.give_ranges)
            session.give_ids.clear()
            session.give_ranges.clear()

    def _park(self, peer: bytes, now: float) -> None:
        """``peer`` (which speaks reconciliation) has been silent longer than
        ``park_after``: keep one mark per group instead of its records."""
        store = self._store
        self._parked.add(peer)
        self._engine.stats["reconcile_parked"] += 1
        self._sent.pop(peer, None)  # what it did not acknowledge is resent anyway
        for group_id, peers in store.sharing().items():
            if peer in peers:
                self._history.add((group_id, peer))
                store.set_meta(_history_key(group_id, peer), _PARKED)
                self._give.pop((group_id, peer), None)
                self._runs.pop((group_id, peer), None)
                # Always a probe ahead: without one, a parked peer that
                # never speaks first (it restarted and forgot us, or holds
                # nothing) would never be reconciled again.
                key = (group_id, peer)
                at = now + self._failures.get(key, FIRST_TIMEOUT)
                if self._next_round.get(key, at + 1) > at:
                    self._next_round[key] = at

    def _drop_parked_records(self, now: float) -> None:
        """Records made for parked peers (appends, relays, REQUESTs) go at
        once: nothing but reconciliation probes is sent to a parked peer.
        A peer can be silent and still there (nothing to say): something
        new for it brings the next probe forward to the current backoff, so
        it gets the news within seconds if it is, and a query per backoff
        (at most one per ``reconcile_interval``) if it is not."""
        store = self._store
        with_records = set(store.peers_with_records()) & self._parked
        for peer in with_records:
            groups = [g for g, peers in store.sharing().items() if peer in peers]
            dropped = sum(store.delete_group_records(g, peer) for g in [*groups, UNKNOWN_GROUP])
            self._engine.stats["reconcile_parked_records_dropped"] += dropped
            self._engine._next_due_stale = True
            for group_id in groups:
                key = (group_id, peer)
                # The dropped records stood for news the peer lacks: a
                # durable mark must stand for it now (an earlier probe that
                # found nothing to give cleared the parking mark), or a
                # restart forgets it and a quiet peer never gets it.
                if key not in self._history:
                    self._history.add(key)
                    store.set_meta(_history_key(group_id, peer), _PARKED)
                run = self._runs.get(key)
                if run is not None:
                    run.stale = True
                    continue
                at = now + self._failures.get(key, FIRST_TIMEOUT)
                if self._next_round.get(key, at + 1) > at:
                    self._next_round[key] = at

    def tick(self, now: float) -> None:
        """Start due anti-entropy rounds; restart stalled sessions; give
        histories to peers that never said they speak reconciliation; park
        peers silent for longer than ``park_after``."""
        engine = self._engine
        for peer, speaks in self._supports.items():
            if speaks and peer not in self._parked:
                heard = engine.last_heard(peer)
                if heard is not None and now - heard > self._patience.get(peer, self._park_after):
                    self._park(peer, now)
        if self._parked:
            self._drop_parked_records(now)
        for key, deadline in list(self._undecided.items()):
            if self._supports.get(key[1]):
                del self._undecided[key]  # decided: its sessions sync the history
            elif now >= deadline:
                self._fall_back(*key, now)
        for peer, (at, wait) in list(self._probes.items()):
            if self._supports.get(peer) is not None or not any(
                p == peer for _, p in self._undecided
            ):
                del self._probes[peer]
            elif now >= at:
                self._engine.announce(peer, now)
                self._probes[peer] = (now + wait, wait * 2)
        for key, run in list(self._runs.items()):
            if now >= run.deadline:
                # No answer: try again later, backing off (an absent peer
                # costs one small query per attempt, at most one per interval).
                self._engine.stats["reconcile_timeouts"] += 1
                del self._runs[key]
                self._failures[key] = min(run.timeout * 2, max(self._interval, FIRST_TIMEOUT))
                # The session's timeout was the wait: probe again now (the
                # next one waits twice as long), so an absent peer is probed
                # at most once per ``reconcile_interval``, not once per two.
                self._next_round[key] = now
        self._expire_gives(now)
        for key, at in list(self._next_round.items()):
            if now >= at:
                self._start(*key, now)

    def _expire_gives(self, now: float) -> None:
        """Streamed gives not ACKed in time go to the front of the queue
        again (a datagram was lost); after ``GIVE_TRIES`` they are left to
        the next reconciliation, which finds them again."""
        for (group_id, peer), give in list(self._give.items()):
            if not give.flight:
                continue
            expired = [(mid, tries) for mid, (at, tries) in give.flight.items() if now >= at]
            if not expired:
                continue
            for mid, tries in expired:
                del give.flight[mid]
                if tries < GIVE_TRIES:
                    give.retry[mid] = tries
                    give.items.appendleft(mid)
                else:
                    self._engine.stats["reconcile_gives_abandoned"] += 1
            self._engine._schedule_flush(peer, now)

    def next_time(self) -> float | None:
        times = [run.deadline for run in self._runs.values()]
        times.extend(self._next_round.values())
        times.extend(self._undecided.values())
        times.extend(at for at, _ in self._probes.values())
        for give in self._give.values():
            if give.flight:
                times.append(min(at for at, _ in give.flight.values()))
        engine = self._engine
        for peer, speaks in self._supports.items():
            heard = engine.last_heard(peer)
            if speaks and peer not in self._parked and heard is not None:
                times.append(heard + self._patience.get(peer, self._park_after) + 1e-6)
        return min(times) if times else None

    def pending(self, peer: bytes) -> bool:
        """Anything queued to feed into records for ``peer``."""
        return any(
            give.items for (_, p), give in self._give.items() if p == peer
        )

    def idle(self) -> bool:
        return not (self._runs or self._out or self._got or any(
            g.items or g.flight for g in self._give.values()
        ))

    # -- output -------------------------------------------------------------
    def fill(self, peer: bytes, payload: Payload, now: float) -> None:
        """Before the engine picks records for ``peer``: stream queued
        differences as MESSAGEs, and add reconcile messages and features."""
        payload.features |= FEATURE_RECONCILE | FEATURE_SKETCH | FEATURE_STREAM_ACK
        self._waiting.setdefault(peer, now)  # an answer measures the gap
        got = self._got.pop(peer, None)
        if got:
            if self._acking.get(peer):
                payload.stream_acks.append(StreamAck(len(got), _fingerprint_of(got)))
                self._engine.stats["stream_acks_out"] += 1
            else:  # it stopped taking them: ACK one by one
                payload.acks.extend(got)
        for key in [k for k in self._give if k[1] == peer]:
            self._feed_gives(key, payload, now)
        out = self._out.pop(peer, None)
        if out:
            payload.reconcile.extend(out)
            self._engine.stats["reconcile_out"] += len(out)

    def _feed_gives(self, key: tuple[bytes, bytes], payload: Payload, now: float) -> None:
        group_id, peer = key
        store = self._store
        give = self._give[key]
        if group_id in store.groups_with_new_records(peer):
            return  # the window has waiting records already: they go first
        room = (
            self._engine.config.max_inflight
            - store.inflight_count(peer, group_id)
            - len(give.flight)
        )
        items = give.items
        index = None
        rtt = self._engine.rtt(peer)
        deadline = now + max(GIVE_TIMEOUT, 4 * rtt if rtt else 0.0)
        while room > 0 and items:
            item = items[0]
            if isinstance(item, bytes):
                items.popleft()
                room -= self._give_one(item, None, peer, give, payload, deadline)
                continue
            queued = item.queued
            if not queued:
                if index is None:
                    index = store.range_index(group_id)
                if not self._queue_second(item, index):
                    items.popleft()  # the range is given
                    continue
            batch = [queued.popleft() for _ in range(min(room, len(queued)))]
            # One batch read for the window's worth.
            cache = store.get_messages(batch)
            for mid in batch:
                room -= self._give_one(mid, cache.get(mid), peer, give, payload, deadline)
        peak = len(give.flight)
        if peak > self._engine.stats["reconcile_inflight_peak"]:
            self._engine.stats["reconcile_inflight_peak"] = peak
        if not items and not give.flight:
            del self._give[key]
            if key not in self._runs:
                self._clear_history(*key)  # all given

    def _queue_second(self, item: _Cursor, index) -> bool:
        """Queue the next second of the range (its keys from ``item.next``
        on that share a timestamp, at most ``SECOND_LIMIT``), in delivery
        order; False when the range has nothing left.

        (timestamp, id) order is not causal order within a second: a
        receiver given a child before its parent holds it and REQUESTs the
        parent.  The store's delivery order is causal (a message is handed
        over after its parents), so a second sorted by it arrives parents
        first; parents of earlier seconds sort earlier and went already.
        One batch read of the second's sequence numbers, no walk over the
        DAG.  Messages never handed over (held for parents) go last."""
        lo = index.rank(item.next)
        hi = len(index) if item.upper == INFINITY else index.rank(item.upper)
        if lo >= hi:
            return False
        second = index.key_at(lo)[:8]
        following = int.from_bytes(second, "big") + 1
        if following < 1 << 64:
            hi = min(hi, index.rank(following.to_bytes(8, "big")))
        keys = index.keys(lo, min(hi, lo + SECOND_LIMIT))
        item.next = keys[-1] + b"\x00"
        exclude = item.exclude
        ids = [mid for mid in map(key_id, keys) if mid not in exclude]
        seqs = self._store.delivery_seqs(ids)
        last = 1 << 63
        ids.sort(key=lambda mid: seqs.get(mid, last))  # stable: key order among the rest
        item.queued.extend(ids)
        return True

    def _give_one(
        self,
        mid: bytes,
        message,
        peer: bytes,
        give: _Give,
        payload: Payload,
        deadline: float,
    ) -> int:
        """Stream one message to the peer (no record: tracked in
        ``give.flight`` until ACKed)."""
        if mid in give.flight or self._store.get_record(mid, peer) is not None:
            return 0  # on its way already, or a record sends it
        if message is None:
            message = self._store.get_message(mid)
            if message is None:
                return 0
        payload.messages.append(message)
        tries = give.retry.pop(mid, 0) + 1
        give.flight[mid] = (deadline, tries)
        stats = self._engine.stats
        stats["reconcile_gives"] += 1
        if tries > 1:
            stats["reconcile_gives_resent"] += 1
        return 1


def _fingerprint_of(ids: list[bytes]) -> bytes:
    return fingerprint(sum(int.from_bytes(i, "little") for i in ids), len(ids))


def _match(
    log: dict[bytes, int], count: int, wanted: bytes
) -> tuple[list[bytes], list[bytes]] | None:
    """Where in the sent log are the ``count`` messages whose fingerprint
    is ``wanted``: (their ids, ids before them, taken as lost), or None.
    Tries the head (the usual case: one SHA-256), the head with one message
    missing (lost, or arriving later: it stays), then every later start."""
    head = list(islice(log.items(), count + 1))
    if len(head) < count:
        return None
    total = sum(value for _, value in head[:count])
    if fingerprint(total, count) == wanted:
        return [mid for mid, _ in head[:count]], []
    if len(head) == count + 1:
        total += head[count][1]
        for skip, (_, value) in enumerate(head):
            if fingerprint(total - value, count) == wanted:
                return [mid for n, (mid, _) in enumerate(head) if n != skip], []
    items = list(islice(log.items(), SEARCH_LIMIT + count))
    sums = [0]
    for _, value in items:
        sums.append(sums[-1] + value)
    for start in range(1, len(items) - count + 1):
        if fingerprint(sums[start + count] - sums[start], count) == wanted:
            return (
                [mid for mid, _ in items[start : start + count]],
                [mid for mid, _ in items[:start]],
            )
    return None

