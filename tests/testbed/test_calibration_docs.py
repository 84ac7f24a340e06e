"""docs/SIMULATION.md's section "The simulator against real daemons" says
what the committed results say, and the simulated half of them is what
the code produces now (the real half was measured once, by hand:
``mvds testbed run FILE --calibrate``; docs/results/calibration keeps it).

When the simulated numbers change (an engine change): rerun the three
commands of that section, copy calibration.json to
docs/results/calibration/NAME.json and the --seeds 20 report.json to
NAME-seeds.json, and update the text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mvds.testbed.calibrate import CALIBRATED, docs_tables, measures
from mvds.testbed.scenario import load_scenario
from mvds.testbed.simulate import run_seeds, simulate
from mvds.testbed.stats import summarize

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results" / "calibration"
STALE = "is stale: see this test's docstring"


def test_simulation_md_quotes_the_committed_tables():
    text = (ROOT / "docs" / "SIMULATION.md").read_text()
    for table in docs_tables(RESULTS):
        assert table in text, f"docs/SIMULATION.md's calibration tables {STALE}"


@pytest.mark.parametrize("name,label,path", CALIBRATED, ids=[c[0] for c in CALIBRATED])
def test_the_simulated_half_is_what_the_code_produces(name, label, path):
    scenario = load_scenario(ROOT / path)
    committed = json.loads((RESULTS / f"{name}.json").read_text())
    assert committed["seed"] == scenario.seed
    sim = simulate(scenario, scenario.seed)
    assert measures(sim, sim["latencies_s"]) == committed["sim"], f"{name}.json {STALE}"


@pytest.mark.parametrize("name,label,path", CALIBRATED, ids=[c[0] for c in CALIBRATED])
def test_the_seed_statistics_are_what_the_code_produces(name, label, path):
    scenario = load_scenario(ROOT / path)
    committed = json.loads((RESULTS / f"{name}-seeds.json").read_text())
    runs = run_seeds(scenario, committed["seeds"], workers=1)
    for run in runs:
        run.pop("latencies_s")
    assert summarize(runs) == committed["summary"], f"{name}-seeds.json {STALE}"


def test_workers_do_not_change_the_results():
    scenario = load_scenario(ROOT / "scenarios" / "sketch.toml")
    one = run_seeds(scenario, [1, 2, 3], workers=1)
    two = run_seeds(scenario, [1, 2, 3], workers=2)
    assert one == two
    assert one[0] != one[1]  # the seed matters


def test_the_seeded_mode_sweep_is_quoted_and_reproduced():
    from mvds.sim.seeds import aggregate, markdown, run_seeds as sweep_seeds

    committed = json.loads((RESULTS / "sweep-mode-loss50-seeds.json").read_text())
    table = markdown(committed["scenario"], committed["seeds"], committed["points"]).split("\n", 2)[2]
    assert table.strip() in (ROOT / "docs" / "SIMULATION.md").read_text(), \
        f"docs/SIMULATION.md's seeded mode sweep {STALE}"
    fresh = aggregate(sweep_seeds(committed["scenario"], committed["params"], committed["seeds"], 2))
    assert json.loads(json.dumps(fresh)) == committed["points"], f"sweep-mode-loss50-seeds.json {STALE}"
