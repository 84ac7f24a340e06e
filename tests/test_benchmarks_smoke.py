"""The benchmark runner still runs: a tiny version of every benchmark.

Benchmarks are not timed tests: nothing here judges a number.  What is
checked is that every benchmark completes (so a broken one cannot sit
unnoticed until someone measures), that the runner prints its table and
writes JSON with the machine, the parameters and every metric of every
benchmark, and that each value is a finite number.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_every_benchmark_runs_quick_and_writes_json(tmp_path):
    out = tmp_path / "quick.json"
    listed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--list"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    names = [line.split(":", 1)[0] for line in listed.splitlines() if line.strip()]
    assert len(names) >= 20

    run = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "benchmark" in run.stdout and "median" in run.stdout  # the table

    document = json.loads(out.read_text())
    assert document["quick"] is True
    assert {"python", "cpus"} <= set(document["machine"])
    calibration = document["calibration"]  # the interpreter's speed, before and after
    assert all(math.isfinite(calibration[k]) and calibration[k] > 0 for k in ("before_ms", "after_ms"))
    assert [b["name"] for b in document["benchmarks"]] == names
    for bench in document["benchmarks"]:
        assert bench["results"], bench["name"]
        assert isinstance(bench["params"], dict)
        for result in bench["results"]:
            for key in ("min", "median", "max"):
                value = result[key]
                assert isinstance(value, (int, float)) and math.isfinite(value), (
                    bench["name"], result["metric"], key, value,
                )
