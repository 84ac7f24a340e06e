"""A testbed scenario in the simulator (``mvds sim scenario FILE``).

:func:`to_setup` translates the scenario into a :class:`mvds.sim.Setup`
with the same plan (:mod:`mvds.testbed.plan`): one tick is one epoch of
the scenario (``epoch_ms``), so a 20 ms latency at 200 ms epochs is 0.1
tick.  What translates and what does not (docs/SIMULATION.md, "The
simulator against real daemons"):

- links: latency, jitter, loss and duplication per direction; a node's
  own radio loss is folded into the loss of each of its directions;
  ``reorder`` and ``rate`` are not modelled (jitter reorders);
- availability schedules: as phases of whole ticks;
- faults: partition / heal cut the link's two directions for that
  interval; kill / restart and pause / resume take the node offline for
  that interval (its engine keeps its state: the daemon's store is
  durable); move is instantaneous;
- the workload: the same durable appends at the same times; ephemeral
  appends are left out (the simulator does not judge them either).

:func:`headline` reduces a run to the testbed verdict's measures, in
seconds; :func:`run_seeds` runs seeds in parallel worker processes and
:mod:`mvds.testbed.stats` gives means with 95% confidence intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mvds.engine import Delivery, Mode
from mvds.sim.model import AppendSpec, LinkSpec, NodeSpec, Setup, ShareSpec
from mvds.sim.network import Simulation
from mvds.testbed.plan import cut_windows, down_windows, plan_appends
from mvds.testbed.scenario import Scenario, parse_scenario, render_scenario
from mvds.daemon.radio import RadioSchedule

MIN_LATENCY_S = 0.0001
"""A link without latency still takes loopback's ~0.1 ms (the simulator
needs a positive delay)."""


@dataclass(frozen=True)
class Availability:
    """A daemon-style schedule (phases from the start, cycling) in whole
    ticks, with intervals where the node is down (killed or paused)."""

    phases: tuple[tuple[bool, int], ...] = ()
    down: tuple[tuple[int, int], ...] = ()

    def online(self, tick: int) -> bool:
        for start, stop in self.down:
            if start <= tick < stop:
                return False
        if not self.phases:
            return True
        position = tick % sum(ticks for _, ticks in self.phases)
        for up, ticks in self.phases:
            if position < ticks:
                return up
            position -= ticks
        return True

    def describe(self) -> str:
        phases = ", ".join(f"{'up' if up else 'down'} {ticks}" for up, ticks in self.phases) or "always"
        if self.down:
            phases += "; down " + ", ".join(f"[{a}, {b})" for a, b in self.down)
        return phases


def _ticks(seconds: float, epoch: float) -> float:
    return seconds / epoch


def to_setup(scenario: Scenario) -> Setup:
    """The scenario as a simulator setup (times in ticks of one epoch)."""
    epoch = scenario.epoch_ms / 1000.0
    downs = down_windows(scenario)
    nodes = []
    for spec in scenario.nodes:
        phases: tuple[tuple[bool, int], ...] = ()
        if spec.schedule:
            phases = tuple(
                (up, max(1, round(_ticks(seconds, epoch))))
                for up, seconds in RadioSchedule.parse(spec.schedule).phases
            )
        down = tuple((math.floor(_ticks(a, epoch)), math.ceil(_ticks(b, epoch)))
                     for a, b in downs[spec.name])
        schedule = Availability(phases, down)
        groups = tuple(g.name for g in scenario.groups if spec.name in g.members)
        nodes.append(NodeSpec(
            spec.name, Mode.INTERACTIVE if spec.mode == "interactive" else Mode.BATCH,
            schedule, "exponential", groups,
            Delivery.EVENTUAL if spec.delivery == "eventual" else Delivery.CAUSAL,
        ))
    cuts = cut_windows(scenario)
    links = []
    for link in scenario.links:
        down = tuple((_ticks(a, epoch), _ticks(b, epoch)) for a, b in cuts.get(link.pair, []))
        for src, dst, c in ((link.a, link.b, link.ab), (link.b, link.a, link.ba)):
            radio = 1 - (1 - scenario.node(src).loss) * (1 - scenario.node(dst).loss)
            loss = 1 - (1 - c.loss) * (1 - radio)
            links.append(LinkSpec(
                src, dst, latency=_ticks(max(c.latency, MIN_LATENCY_S), epoch),
                jitter=_ticks(c.jitter, epoch), loss=loss, duplicate=c.duplicate,
                down=down, directed=True,
            ))
    shares = [
        ShareSpec(name, group, peer)
        for name in scenario.names
        for peer, groups in scenario.shares(name).items()
        for group in groups
    ]
    appends = [
        AppendSpec(_ticks(a.at, epoch), a.node, scenario.workload.group, a.body(scenario.name))
        for a in plan_appends(scenario) if not a.ephemeral
    ]
    return Setup(nodes=nodes, links=links, shares=shares, appends=appends,
                 duration=_ticks(scenario.duration, epoch), detail_limit=0, exposure=False)


def headline(scenario: Scenario, summary: dict[str, Any], last_append_tick: float) -> dict[str, Any]:
    """A sim summary as the verdict's measures, in seconds."""
    epoch = scenario.epoch_ms / 1000.0
    latency = summary["latency"]
    delivered = summary["delivered"] or 1

    def sec(ticks: Any) -> float | None:
        return None if ticks is None else round(ticks * epoch, 3)

    convergence = summary["convergence_time"]
    return {
        "expected_deliveries": summary["expected_deliveries"],
        "delivered": summary["delivered"],
        "passed": summary["delivered"] == summary["expected_deliveries"],
        "convergence_s": None if convergence is None else round(
            max(0.0, convergence - last_append_tick) * epoch, 3),
        "latency_s": {"p50": sec(latency.get("p50")), "p90": sec(latency.get("p90")),
                      "max": sec(latency.get("max"))},
        "bytes_per_delivery": round(summary["wire"]["bytes"] / delivered, 1),
        "datagrams_per_delivery": round(summary["wire"]["datagrams"] / delivered, 2),
        "retransmissions": summary["retransmissions"],
        "peak_state_records": summary["peak_sync_state"],
    }


def simulate(scenario: Scenario, seed: int | None = None) -> dict[str, Any]:
    """One simulated run of the scenario (default seed: the scenario's)."""
    setup = to_setup(scenario)
    result = Simulation(setup, seed=scenario.seed if seed is None else seed).run()
    last = max((a.time for a in setup.appends), default=0.0)
    out = headline(scenario, result.summary(), last)
    # One node's peak, as the testbed measures it (the summary's is the network's total).
    out["peak_state_records"] = max(result.peak_records, default=0)
    epoch = scenario.epoch_ms / 1000.0
    out["latencies_s"] = [round(t * epoch, 4) for t in result.recorder.latencies()]
    return out


def _simulate_text(job: tuple[str, int]) -> dict[str, Any]:
    text, seed = job
    return simulate(parse_scenario(text, "scenario"), seed)


def run_seeds(scenario: Scenario, seeds: list[int], workers: int = 1,
              dask: str | None = None) -> list[dict[str, Any]]:
    """One simulated run per seed, over ``workers`` local processes or the
    Dask scheduler at ``dask``; results in the order of ``seeds`` (the same
    wherever they ran)."""
    from mvds.sim.distribute import map_runs

    jobs = [(render_scenario(scenario), seed) for seed in seeds]
    return map_runs(_simulate_text, jobs, workers, dask)
