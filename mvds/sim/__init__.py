"""mvds.sim: the real MVDS engine on a deterministic virtual network.

Build a :class:`Setup` (nodes, links, one-way sharing, appends) and run it,
or run a named scenario::

    from mvds.sim import run_scenario
    outcome = run_scenario("seed", {"latency": "0.2"}, seed=1)
    outcome.result.summary()["delivery_ratio"]

``mvds sim`` is the command line on top of this (see docs/SIMULATION.md).
"""

from mvds.sim.model import AppendSpec, LinkSpec, NodeSpec, Setup, ShareSpec
from mvds.sim.network import SimResult, Simulation
from mvds.sim.runner import RunOutcome, SweepOutcome, run_scenario
from mvds.sim.scenarios import SCENARIOS
from mvds.sim.schedules import AlwaysOn, Periodic, RandomAvailability, parse_schedule

__all__ = [
    "AlwaysOn",
    "AppendSpec",
    "LinkSpec",
    "NodeSpec",
    "Periodic",
    "RandomAvailability",
    "RunOutcome",
    "SCENARIOS",
    "Setup",
    "ShareSpec",
    "SimResult",
    "Simulation",
    "SweepOutcome",
    "parse_schedule",
    "run_scenario",
]
