"""The discrete-event simulator: real engines on a virtual network.

One :class:`mvds.engine.Engine` per node, each on its own ``MemoryStore``,
exactly as the daemon drives it: payloads go through the real wire encoder
(split into datagrams of at most ``mtu`` bytes) and decoder, the engine is
woken at the time its ``next_timer`` asks for, and a node coming back online
announces itself to its neighbours.

Virtual time only moves from one event to the next, and only what is due is
touched.  Events (datagram arrivals, engine wake-ups, appends, shares and
availability switches) are kept per instant: a heap holds the distinct
instants that have events, and each instant one list per event kind, in
the order the events were scheduled.  Many events share an instant (every
datagram sent at one instant over equal links arrives at one instant;
wake-ups fall on epoch boundaries), so the heap stays small and scheduling
an event is an append.  After all events of one instant, each node that
received input is flushed once (sorted by index).  Nothing iterates over
all nodes per tick, so the cost of a run is proportional to the work the
protocol does, not to nodes x ticks.

Determinism: one ``random.Random(seed)`` draws every loss, duplication and
delay, in an order fixed by (instant, event kind, scheduling order); engines
get seeds derived from the run seed; availability draws come from per-node
generators seeded by the run seed and the node's name.  Same setup and seed
give the same run, bit for bit.

Offline means "nothing in or out": the engine keeps running (its timers
fire, its retransmissions back off) but whatever it sends while offline
never leaves the radio, and whatever arrives while it is offline is lost.
"""

from __future__ import annotations

import gc
import heapq
import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from mvds.engine import Engine, MessageReceived
from mvds.sim.exposure import Exposure
from mvds.sim.model import EPOCH_LENGTH, Setup, group_id_for, peer_id_for
from mvds.sim.metrics import Recorder
from mvds.sim.schedules import Schedule, bind, next_change
from mvds.store.memory import MemoryStore
from mvds.wire import Payload, decode_payload, encode_payload, split_payload

# Event kinds, in the order they are handled within one instant: a node
# switches on before datagrams arriving at that instant are judged.
_AVAIL, _SHARE, _APPEND, _ARRIVE, _WAKE = range(5)
_KINDS = 5


@dataclass
class _Link:
    """One direction of a link, with its own targeted-ACK-loss budget."""

    latency: float
    jitter: float
    loss: float
    duplicate: float
    drop_acks: int
    down: tuple[tuple[float, float], ...] = ()

    @property
    def exact(self) -> bool:
        """Every datagram arrives once, after exactly ``latency``: no draws."""
        return not (self.loss or self.duplicate or self.jitter or self.down)


@dataclass
class TraceEntry:
    """One datagram, for sequence diagrams: sent at ``sent``, its fate."""

    sent: float
    src: int
    dst: int
    kinds: str
    """Record counts as letters: ``A`` ack, ``O`` offer, ``R`` request,
    ``M`` message, e.g. ``"M2 A1"``; ``"-"`` for an empty (announce) payload."""
    arrived: float | None = None
    fate: str = "in flight"
    """``delivered``, ``lost``, ``dropped: sender offline``,
    ``dropped: receiver offline`` or ``dropped: ack loss``."""


def describe_records(payload: Payload) -> str:
    """Short label for a payload's records (used by traces and diagrams)."""
    parts = []
    for letter, items in (
        ("M", payload.messages),
        ("O", payload.offers),
        ("R", payload.requests),
        ("A", payload.acks),
    ):
        if items:
            parts.append(f"{letter}{len(items)}")
    return " ".join(parts) or "-"


@dataclass
class SimResult:
    """Everything a run produced; :mod:`mvds.sim.report` presents it."""

    setup: Setup
    seed: int
    names: list[str]
    engines: list[Engine]
    recorder: Recorder
    exposure: Exposure | None
    trace: list[TraceEntry]
    schedules: list[Schedule]
    peak_records: list[int]
    end_time: float
    events: int

    def summary(self) -> dict[str, object]:
        """The run's headline numbers (see :meth:`Recorder.summary`)."""
        return self.recorder.summary(self.end_time, self.engine_stats())

    def engine_stats(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for engine in self.engines:
            total.update(engine.stats)
        return total


class Simulation:
    """Runs one :class:`Setup` under one seed."""

    def __init__(
        self,
        setup: Setup,
        seed: int = 0,
        progress: Callable[[float], None] | None = None,
    ) -> None:
        setup.validate()
        self.setup = setup
        self.seed = seed
        self.progress = progress
        self.rng = random.Random(seed)
        self.names = [node.name for node in setup.nodes]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.peer_ids = [peer_id_for(name) for name in self.names]
        self.by_peer_id = {pid: i for i, pid in enumerate(self.peer_ids)}
        self.recorder = Recorder(self.names)
        self.exposure = Exposure(self.names) if setup.exposure else None
        self.trace: list[TraceEntry] = []
        self._instants: list[float] = []
        """Heap of the instants that have events scheduled."""
        self._events: dict[float, tuple[list, ...]] = {}
        """Instant -> one list of events per kind, in scheduling order."""
        self._limit_tick = math.ceil(setup.duration)
        # Hot-path copies of setup fields.
        self._tracing = setup.trace
        self._mtu = setup.mtu
        self._decode = setup.decode
        self._build_nodes()
        self._build_links()
        self._schedule_inputs()

    # -- construction ---------------------------------------------------------
    def _build_nodes(self) -> None:
        setup = self.setup
        self.engines: list[Engine] = []
        self.schedules = []
        for i, node in enumerate(setup.nodes):
            config = node.engine_config(self.seed * 1_000_003 + i)
            engine = Engine(MemoryStore(), config, now=0.0)
            for group in node.groups:
                engine.join(group_id_for(group))
            self.engines.append(engine)
            self.schedules.append(bind(node.schedule, f"{self.seed}:{node.name}"))
        # Both ends of a sharing are members of the group from the start:
        # sharing is one-way, and the receiving end must accept (and relay)
        # what it is sent.
        for share in setup.shares:
            gid = group_id_for(share.group)
            self.engines[self.index[share.node]].join(gid)
            self.engines[self.index[share.peer]].join(gid)
        count = len(self.names)
        self.online = [schedule.online(0) for schedule in self.schedules]
        self.wake_at: list[float | None] = [None] * count
        self.sync_records = [0] * count
        self.peak_records = [0] * count
        self.sync_total = 0

    def _build_links(self) -> None:
        self.links: dict[tuple[int, int], _Link] = {}
        self.neighbours: list[list[int]] = [[] for _ in self.names]
        self._links_from: list[dict[int, _Link]] = [{} for _ in self.names]
        for spec in self.setup.links:
            a, b = self.index[spec.a], self.index[spec.b]
            for src, dst in ((a, b),) if spec.directed else ((a, b), (b, a)):
                link = _Link(spec.latency, spec.jitter, spec.loss, spec.duplicate, spec.drop_acks,
                             spec.down)
                self.links[(src, dst)] = link
                self._links_from[src][dst] = link
                self.neighbours[src].append(dst)
        for neighbours in self.neighbours:
            neighbours.sort()

    def _schedule_inputs(self) -> None:
        setup = self.setup
        for i, schedule in enumerate(self.schedules):
            change = next_change(schedule, 0, self._limit_tick)
            if change is not None:
                self._push(float(change), _AVAIL, i, None, None)
        for share in setup.shares:
            self._push(share.time, _SHARE, self.index[share.node], share.group, self.index[share.peer])
        for append in setup.appends:
            self._push(append.time, _APPEND, self.index[append.node], append.group, append.body)
        self._pending_inputs = len(setup.shares) + len(setup.appends)
        self._pending_arrivals = 0
        self._reach = self._reachability()
        self._expected_total = sum(
            len(self._reach[(self.index[a.node], a.group)]) for a in setup.appends
        )
        self._counted = 0

    def _reachability(self) -> dict[tuple[int, str], frozenset[int]]:
        """Who should eventually get a message of (author, group): everyone
        reachable along the group's (final) one-way sharing edges."""
        edges: dict[str, dict[int, set[int]]] = {}
        for share in self.setup.shares:
            edges.setdefault(share.group, {}).setdefault(self.index[share.node], set()).add(
                self.index[share.peer]
            )
        reach: dict[tuple[int, str], frozenset[int]] = {}
        for append in self.setup.appends:
            key = (self.index[append.node], append.group)
            if key in reach:
                continue
            graph = edges.get(append.group, {})
            seen = {key[0]}
            stack = [key[0]]
            while stack:
                for nxt in graph.get(stack.pop(), ()):
                    if nxt not in seen:
                        seen.add(nxt)
                        stack.append(nxt)
            seen.discard(key[0])
            reach[key] = frozenset(seen)
        return reach

    def _push(self, time: float, kind: int, a: object, b: object, c: object) -> None:
        """Schedule an event; it must lie after the instant being handled."""
        lists = self._events.get(time)
        if lists is None:
            lists = self._events[time] = tuple([] for _ in range(_KINDS))
            heapq.heappush(self._instants, time)
        lists[kind].append((a, b, c))

    # -- running ------------------------------------------------------------
    def run(self) -> SimResult:
        # The run allocates millions of long-lived objects (messages, records,
        # heap entries) and no reference cycles worth collecting; the cyclic
        # collector's repeated full passes over them cost a quarter of the
        # run time, so it is paused for the run.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if collecting:
                if gc.get_freeze_count() == 0:
                    # What the run allocated is long-lived (the result holds
                    # it).  Left in the young generation, it would all be
                    # walked by the first collection after re-enabling (about
                    # a second for 100,000 messages); freeze + unfreeze moves
                    # every tracked object to the oldest generation without
                    # walking any, where full collections still see it.
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()

    def _run(self) -> SimResult:
        instants = self._instants
        scheduled = self._events
        pop = heapq.heappop
        duration = self.setup.duration
        wake_at = self.wake_at
        engines = self.engines
        peer_ids = self.peer_ids
        recorder = self.recorder
        online = self.online
        exposure = self.exposure
        author_of = recorder.author_of
        flush = self._flush
        dirty: set[int] = set()
        events = 0
        now = 0.0
        next_report = 0.0
        report_step = duration / 100
        stop_when_settled = self.setup.stop_when_settled
        while instants:
            now = instants[0]
            if now > duration:
                now = duration
                break
            pop(instants)
            # Handlers only schedule events after ``now`` (links have a
            # positive latency, wake-ups and switches lie ahead), so this
            # instant's lists are complete once taken out.
            switches, shares, appends, arrivals, wakes = scheduled.pop(now)
            events += len(switches) + len(shares) + len(appends) + len(arrivals) + len(wakes)
            for node, _, _ in switches:
                self._switch(now, node, dirty)
            for node, group, peer in shares:
                self._pending_inputs -= 1
                engines[node].share(group_id_for(group), peer_ids[peer], now)
                dirty.add(node)
            for node, group, body in appends:
                self._pending_inputs -= 1
                self._append(now, node, group, body)
                dirty.add(node)
            if arrivals:
                self._pending_arrivals -= len(arrivals)
                for dst, src, data, trace_index in arrivals:
                    if not online[dst]:
                        self._dropped_at_receiver(now, trace_index)
                        continue
                    payload = data if type(data) is Payload else decode_payload(data)
                    if trace_index >= 0:
                        entry = self.trace[trace_index]
                        entry.arrived, entry.fate = now, "delivered"
                    if exposure is not None:
                        exposure.observe(dst, src, payload, author_of)
                    engines[dst].receive(peer_ids[src], payload, now)
                    dirty.add(dst)
            for node, _, _ in wakes:
                if wake_at[node] == now:
                    wake_at[node] = None
                    dirty.add(node)
            if dirty:
                for node in sorted(dirty):
                    flush(node, now)
                dirty.clear()
                recorder.on_sync_state(now, self.sync_total)
            if self.progress is not None and now >= next_report:
                self.progress(min(1.0, now / duration))
                next_report = now + report_step
            if stop_when_settled and self._settled():
                break
        else:
            now = min(now, duration)
        if self.progress is not None:
            self.progress(1.0)
        return SimResult(
            setup=self.setup,
            seed=self.seed,
            names=self.names,
            engines=self.engines,
            recorder=self.recorder,
            exposure=self.exposure,
            trace=self.trace,
            schedules=self.schedules,
            peak_records=self.peak_records,
            end_time=now,
            events=events,
        )

    def _settled(self) -> bool:
        return (
            self._pending_inputs == 0
            and self._pending_arrivals == 0
            and self.sync_total == 0
            and self._counted == self._expected_total
        )

    # -- event handlers -----------------------------------------------------
    def _append(self, now: float, node: int, group: str, body: bytes) -> None:
        message = self.engines[node].append(group_id_for(group), body, now)
        self.recorder.on_append(now, node, group, message)
        self.recorder.expected[message.id] = self._reach[(node, group)]

    def _switch(self, now: float, node: int, dirty: set[int]) -> None:
        online = not self.online[node]
        self.online[node] = online
        if online:
            engine = self.engines[node]
            for peer in self.neighbours[node]:
                engine.announce(self.peer_ids[peer], now)
            dirty.add(node)
        change = next_change(self.schedules[node], int(now), self._limit_tick)
        if change is not None:
            self._push(float(change), _AVAIL, node, None, None)

    def _dropped_at_receiver(self, now: float, trace_index: int) -> None:
        self.recorder.wire["dropped_receiver_offline"] += 1
        if trace_index >= 0:
            entry = self.trace[trace_index]
            entry.arrived, entry.fate = now, "dropped: receiver offline"

    def _flush(self, node: int, now: float) -> None:
        """Send what the engine has due, collect its events, set its wake-up.

        ``payloads_to_send`` is asked every time: it finds out what is due
        in the same pass that ``next_timer()`` would make to say whether
        anything is, and leaves ``next_timer()`` nothing to recompute.
        """
        engine = self.engines[node]
        by_peer_id = self.by_peer_id
        for peer_id, payload in engine.payloads_to_send(now):
            self._transmit(node, by_peer_id[peer_id], payload, now)
        wake = engine.next_timer()
        recorder = self.recorder
        for event in engine.events():
            if type(event) is MessageReceived and event.seq is not None:
                mid = event.message.id
                via = by_peer_id.get(event.peer, -1)
                recorder.on_delivery(now, node, mid, via)
                if node in recorder.expected.get(mid, ()):
                    self._counted += 1
        count = engine.store.record_count()
        self.sync_total += count - self.sync_records[node]
        self.sync_records[node] = count
        if count > self.peak_records[node]:
            self.peak_records[node] = count
        if wake is not None:
            if wake <= now:
                # Cannot happen after a flush (every due record was sent and
                # rescheduled); never spin on it if it did.
                wake = (math.floor(now / EPOCH_LENGTH) + 1) * EPOCH_LENGTH
            current = self.wake_at[node]
            if current is None or wake < current:
                self.wake_at[node] = wake
                self._push(wake, _WAKE, node, None, None)

    def _transmit(self, src: int, dst: int, payload: Payload, now: float) -> None:
        recorder = self.recorder
        tracing = self._tracing
        recorder.on_records_sent(src, dst, payload)
        if not self.online[src]:
            recorder.wire["dropped_sender_offline"] += 1
            if tracing:
                self.trace.append(
                    TraceEntry(now, src, dst, describe_records(payload), None, "dropped: sender offline")
                )
            return
        link = self._links_from[src].get(dst)
        if link is None:  # validated setups only send along links
            raise RuntimeError(f"{self.names[src]} sent to {self.names[dst]} without a link")
        data = encode_payload(payload)
        size = len(data)
        chunks = [data] if size <= self._mtu else split_payload(payload, self._mtu)
        recorder.on_payload(payload, len(chunks), size)
        if link.drop_acks and payload.acks:
            link.drop_acks -= 1
            recorder.wire["dropped_acks"] += len(chunks)
            if tracing:
                self.trace.append(TraceEntry(now, src, dst, describe_records(payload), None, "dropped: ack loss"))
            return
        if not self._decode and len(chunks) == 1:
            # Exact bytes were counted; hand over the payload itself rather
            # than decoding what encode_payload just produced.
            chunks = [payload]
        if not tracing and link.exact:
            # The common case: no random draws, one arrival instant.
            self._pending_arrivals += len(chunks)
            arrivals = self._arrivals_at(now, now + link.latency)
            for chunk in chunks:
                arrivals.append((dst, src, chunk, -1))
            return
        label = describe_records(payload) if tracing else ""
        if link.down and any(start <= now < stop for start, stop in link.down):
            recorder.wire["dropped_cut"] += len(chunks)
            if tracing:
                self.trace.append(TraceEntry(now, src, dst, label, None, "dropped: link cut"))
            return
        rng = self.rng
        for chunk in chunks:
            copies = 1
            if link.duplicate and rng.random() < link.duplicate:
                copies = 2
                recorder.wire["duplicated"] += 1
            for _ in range(copies):
                if link.loss and rng.random() < link.loss:
                    recorder.wire["lost"] += 1
                    if tracing:
                        self.trace.append(TraceEntry(now, src, dst, label, None, "lost"))
                    continue
                delay = link.latency
                if link.jitter:
                    delay += rng.random() * link.jitter
                trace_index = -1
                if tracing:
                    trace_index = len(self.trace)
                    self.trace.append(TraceEntry(now, src, dst, label))
                self._pending_arrivals += 1
                self._arrivals_at(now, now + delay).append((dst, src, chunk, trace_index))

    def _arrivals_at(self, now: float, at: float) -> list[tuple]:
        """The list of datagrams arriving at ``at`` (after ``now``)."""
        if at <= now:  # a delay below the float resolution at ``now``
            at = math.nextafter(now, math.inf)
        lists = self._events.get(at)
        if lists is None:
            lists = self._events[at] = tuple([] for _ in range(_KINDS))
            heapq.heappush(self._instants, at)
        return lists[_ARRIVE]
