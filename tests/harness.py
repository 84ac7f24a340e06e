"""A tiny deterministic network for driving several engines in tests.

Event-driven virtual time: payloads travel through the real wire encoder,
can be lost, duplicated and delayed (which reorders them), and nodes can be
offline (nothing in or out).  The simulator (mvds.sim) is the full-featured
version of this; the tests keep their own small driver so that engine tests
do not depend on it.
"""

from __future__ import annotations

import heapq
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

from mvds.engine import Engine, EngineConfig, MessageReceived
from mvds.store.memory import MemoryStore
from mvds.wire import Payload, decode_payload, encode_payload


def peer(name: str) -> bytes:
    """A 32-byte peer id for a readable name."""
    return name.encode().ljust(32, b".")


GROUP = b"G" * 32
GROUP2 = b"H" * 32


@dataclass
class Sent:
    time: float
    src: str
    dst: str
    payload: Payload


@dataclass
class Net:
    """Engines named by strings, connected by lossy links."""

    seed: int = 0
    loss: float = 0.0
    duplicate: float = 0.0
    latency: float = 0.01
    jitter: float = 0.0
    now: float = 0.0
    engines: dict[str, Engine] = field(default_factory=dict)
    delivered: dict[str, list[MessageReceived]] = field(default_factory=lambda: defaultdict(list))
    events: dict[str, list] = field(default_factory=lambda: defaultdict(list))
    sent: list[Sent] = field(default_factory=list)
    online: Callable[[str, float], bool] = lambda name, t: True
    record_sent: bool = True

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._queue: list[tuple[float, int, str, str, bytes]] = []
        self._counter = 0

    def add(self, name: str, config: EngineConfig | None = None, store=None) -> Engine:
        engine = Engine(store or MemoryStore(), config or EngineConfig(epoch_length=1.0), now=self.now)
        self.engines[name] = engine
        return engine

    def crash(self, name: str) -> Engine:
        """The node crashes and restarts: a new engine on the same store.
        Everything the engine kept in memory is lost (ACKs owed, sessions,
        streamed gives, timers); what the store holds survives, as a
        committed SQLite store does (the daemon sends a payload only after
        committing the store's transaction)."""
        old = self.engines[name]
        engine = Engine(old.store, old.config, now=self.now)
        self.engines[name] = engine
        return engine

    def share(self, group: bytes, a: str, b: str) -> None:
        """Share both ways."""
        self.engines[a].share(group, peer(b), self.now)
        self.engines[b].share(group, peer(a), self.now)

    def name_of(self, peer_id: bytes) -> str:
        return peer_id.rstrip(b".").decode()

    # -- driving ----------------------------------------------------------
    def flush(self) -> None:
        """Let every engine send what it has at ``now`` and collect events."""
        for name in sorted(self.engines):
            engine = self.engines[name]
            for dst_id, payload in engine.payloads_to_send(self.now):
                dst = self.name_of(dst_id)
                if self.record_sent:
                    self.sent.append(Sent(self.now, name, dst, payload))
                self._transmit(name, dst, encode_payload(payload))
            self._collect(name)

    def _collect(self, name: str) -> None:
        for event in self.engines[name].events():
            self.events[name].append(event)
            if isinstance(event, MessageReceived):
                self.delivered[name].append(event)

    def _transmit(self, src: str, dst: str, data: bytes) -> None:
        if not self.online(src, self.now):
            return
        copies = 1
        if self.rng.random() < self.duplicate:
            copies = 2
        for _ in range(copies):
            if self.rng.random() < self.loss:
                continue
            delay = self.latency + self.rng.random() * self.jitter
            self._counter += 1
            heapq.heappush(self._queue, (self.now + delay, self._counter, src, dst, data))

    def _next_time(self) -> float | None:
        times = []
        if self._queue:
            times.append(self._queue[0][0])
        for engine in self.engines.values():
            t = engine.next_timer()
            if t is not None:
                times.append(max(t, self.now))
        return min(times) if times else None

    def step(self, until: float) -> bool:
        """Advance to the next event no later than ``until``; False if none."""
        t = self._next_time()
        if t is None or t > until:
            self.now = until
            return False
        self.now = t
        while self._queue and self._queue[0][0] <= self.now:
            _, _, src, dst, data = heapq.heappop(self._queue)
            if not self.online(dst, self.now):
                continue
            self.engines[dst].receive(peer(src), decode_payload(data), self.now)
            self._collect(dst)
        self.flush()
        return True

    def run(self, duration: float, max_steps: int = 1_000_000) -> None:
        """Run for ``duration`` seconds of virtual time."""
        end = self.now + duration
        steps = 0
        self.flush()
        while self.step(end):
            steps += 1
            if steps > max_steps:
                raise RuntimeError("simulation did not settle: too many steps")

    def append(self, name: str, body: bytes, group: bytes = GROUP, **kwargs):
        message = self.engines[name].append(group, body, self.now, **kwargs)
        self._collect(name)
        return message

    def in_flight(self) -> int:
        return len(self._queue)

    def quiet(self) -> bool:
        return not self._queue and all(e.is_quiet() for e in self.engines.values())

    def received_ids(self, name: str) -> list[bytes]:
        return [ev.message.id for ev in self.delivered[name]]
