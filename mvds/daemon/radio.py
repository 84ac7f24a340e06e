"""The simulated radio: "up 2s, down 6s" makes a node a bursty mobile device.

A :class:`RadioSchedule` is a cycle of phases in seconds that repeats from
the moment the node starts, or, ending in ``aligned``, from the Unix epoch
(so that nodes with the same period keep the phases their configs give
them whenever each one starts: two bursty nodes meant to be up together
1 s of every 4 otherwise overlap by whatever their start times make of it,
anywhere from 0 to 2 s).  The simulator's availability, tick by tick, is
:mod:`mvds.sim.schedules`.  While down, the radio is off: nothing goes in
or out, but the node keeps running (appends are accepted and stored, timers
fire).  :func:`run_radio` is the trio task that switches it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PHASE = re.compile(r"^(up|down)\s+(\d+(?:\.\d+)?)\s*(ms|s|m|h)$")


@dataclass(frozen=True)
class RadioSchedule:
    """Phases of (online?, seconds), cycling forever."""

    phases: tuple[tuple[bool, float], ...]
    aligned: bool = False
    """The cycle counts from the Unix epoch (wall clock), not from the start."""

    @classmethod
    def parse(cls, text: str) -> "RadioSchedule":
        phases = []
        parts = [part.strip().lower() for part in text.split(",")]
        aligned = len(parts) > 1 and parts[-1] == "aligned"
        if aligned:
            parts.pop()
        for part in parts:
            match = _PHASE.match(part)
            if not match:
                raise ValueError(
                    f"bad schedule phase {part!r}: expected e.g. 'up 2s, down 6s'"
                )
            seconds = float(match.group(2)) * _UNITS[match.group(3)]
            if seconds <= 0:
                raise ValueError(f"schedule phase {part!r} must last more than 0")
            phases.append((match.group(1) == "up", seconds))
        if not any(up for up, _ in phases):
            raise ValueError("a schedule must have at least one 'up' phase")
        return cls(tuple(phases), aligned)

    @property
    def period(self) -> float:
        return sum(seconds for _, seconds in self.phases)

    def state_at(self, elapsed: float) -> tuple[bool, float]:
        """Whether the node is online ``elapsed`` seconds after start, and how
        many seconds until that changes."""
        position = elapsed % self.period
        for index, (up, seconds) in enumerate(self.phases):
            if position < seconds:
                remaining = seconds - position
                # Merge following phases of the same state.
                for later in range(1, len(self.phases)):
                    next_up, next_seconds = self.phases[(index + later) % len(self.phases)]
                    if next_up != up:
                        break
                    remaining += next_seconds
                return up, remaining
            position -= seconds
        return self.phases[0][0], self.phases[0][1]  # float edge: wrap around

    def start_offset(self, wall: float) -> float:
        """Where in the cycle a node starting at Unix time ``wall`` begins."""
        return wall % self.period if self.aligned else 0.0

    def describe(self) -> str:
        text = ", ".join(f"{'up' if up else 'down'} {seconds:g}s" for up, seconds in self.phases)
        return text + ", aligned" if self.aligned else text


async def run_radio(
    schedule: RadioSchedule, transport: Any, on_up: Callable[[], None], log: Any
) -> None:
    """Switch ``transport.online`` by the schedule, forever; ``on_up`` runs
    each time the radio comes back (the node announces itself to its peers)."""
    import time

    import trio  # here: the config module imports this one, and the CLI starts without trio

    start = trio.current_time() - schedule.start_offset(time.time())
    while True:
        up, remaining = schedule.state_at(trio.current_time() - start)
        if up != transport.online:
            transport.online = up
            log.info("radio.up" if up else "radio.down", schedule=schedule.describe())
            if up:
                on_up()
        await trio.sleep(remaining)
