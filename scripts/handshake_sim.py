"""How long two bursty, lossy peers take to set up a session (sans-IO, simulated clock).

    python scripts/handshake_sim.py                 # 1000 seeds, the compose sketch's A-B link
    python scripts/handshake_sim.py --skew-max 4    # schedules counted from each start: any phase
    python scripts/handshake_sim.py --seeds 300 --latency-ms 20-200   # a loaded host

Two :class:`~mvds.secure.session.SessionManager` instances (nodes A and B
of docker-compose.yml) are driven by an event queue on a simulated clock,
with what the daemon around them does:

- each node's radio follows its compose schedule from the moment the node
  starts (A ``up 2s, down 2s``, B ``down 1s, up 2s, down 1s``: up together
  1 s of every 4 when they start at once), as :mod:`mvds.daemon.radio`
  does; while a radio is down nothing goes in or out;
- every datagram is lost with probability ``loss`` (0.2) when sent and
  again when received (:class:`mvds.daemon.transport.UdpTransport` applies
  ``--loss`` both ways), so A->B loses 36%;
- the peers share a group (keepalive peers: the session layer starts the
  handshake by itself), each node sends one Payload when it starts, again
  every ``ENGINE_RESEND_S`` until the peer has it, one each time its radio
  comes up (the daemon announces itself,
  ``Node._radio_up``, which also calls ``SessionManager.link_up`` when the
  layer has one) and one when a session is established;
- B starts ``skew`` seconds after A, drawn per seed from U(0, --skew-max).
  The default 0 is docker-compose.yml's case, whose schedules are
  ``aligned`` (counted from the wall clock, so the phases are those
  configured whenever each node starts); a skew stands for schedules
  counted from each node's start (the shared window then shrinks to
  1 - skew seconds for skews up to 1 s, 0 at 1 s).

Measured per seed, from the moment both nodes run: **established** (both
sides hold a usable current session) and **delivered** (each side's first
Payload arrived at the other), in seconds and in *shared up-windows*: how
many periods in which both radios were up began before that moment (1 =
the first one was enough).  Seeds whose schedules never overlap are left
out (and counted): no handshake can complete there.

The seeds are fixed, so a run before and after a change compares the
same worlds (identities, skews, losses).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mvds.daemon.radio import RadioSchedule  # noqa: E402
from mvds.secure import Identity  # noqa: E402
from mvds.secure.session import SessionEstablished, SessionManager  # noqa: E402

SCHEDULE_A = "up 2s, down 2s"
SCHEDULE_B = "down 1s, up 2s, down 1s"
"""docker-compose.yml's MVDS_SCHEDULE of nodes a and b."""
LOSS = 0.2
WALL_OFFSET = 1_800_000_000.0
HORIZON_S = 120.0
ENGINE_RESEND_S = 1.2
"""The engine resends an unacknowledged record every 4 epochs of 300 ms
(a simplification of its backoff, which reaches 8 epochs while the peer
answers); the simulation counts a record acknowledged once it arrived."""


@dataclass
class Run:
    """One simulated world's outcome (None: not within the horizon)."""

    seed: int
    skew: float
    established: float | None = None
    delivered: float | None = None
    windows_established: int | None = None
    windows_delivered: int | None = None
    overlap: bool = True
    counters: dict[str, int] = field(default_factory=dict)


class _Node:
    def __init__(self, name: str, identity: Identity, start: float, schedule: str, seed: int) -> None:
        self.name = name
        self.addr = (f"10.0.0.{1 if name == 'a' else 2}", 7400)
        self.start = start
        self.schedule = RadioSchedule.parse(schedule)
        self.manager = SessionManager(
            identity, keepalive_s=15.0, wall_offset=WALL_OFFSET, rng=random.Random(seed)
        )
        self.peer: _Node | None = None
        self.got: list[bytes] = []
        self.timer_at: float | None = None

    def running(self, now: float) -> bool:
        return now >= self.start

    def up(self, now: float) -> bool:
        return self.running(now) and self.schedule.state_at(now - self.start)[0]


class World:
    """Two nodes, their radios, a lossy medium, an event queue."""

    def __init__(self, seed: int, *, skew: float, loss: float = LOSS,
                 latency: tuple[float, float] = (0.001, 0.003),
                 schedules: tuple[str, str] = (SCHEDULE_A, SCHEDULE_B)) -> None:
        keys = random.Random(f"keys-{seed}")
        self.rng = random.Random(f"medium-{seed}")
        self.loss = loss
        self.latency = latency
        ida = Identity.from_private_bytes(keys.randbytes(32))
        idb = Identity.from_private_bytes(keys.randbytes(32))
        self.a = _Node("a", ida, 0.0, schedules[0], seed * 2)
        self.b = _Node("b", idb, skew, schedules[1], seed * 2 + 1)
        self.a.peer, self.b.peer = self.b, self.a
        for node in (self.a, self.b):
            node.manager.add_peer(node.peer.manager.public, node.peer.addr, keepalive=True)
        self._queue: list[tuple[float, int, str, Any]] = []
        self._order = itertools.count()

    # -- the event queue ---------------------------------------------------------------
    def _at(self, when: float, kind: str, arg: Any) -> None:
        heapq.heappush(self._queue, (when, next(self._order), kind, arg))

    def _after(self, node: _Node, now: float) -> None:
        """What the daemon does after every input: send the output, react to
        events, arm the timer."""
        manager = node.manager
        for event in manager.events():
            if isinstance(event, SessionEstablished) and not event.rekey:
                manager.send(event.peer_id, b"announce-" + node.name.encode(), now)
        for addr, data in manager.datagrams_to_send():
            if not node.up(now) or self.rng.random() < self.loss:
                continue
            low, high = self.latency
            self._at(now + low + (high - low) * self.rng.random(), "deliver", (node.peer, node.addr, data))
        due = manager.next_timer()
        if due is not None and (node.timer_at is None or due < node.timer_at or node.timer_at <= now):
            node.timer_at = max(due, now)
            self._at(node.timer_at, "timer", node)

    def _radio_transitions(self, node: _Node, horizon: float) -> None:
        t = node.start
        while t < horizon:
            for _, seconds in node.schedule.phases:  # (state_at's float edges could stall here)
                t += seconds
                self._at(t, "radio", node)

    def run(self, horizon: float = HORIZON_S) -> tuple[float | None, float | None]:
        for node in (self.a, self.b):
            self._at(node.start, "start", node)
            self._radio_transitions(node, horizon)
        established = delivered = None
        while self._queue:
            now, _, kind, arg = heapq.heappop(self._queue)
            if now > horizon:
                break
            if kind == "resend":
                node = arg
                if f"hello-{node.name}".encode() in node.peer.got:
                    continue
                node.manager.send(node.peer.manager.public, f"hello-{node.name}".encode(), now)
                self._at(now + ENGINE_RESEND_S, "resend", node)
            elif kind == "start" or kind == "radio":
                node = arg
                if kind == "start":
                    self._at(now + ENGINE_RESEND_S, "resend", node)
                if kind == "radio" and not node.up(now):
                    continue
                if kind == "radio" and hasattr(node.manager, "link_up"):
                    node.manager.link_up(now)
                node.manager.send(node.peer.manager.public, f"hello-{node.name}".encode(), now)
            elif kind == "timer":
                node = arg
                if node.timer_at is not None and node.timer_at > now:
                    continue  # superseded by an earlier one that re-armed it
                node.timer_at = None
                due = node.manager.next_timer()
                if due is not None and due <= now:
                    node.manager.tick(now)
            else:
                node, src, data = arg
                if not node.up(now) or self.rng.random() < self.loss:
                    continue
                got = node.manager.datagram_received(src, data, now)
                if got is not None:
                    node.got.append(got.payload)
            self._after(node, now)
            if established is None and self._both_established(now):
                established = now
            if delivered is None and b"hello-a" in self.b.got and b"hello-b" in self.a.got:
                delivered = now
            if established is not None and delivered is not None:
                break
        return established, delivered

    def _both_established(self, now: float) -> bool:
        for node in (self.a, self.b):
            peer = node.manager._peers[node.peer.manager.public]  # noqa: SLF001 (measurement)
            if peer.current is None or not peer.current.usable(now):
                return False
        return True

    def shared_windows_before(self, t: float, since: float) -> int:
        """How many periods with both radios up began in [since, t] (a window
        under way at ``since`` counts as the first)."""
        step = 0.01
        count = 0
        prev = False
        x = since
        while x <= t + 1e-9:
            both = self.a.up(x) and self.b.up(x)
            if both and not prev:
                count += 1
            prev = both
            x += step
        return count

    def schedules_overlap(self, since: float) -> bool:
        return self.shared_windows_before(since + 8.0, since) > 0


def simulate(seed: int, *, skew_max: float = 0.0, loss: float = LOSS,
             latency: tuple[float, float] = (0.001, 0.003), horizon: float = HORIZON_S) -> Run:
    skew = random.Random(f"skew-{seed}").uniform(0.0, skew_max)
    world = World(seed, skew=skew, loss=loss, latency=latency)
    both = max(world.a.start, world.b.start)
    run = Run(seed, skew)
    if not world.schedules_overlap(both):
        run.overlap = False
        return run
    established, delivered = world.run(both + horizon)
    if established is not None:
        run.established = established - both
        run.windows_established = world.shared_windows_before(established, both)
    if delivered is not None:
        run.delivered = delivered - both
        run.windows_delivered = world.shared_windows_before(delivered, both)
    counters: dict[str, int] = {}
    for node in (world.a, world.b):
        for key, value in node.manager.counters.items():
            counters[key] = counters.get(key, 0) + value
    run.counters = counters
    return run


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def summary(values: list[float | None]) -> dict[str, float | int]:
    """median, p90, p99, max and mean of the finished ones; how many did not finish."""
    done = [v for v in values if v is not None]
    out: dict[str, float | int] = {"n": len(values), "unfinished": len(values) - len(done)}
    if done:
        out.update(
            median=statistics.median(done), p90=quantile(done, 0.90), p99=quantile(done, 0.99),
            max=max(done), mean=statistics.fmean(done),
        )
    return out


def report(runs: list[Run]) -> str:
    overlapping = [r for r in runs if r.overlap]
    lines = [f"seeds {len(runs)}, schedules never overlap in {len(runs) - len(overlapping)} (left out)"]

    def row(name: str, values: list, unit: str) -> str:
        s = summary(values)
        if "median" not in s:
            return f"  {name:<22} none finished ({s['n']})"
        fmt = (lambda v: f"{v:6.2f}") if unit == "s" else (lambda v: f"{v:6.0f}")
        return (f"  {name:<22} median {fmt(s['median'])}  p90 {fmt(s['p90'])}  p99 {fmt(s['p99'])}"
                f"  max {fmt(s['max'])}  mean {s['mean']:6.2f}  unfinished {s['unfinished']}")

    lines.append(row("established (s)", [r.established for r in overlapping], "s"))
    lines.append(row("established (windows)", [r.windows_established for r in overlapping], "w"))
    lines.append(row("delivered (s)", [r.delivered for r in overlapping], "s"))
    lines.append(row("delivered (windows)", [r.windows_delivered for r in overlapping], "w"))
    first = sum(1 for r in overlapping if r.windows_established == 1)
    lines.append(f"  established within the first shared up-window: {first}/{len(overlapping)}"
                 f" ({first / max(1, len(overlapping)):.1%})")
    totals: dict[str, int] = {}
    for r in overlapping:
        for key, value in r.counters.items():
            totals[key] = totals.get(key, 0) + value
    per = {k: round(v / max(1, len(overlapping)), 2) for k, v in sorted(totals.items())}
    lines.append(f"  counters per seed (both nodes): {per}")
    return "\n".join(lines)


def _latency(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    return float(low) / 1000, float(high or low) / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--skew-max", type=float, default=0.0,
                        help="B starts U(0, this) seconds after A (0: the aligned compose schedules; 4: any phase)")
    parser.add_argument("--loss", type=float, default=LOSS)
    parser.add_argument("--latency-ms", type=_latency, default=(0.001, 0.003),
                        help="one-way latency range, e.g. 1-3 (default) or 20-200 (a loaded host)")
    args = parser.parse_args(argv)
    runs = [
        simulate(seed, skew_max=args.skew_max, loss=args.loss, latency=args.latency_ms)
        for seed in range(args.first_seed, args.first_seed + args.seeds)
    ]
    print(f"A {SCHEDULE_A!r}, B {SCHEDULE_B!r}, loss {args.loss:.0%} each way at each node, "
          f"B starts U(0, {args.skew_max:g}) s after A, latency {args.latency_ms[0] * 1000:g}-"
          f"{args.latency_ms[1] * 1000:g} ms")
    print(report(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
