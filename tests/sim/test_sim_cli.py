"""`mvds sim` from the command line: outputs, config files and clear errors."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from mvds.cli import main


def _mvds(*args: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mvds", "sim", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_list_shows_scenarios_and_parameters(capsys):
    assert main(["sim", "--list"]) == 0
    listing = capsys.readouterr().out
    for name in ("seed", "reference", "sweep-loss", "all"):
        assert name in listing
    assert main(["sim", "reference", "--list"]) == 0
    params = capsys.readouterr().out
    assert "offline" in params and "[default: 90.0]" in params


def test_all_names_each_run_by_its_folder_and_parameters(tmp_path, capsys, monkeypatch):
    import mvds.sim.scenarios as scenarios

    monkeypatch.setattr(scenarios, "ALL_RUNS", [("seed", "seed", {}), ("seed-slow", "seed", {"latency": "0.3"})])
    assert main(["sim", "all", "--out", str(tmp_path), "--no-plots"]) == 0
    headlines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert headlines[0].startswith("seed: 6/6 deliveries")
    assert headlines[1].startswith("seed-slow (seed, latency=0.3): 6/6 deliveries")
    assert json.loads((tmp_path / "seed-slow" / "report.json").read_text())["params"]["latency"] == 0.3


def test_run_writes_report_summary_and_dag(tmp_path, capsys):
    out = tmp_path / "seed"
    assert main(["sim", "seed", "--out", str(out), "--no-plots", "latency=0.2"]) == 0
    printed = capsys.readouterr().out
    assert "6/6 deliveries (100.0%)" in printed and "events/s" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["params"]["latency"] == 0.2
    assert report["summary"]["delivery_ratio"] == 1.0
    summary = (out / "summary.md").read_text()
    assert "## Who holds what when" in summary and "A→B→D→C" in summary
    assert (out / "dag.dot").read_text().startswith("digraph messages {")


def test_dag_edges_follow_parents(tmp_path):
    out = tmp_path / "np"
    assert main(["sim", "new-party", "--out", str(out), "--no-plots"]) == 0
    report = json.loads((out / "report.json").read_text())
    dot = (out / "dag.dot").read_text()
    edges = sum(len(m["parents"]) for m in report["messages"])
    assert edges > 0 and dot.count("->") == edges


def test_config_file_sets_scenario_seed_and_params(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('scenario = "ack-loss"\nseed = 5\n[params]\ndrop_acks = 2\nmode = "interactive"\n')
    out = tmp_path / "out"
    assert main(["sim", "--config", str(config), "--out", str(out), "--no-plots", "drop_acks=1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["seed"] == 5
    assert report["params"]["drop_acks"] == 1  # the command line wins
    assert report["params"]["mode"] == "interactive"


def test_plots_skipped_without_matplotlib_says_so(tmp_path, capsys, monkeypatch):
    from mvds.sim import plots

    monkeypatch.setattr(plots, "available", lambda: False)
    assert main(["sim", "ack-loss", "--out", str(tmp_path)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "plots skipped" in line]
    assert len(lines) == 1 and "matplotlib" in lines[0]
    assert (tmp_path / "report.json").exists() and not list(tmp_path.glob("delivery*.png"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["nosuch"], "unknown scenario 'nosuch'"),
        ([], "name a scenario"),
        (["seed", "loss=lots"], "loss: expected float"),
        (["seed", "colour=blue"], "unknown parameter 'colour'"),
        (["seed", "latency"], "expected NAME=VALUE"),
        (["reference", "nodes=4", "sharing=4"], "sharing=4 needs groups of at least 5"),
        (["seed", "--config", "/nonexistent/x.toml"], "does not exist"),
        (["all", "loss=0.1"], "'all' runs every scenario"),
    ],
)
def test_bad_input_is_one_clear_line(args, message, tmp_path):
    completed = _mvds(*args, "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert completed.returncode != 0
    assert completed.stdout == ""
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mvds: ") and message in lines[0], completed.stderr



def test_a_usage_error_is_one_line_too(tmp_path):
    completed = _mvds("seed", "--bogus", cwd=tmp_path)
    assert completed.returncode == 2 and completed.stdout == ""
    lines = completed.stderr.strip().splitlines()
    assert lines == ["mvds sim: error: unrecognized arguments: --bogus (see mvds sim --help)"]

def test_malformed_toml_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("scenario = \n")
    completed = _mvds("--config", str(bad))
    assert completed.returncode != 0
    assert completed.stderr.count("\n") == 1 and "not valid TOML" in completed.stderr


def test_unwritable_output_is_one_clear_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    completed = _mvds("ack-loss", "--out", str(blocker / "sub"), "--no-plots")
    assert completed.returncode != 0
    assert completed.stderr.count("\n") == 1 and "cannot write results" in completed.stderr


def test_progress_bar_on_request(tmp_path):
    completed = _mvds("availability", "messages=3", "--progress", "--no-plots", "--out", str(tmp_path))
    assert completed.returncode == 0, completed.stderr
    assert "sim availability [" in completed.stderr and "100%" in completed.stderr
    quiet = _mvds("availability", "messages=3", "--no-plots", "--out", str(tmp_path))
    assert quiet.stderr == ""  # not a terminal, not asked for


def test_a_rerun_leaves_no_figure_of_the_previous_run(tmp_path, monkeypatch):
    out = tmp_path / "seed"
    stale = ["dag.png", "delivery.png", "sequence.png", "delivery_cdf.png"]
    out.mkdir()
    for name in stale:
        (out / name).write_bytes(b"from an earlier run")
    monkeypatch.setattr("shutil.which", lambda name: None)  # no Graphviz
    assert main(["sim", "seed", "--out", str(out), "--no-plots"]) == 0
    assert not any((out / name).exists() for name in stale)
    assert (out / "dag.dot").exists() and (out / "report.json").exists()
