"""Run a scenario by name: one simulation, or every point of a sweep.

The topology generator and the simulation are both seeded from the run seed,
so a sweep compares its grid points on the *same* network, and running the
same scenario, parameters and seed again reproduces every number.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from mvds.sim.network import SimResult, Simulation
from mvds.sim.params import resolve
from mvds.sim.scenarios import Scenario, build_sweep_point, get_scenario

AXIS_KEYS = {"loss": "loss", "availability": "availability", "modes": "mode", "policies": "policy"}
"""Sweep list parameter -> the key of one grid point."""


@dataclass
class RunOutcome:
    """A single simulation of a scenario."""

    scenario: Scenario
    params: dict[str, Any]
    seed: int
    result: SimResult


@dataclass
class SweepOutcome:
    """Every grid point of a sweep, in grid order."""

    scenario: Scenario
    params: dict[str, Any]
    seed: int
    points: list[tuple[dict[str, Any], SimResult]]


Outcome = RunOutcome | SweepOutcome
Progress = Callable[[float], None]


def grid(scenario: Scenario, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The sweep's grid points, e.g. ``{"loss": 0.1, "mode": "batch", ...}``."""
    axes = [(AXIS_KEYS[axis], params[axis]) for axis in scenario.axes]
    return [
        dict(zip((key for key, _ in axes), values))
        for values in itertools.product(*(values for _, values in axes))
    ]


def run_scenario(
    name: str,
    given: Mapping[str, Any] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> Outcome:
    """Resolve parameters, build and run; ValueError for bad input."""
    scenario = get_scenario(name)
    params = resolve(scenario.params, given or {})
    if scenario.build is not None:
        setup = scenario.build(params, random.Random(seed))
        result = Simulation(setup, seed, progress).run()
        return RunOutcome(scenario, params, seed, result)
    points = grid(scenario, params)
    results = []
    for index, point in enumerate(points):
        setup = build_sweep_point(params, point, random.Random(seed))
        inner = None
        if progress is not None:
            inner = lambda f, i=index: progress((i + f) / len(points))  # noqa: E731
        results.append((point, Simulation(setup, seed, inner).run()))
    return SweepOutcome(scenario, params, seed, results)
