"""Cost follows due work: idle nodes and quiet ticks add no simulator events."""

from __future__ import annotations

from mvds.sim.model import AppendSpec, LinkSpec, NodeSpec, Setup, ShareSpec
from mvds.sim.network import Simulation
from mvds.sim.schedules import Periodic


def _pair_setup(idle_nodes: int, duration: float) -> Setup:
    nodes = [NodeSpec("A"), NodeSpec("B")] + [NodeSpec(f"idle{i}") for i in range(idle_nodes)]
    return Setup(
        nodes,
        [LinkSpec("A", "B")],
        [ShareSpec("A", "g", "B"), ShareSpec("B", "g", "A")],
        [AppendSpec(float(t), "A", "g", f"m{t}".encode()) for t in range(0, 50, 5)],
        duration=duration,
        stop_when_settled=False,
    )


def test_idle_nodes_and_empty_ticks_add_no_events():
    small = Simulation(_pair_setup(0, 100.0)).run()
    crowded = Simulation(_pair_setup(500, 100.0)).run()
    longer = Simulation(_pair_setup(500, 100_000.0)).run()
    assert small.events == crowded.events == longer.events
    assert small.summary()["delivered"] == 10


def test_an_availability_switch_costs_one_event_not_one_per_tick():
    setup = _pair_setup(0, 1000.0)
    setup.nodes.append(NodeSpec("blinker", schedule=Periodic(100, 100)))
    result = Simulation(setup).run()
    baseline = Simulation(_pair_setup(0, 1000.0)).run()
    # Switches at 100, 200, ..., 1000: ten events, whatever the tick count.
    assert result.events - baseline.events == 10
