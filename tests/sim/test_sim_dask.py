"""``mvds sim ... --seeds N --dask ADDRESS``: the same runs on a Dask cluster.

A real ``distributed.LocalCluster`` (scheduler and two worker processes on
127.0.0.1) stands in for an existing cluster; the CLI connects to it by
address, as it would to a remote one.  The results must equal the local
run's for the same seeds, byte for byte.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _mvds(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mvds", "sim", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def scheduler():
    distributed = pytest.importorskip("distributed", reason="dask's distributed is not installed "
                                      "(pip install -e '.[dask]')")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def test_a_sweep_over_seeds_on_dask_equals_the_local_run(tmp_path, scheduler):
    local = _mvds("sweep-mode", "--seeds", "3", "--out", str(tmp_path / "local"), "--no-plots")
    assert local.returncode == 0, local.stderr
    dask = _mvds("sweep-mode", "--seeds", "3", "--dask", scheduler, "--out", str(tmp_path / "dask"),
                 "--no-plots")
    assert dask.returncode == 0, dask.stderr
    assert f"(Dask at {scheduler})" in dask.stdout
    on_dask = json.loads((tmp_path / "dask" / "seeds.json").read_text())
    assert on_dask == json.loads((tmp_path / "local" / "seeds.json").read_text())
    assert len(on_dask["points"]) == 6 and all(p["runs"] == 3 for p in on_dask["points"])


def test_a_scenario_file_over_seeds_on_dask_equals_the_local_run(tmp_path, scheduler):
    sketch = str(ROOT / "scenarios" / "sketch.toml")
    local = _mvds("scenario", sketch, "--seeds", "4", "--out", str(tmp_path / "local"))
    dask = _mvds("scenario", sketch, "--seeds", "4", "--dask", scheduler, "--out", str(tmp_path / "dask"))
    assert local.returncode == dask.returncode == 0, local.stderr + dask.stderr
    on_dask = json.loads((tmp_path / "dask" / "report.json").read_text())
    assert on_dask == json.loads((tmp_path / "local" / "report.json").read_text())
    assert on_dask["seeds"] == [1, 2, 3, 4] and on_dask["summary"]["runs"] == 4


@pytest.mark.parametrize("args, error", [
    (["seed", "--dask", "tcp://127.0.0.1:8786"], "--dask goes with --seeds N"),
    (["seed", "--seeds", "2", "--workers", "2", "--dask", "tcp://127.0.0.1:8786"],
     "--workers and --dask: pick one"),
])
def test_dask_misuse_is_one_clear_line(args, error):
    result = _mvds(*args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mvds: {error}"), result.stderr
