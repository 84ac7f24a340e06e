"""A testbed scenario in the simulator: translation, faults, seeds, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, strategies as st

from mvds.testbed.scenario import parse_scenario
from mvds.testbed.simulate import Availability, simulate, to_setup
from mvds.testbed.stats import mean_ci, t_quantile

TWO = """
duration = "30s"
epoch_ms = 100
[[nodes]]
name = "a"
[[nodes]]
name = "b"
loss = 0.5
[[links]]
a = "a"
b = "b"
latency = "20ms"
b_to_a = {{ loss = 0.2 }}
[workload]
rate = 5
start = "0s"
stop = "2s"
nodes = ["a"]
{faults}
"""


def test_translation_ticks_directions_and_radio_loss():
    s = parse_scenario(TWO.format(faults=""), "two")
    setup = to_setup(s)
    ab, ba = setup.links
    assert (ab.a, ab.b, ba.a, ba.b) == ("a", "b", "b", "a") and ab.directed and ba.directed
    assert ab.latency == pytest.approx(0.2)  # 20 ms at 100 ms a tick
    assert ab.loss == pytest.approx(0.5)  # b's radio
    assert ba.loss == pytest.approx(1 - 0.8 * 0.5)
    assert setup.duration == pytest.approx(300)
    assert all(0 <= a.time < 20 for a in setup.appends)


def test_a_partition_holds_messages_until_it_heals():
    faults = '[[faults]]\nat = "0s"\naction = "partition"\nlinks = [["a", "b"]]\n' \
             '[[faults]]\nat = "5s"\naction = "heal"\nlinks = [["a", "b"]]'
    s = parse_scenario(TWO.format(faults=faults).replace("loss = 0.5", "loss = 0.0")
                       .replace("b_to_a = { loss = 0.2 }", ""), "cut")
    run = simulate(s)
    assert run["passed"]
    assert min(run["latencies_s"]) >= 3.0  # appended by 2 s, nothing passes before 5 s


def test_a_killed_node_is_offline_in_the_simulator():
    faults = '[[faults]]\nat = "0s"\naction = "kill"\nnode = "b"\n' \
             '[[faults]]\nat = "4s"\naction = "restart"\nnode = "b"'
    s = parse_scenario(TWO.format(faults=faults), "kill")
    schedule = to_setup(s).nodes[1].schedule
    assert not schedule.online(0) and not schedule.online(39) and schedule.online(40)
    assert simulate(s)["passed"]


@given(st.lists(st.tuples(st.booleans(), st.integers(1, 5)), min_size=1, max_size=4),
       st.integers(0, 200))
def test_availability_cycles_its_phases(phases, tick):
    a = Availability(tuple(phases))
    period = sum(t for _, t in phases)
    assert a.online(tick) == a.online(tick + period)


def test_confidence_interval():
    assert mean_ci([1, 2, 3]) == {"mean": 2.0, "ci95": round(4.303 / 3 ** 0.5, 4), "n": 3}
    assert mean_ci([5]) == {"mean": 5.0, "ci95": None, "n": 1}
    assert t_quantile(1000) == pytest.approx(1.962, abs=0.002)


def test_cli_seeds_and_workers(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text(TWO.format(faults=""))
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "mvds", "sim", "scenario", str(path), "--seeds", "4",
                             "--workers", "2", "--out", str(out)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["seeds"] == [1, 2, 3, 4] and report["summary"]["runs"] == 4
    assert report["summary"]["retransmissions"]["ci95"] is not None
    assert "95% CI" in (out / "summary.md").read_text()
    bad = subprocess.run([sys.executable, "-m", "mvds", "sim", "scenario", str(tmp_path / "no.toml")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "no such file" in bad.stderr


def test_named_scenarios_over_seeds(tmp_path):
    out = tmp_path / "seeds"
    result = subprocess.run([sys.executable, "-m", "mvds", "sim", "seed", "--seeds", "3", "--workers", "2",
                             "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "seeds.json").read_text())
    assert report["seeds"] == [0, 1, 2] and len(report["points"]) == 1
    row = report["points"][0]
    assert row["runs"] == 3 and row["delivery_ratio"]["n"] == 3
    assert "mean ± 95% CI" in (out / "seeds.md").read_text()
    bad = subprocess.run([sys.executable, "-m", "mvds", "sim", "seed", "--seeds", "1"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--seeds must be between 2" in bad.stderr
