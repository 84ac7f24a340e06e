"""docs/SIMULATION.md's catch-up section ("does reconciliation answer the
catch-up question?") must quote what the code produces.

The single-seed runs (docs/figures/catchup-*) are re-run by
tests/sim/test_sim_docs.py like every run of ``mvds sim all``; this file
checks the numbers the section quotes from them, and re-runs the 10-seed
statistics committed in docs/figures/catchup-seeds.  When one fails: re-run
``mvds sim catchup-reference [reconcile=false] --seeds 10`` (and the same
for catchup-availability), copy seeds.json to docs/figures/catchup-seeds/,
the single runs as ``mvds sim all`` does, and update the text.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from mvds.sim.report import _fmt
from mvds.sim.seeds import MEASURES, _cell, aggregate, run_seeds

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
FIGURES = DOCS / "figures"
SEEDS = FIGURES / "catchup-seeds"
RUNS = {
    "catchup-reference": ("reference, 90% of sends dropped", "reconciliation"),
    "catchup-reference-plain": ("reference, 90% of sends dropped", "plain MVDS"),
    "catchup-availability": ("availability, A and B at 10%", "reconciliation"),
    "catchup-availability-plain": ("availability, A and B at 10%", "plain MVDS"),
}
STALE = "is stale: see tests/sim/test_sim_docs_catchup.py's docstring"


def _page() -> str:
    return " ".join((DOCS / "SIMULATION.md").read_text().split())


def single_row(directory: str) -> str:
    """The single-seed table row for one run, from its committed report."""
    report = json.loads((FIGURES / directory / "report.json").read_text())
    s = report["summary"]
    engine = s["engine"]
    converged = _fmt(s["convergence_time"]) if s["convergence_time"] is not None else "never"
    scenario, mode = RUNS[directory]
    return (
        f"| {scenario} | {mode} | {s['delivered']}/{s['expected_deliveries']} | {converged} | "
        f"{_fmt(s['wire']['datagrams'])} | {_fmt(s['wire']['bytes'])} | "
        f"{_fmt(s['retransmissions'])} | {s['peak_sync_state']} | "
        f"{engine.get('reconcile_parked_records_dropped', 0)} |"
    )


def seeds_row(directory: str) -> str:
    committed = json.loads((SEEDS / f"{directory}.json").read_text())
    (point,) = committed["points"]
    scenario, mode = RUNS[directory]
    cells = [scenario, mode, f"{point['converged']}/{point['runs']}"]
    cells += [_cell(point[m]) for m in MEASURES if m != "latency.p90"]
    return "| " + " | ".join(cells) + " |"


@pytest.mark.parametrize("directory", list(RUNS))
def test_the_single_runs_are_quoted(directory):
    assert single_row(directory) in _page(), f"docs/SIMULATION.md should say {single_row(directory)!r}"


@pytest.mark.parametrize("directory", list(RUNS))
def test_the_seed_statistics_are_quoted_and_reproduced(directory):
    assert seeds_row(directory) in _page(), f"docs/SIMULATION.md should say {seeds_row(directory)!r}"
    committed = json.loads((SEEDS / f"{directory}.json").read_text())
    assert committed["scenario"] + ("-plain" if committed["params"].get("reconcile") == "false" else "") == directory
    fresh = aggregate(run_seeds(committed["scenario"], committed["params"], committed["seeds"], 1))
    assert json.loads(json.dumps(fresh)) == committed["points"], f"docs/figures/catchup-seeds/{directory}.json {STALE}"
