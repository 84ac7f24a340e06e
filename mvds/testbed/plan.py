"""A scenario's timeline: every append and fault, at its time, before the run.

Pure and seeded: the testbed and the simulator execute the same plan, so
"the same scenario and seed" means the same appends at the same times.
Appends are Poisson arrivals per writer (``workload.rate`` a second)
between ``workload.start`` and ``workload.stop``; a writer that is killed
or paused at that moment does not append (nobody could ask it to).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from mvds.testbed.scenario import Fault, Scenario


@dataclass(frozen=True)
class PlannedAppend:
    at: float
    node: str
    index: int
    """The writer's own counter (0, 1, ...): makes every body unique."""
    size: int
    ephemeral: bool

    def body(self, scenario: str) -> bytes:
        """``scenario:node:index:`` padded with dots to ``size`` bytes."""
        head = f"{scenario}:{self.node}:{self.index}:".encode()
        return head + b"." * max(0, self.size - len(head))


def down_windows(scenario: Scenario) -> dict[str, list[tuple[float, float]]]:
    """Node -> the intervals it is killed or paused (its process is not answering)."""
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in scenario.names}
    since: dict[str, float] = {}
    for fault in scenario.faults:
        if fault.action in ("kill", "pause"):
            since[fault.node] = fault.at
        elif fault.action in ("restart", "resume"):
            out[fault.node].append((since.pop(fault.node), fault.at))
    return out


def cut_windows(scenario: Scenario) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Link (sorted pair) -> the intervals it is cut."""
    out: dict[tuple[str, str], list[tuple[float, float]]] = {}
    since: dict[tuple[str, str], float] = {}
    for fault in scenario.faults:
        for pair in fault.links:
            if fault.action == "partition":
                since[pair] = fault.at
            else:
                out.setdefault(pair, []).append((since.pop(pair), fault.at))
    return out


def plan_appends(scenario: Scenario) -> list[PlannedAppend]:
    """Every append of the run, in time order (ties: by node name)."""
    wl = scenario.workload
    down = down_windows(scenario)
    out: list[PlannedAppend] = []
    if wl.rate <= 0:
        return out
    for node in scenario.writers():
        rng = random.Random(f"workload:{scenario.seed}:{node}")
        t = wl.start + rng.expovariate(wl.rate)
        index = 0
        while t < wl.stop:
            size = rng.randint(wl.size[0], wl.size[1])
            ephemeral = rng.random() < wl.ephemeral
            at = round(t, 3)
            if not any(a <= at < b for a, b in down[node]):
                out.append(PlannedAppend(at, node, index, size, ephemeral))
                index += 1
            t += rng.expovariate(wl.rate)
    out.sort(key=lambda a: (a.at, a.node, a.index))
    return out


def faults_in_order(scenario: Scenario) -> list[Fault]:
    return sorted(scenario.faults, key=lambda f: f.at)
