"""Write an outcome's files: report.json, summary.md, figures, the DAG.

Returns what it wrote and one-line notes (e.g. "plots skipped: matplotlib
is not installed") for the command line to print.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field

from mvds.sim import dag, plots
from mvds.sim.report import markdown, message_label, outcome_json, dumps
from mvds.sim.runner import Outcome, RunOutcome

MAX_SEQUENCE_NODES = 6

FIGURE_NAMES = (
    "dag.dot",
    "dag.png",
    "delivery.png",
    "sequence.png",
    "delivery_cdf.png",
    "bandwidth_vs_loss.png",
    "bandwidth_vs_availability.png",
)
"""Every figure a run may write.  Those left from an earlier run into the same
directory are removed first, so a directory never mixes figures of two runs
(say, a new report beside the DAG picture of an old one when Graphviz is
missing now)."""


@dataclass
class Written:
    files: list[pathlib.Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def write_outcome(outcome: Outcome, out: pathlib.Path, want_plots: bool = True) -> Written:
    """Write every output for ``outcome`` into directory ``out`` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    written = Written()
    for name in FIGURE_NAMES:
        (out / name).unlink(missing_ok=True)
    figures: list[pathlib.Path] = []
    title = f"mvds sim {outcome.scenario.name} (seed {outcome.seed})"
    can_plot = want_plots and plots.available()
    if want_plots and not can_plot:
        written.notes.append("plots skipped: matplotlib is not installed (pip install 'mvds[plots]')")
    if isinstance(outcome, RunOutcome):
        result = outcome.result
        if len(result.recorder.messages) <= result.setup.detail_limit and result.recorder.messages:
            dot_path = out / "dag.dot"
            dot_path.write_text(dag.to_dot(result, message_label))
            figures.append(dot_path)
            png = dag.render_png(dot_path)
            if png is not None:
                figures.append(png)
            else:
                written.notes.append("DAG PNG skipped: Graphviz 'dot' is not on PATH (dag.dot written)")
        if can_plot:
            figures.append(plots.delivery_figure(result, title, out / "delivery.png"))
            if result.trace and len(result.names) <= MAX_SEQUENCE_NODES:
                figures.append(plots.sequence_figure(result, title, out / "sequence.png"))
    elif can_plot:
        figures.extend(plots.sweep_figures(outcome, out))
    doc = outcome_json(outcome)
    report = out / "report.json"
    report.write_text(dumps(doc))
    summary = out / "summary.md"
    summary.write_text(markdown(outcome, doc, [f.name for f in figures]))
    written.files = [report, summary, *figures]
    return written
