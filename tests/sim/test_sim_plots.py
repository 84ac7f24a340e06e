"""Figures (only where the optional matplotlib is installed: pip install '.[plots]')."""

from __future__ import annotations

import pytest

from mvds.sim.output import write_outcome
from mvds.sim.runner import run_scenario

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    data = path.read_bytes()
    return data.startswith(PNG) and len(data) > 1000


def test_single_run_figures(tmp_path):
    written = write_outcome(run_scenario("seed"), tmp_path)
    names = {p.name for p in written.files}
    assert {"delivery.png", "sequence.png", "dag.dot", "report.json", "summary.md"} <= names
    assert _is_png(tmp_path / "delivery.png") and _is_png(tmp_path / "sequence.png")
    assert "![sequence.png](sequence.png)" in (tmp_path / "summary.md").read_text()


def test_sweep_figures(tmp_path):
    outcome = run_scenario(
        "sweep-mode",
        {"nodes": "4", "communicating": "2", "sharing": "2", "chat": "10", "loss": "0,0.3",
         "modes": "batch,interactive", "max_duration": "300"},
    )
    write_outcome(outcome, tmp_path)
    assert _is_png(tmp_path / "delivery_cdf.png") and _is_png(tmp_path / "bandwidth_vs_loss.png")
