"""Per-node availability: when a node's radio is on.

Time in the simulator is measured in ticks (one tick is one engine epoch);
availability changes only on whole ticks.  A schedule answers "is the node
online during tick ``n``?" and the simulator turns that into transition
events, so an always-on node costs nothing and a bursty one costs one event
per switch, never one per tick.

Schedules are written as short strings so that the command line and TOML
files can set them:

* ``always`` - always online;
* ``periodic:ON:OFF[:PHASE]`` - ON ticks online, OFF ticks offline,
  repeating, shifted by PHASE ticks (the research sketch's mobile devices);
* ``random:P`` - online during each tick with probability P, drawn
  independently per tick from a generator seeded by the run seed and the
  node's name (so runs reproduce).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Protocol


class Schedule(Protocol):
    """When a node is online, tick by tick."""

    def online(self, tick: int) -> bool:
        """Whether the node is online during tick ``tick`` (``[tick, tick+1)``)."""
        ...

    def describe(self) -> str:
        """The schedule's string form (parseable by :func:`parse_schedule`)."""
        ...


@dataclass(frozen=True)
class AlwaysOn:
    """Online all the time: never produces a transition."""

    def online(self, tick: int) -> bool:
        return True

    def describe(self) -> str:
        return "always"


@dataclass(frozen=True)
class Periodic:
    """``on`` ticks online, ``off`` ticks offline, repeating from ``phase``."""

    on: int
    off: int
    phase: int = 0

    def __post_init__(self) -> None:
        if self.on < 1 or self.off < 0:
            raise ValueError("a periodic schedule needs on >= 1 and off >= 0 ticks")

    def online(self, tick: int) -> bool:
        return (tick - self.phase) % (self.on + self.off) < self.on

    def describe(self) -> str:
        return f"periodic:{self.on}:{self.off}:{self.phase}"


@dataclass
class RandomAvailability:
    """Online during each tick with probability ``p``, independently.

    Draws are made lazily in tick order and remembered, so asking about any
    tick any number of times gives the same answer.
    """

    p: float
    seed: str = ""
    _draws: list[bool] = field(default_factory=list, repr=False)
    _rng: random.Random | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError("availability must be between 0 and 1")

    def bind(self, seed: str) -> "RandomAvailability":
        """A copy drawing from its own generator (one per node and run)."""
        return RandomAvailability(self.p, seed)

    def online(self, tick: int) -> bool:
        if tick < 0:
            return False
        if self._rng is None:
            self._rng = random.Random(f"availability:{self.seed}")
        draws = self._draws
        while len(draws) <= tick:
            draws.append(self._rng.random() < self.p)
        return draws[tick]

    def describe(self) -> str:
        return f"random:{self.p:g}"


ALWAYS_ON = AlwaysOn()


def parse_schedule(text: str) -> Schedule:
    """Parse a schedule string (see the module docstring); ValueError if bad."""
    parts = text.strip().lower().split(":")
    kind, args = parts[0], parts[1:]
    try:
        if kind in ("always", "on") and not args:
            return ALWAYS_ON
        if kind == "periodic" and len(args) in (2, 3):
            return Periodic(*(int(a) for a in args))
        if kind == "random" and len(args) == 1:
            return RandomAvailability(float(args[0]))
    except ValueError as exc:
        raise ValueError(f"bad schedule {text!r}: {exc}") from None
    raise ValueError(
        f"bad schedule {text!r} (use always, periodic:ON:OFF[:PHASE] or random:P)"
    )


def bind(schedule: Schedule, seed: str) -> Schedule:
    """Give a random schedule its own per-node generator; others are shared."""
    if isinstance(schedule, RandomAvailability):
        return schedule.bind(seed)
    return schedule


def next_change(schedule: Schedule, tick: int, limit: int) -> int | None:
    """First tick after ``tick`` (up to ``limit``) whose state differs, or None."""
    if isinstance(schedule, AlwaysOn):
        return None
    state = schedule.online(tick)
    for candidate in range(tick + 1, limit + 1):
        if schedule.online(candidate) != state:
            return candidate
    return None


def offline_intervals(schedule: Schedule, end: float) -> list[tuple[float, float]]:
    """Maximal offline stretches ``(start, stop)`` within ``[0, end)``."""
    out: list[tuple[float, float]] = []
    if isinstance(schedule, AlwaysOn):
        return out
    start: float | None = None
    last = math.ceil(end)
    for tick in range(last):
        if schedule.online(tick):
            if start is not None:
                out.append((start, float(tick)))
                start = None
        elif start is None:
            start = float(tick)
    if start is not None:
        out.append((start, min(float(last), end)))
    return out


def online_fraction(schedule: Schedule, end: float) -> float:
    """Share of the ticks in ``[0, end)`` during which the node was online."""
    ticks = max(1, math.ceil(end))
    if isinstance(schedule, AlwaysOn):
        return 1.0
    return sum(1 for tick in range(ticks) if schedule.online(tick)) / ticks
