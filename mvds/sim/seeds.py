"""A named scenario or sweep over many seeds: mean and 95% confidence interval.

One seed is one draw: the sweeps' single-seed curves show noise (a point
converging much later than its neighbours).  ``mvds sim NAME --seeds N``
runs seeds SEED..SEED+N-1 (spread over ``--workers`` local processes or
an existing Dask cluster with ``--dask ADDRESS``; the numbers do not
depend on where they ran) and reports each headline measure of
each sweep point as a mean with a Student-t 95% interval
(:func:`mvds.testbed.stats.mean_ci`).  Runs that never converged are left
out of the convergence mean and counted.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from mvds.sim.distribute import map_runs
from mvds.sim.runner import RunOutcome, run_scenario
from mvds.testbed.stats import mean_ci

MEASURES = ("delivery_ratio", "convergence_time", "latency.p50", "latency.p90", "wire.datagrams",
            "wire.bytes", "retransmissions", "peak_sync_state")
"""Summary keys (dotted: nested) reported per point."""


def _get(summary: Mapping[str, Any], key: str) -> Any:
    value: Any = summary
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _one_seed(job: tuple[str, dict[str, Any], int]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    name, given, seed = job
    outcome = run_scenario(name, given, seed)
    if isinstance(outcome, RunOutcome):
        points = [({}, outcome.result)]
    else:
        points = outcome.points
    return [(point, {key: _get(result.summary(), key) for key in MEASURES}) for point, result in points]


def run_seeds(name: str, given: Mapping[str, Any], seeds: list[int], workers: int = 1,
              dask: str | None = None) -> list[list[tuple[dict[str, Any], dict[str, Any]]]]:
    """Per seed (in ``seeds`` order), per point, the headline measures; the
    runs go to ``workers`` local processes or the Dask scheduler at ``dask``
    (:mod:`mvds.sim.distribute`)."""
    jobs = [(name, dict(given), seed) for seed in seeds]
    return map_runs(_one_seed, jobs, workers, dask)


def aggregate(per_seed: list[list[tuple[dict[str, Any], dict[str, Any]]]]) -> list[dict[str, Any]]:
    """One row per point: ``{"point", "runs", "converged", MEASURE: {mean, ci95, n}}``."""
    order: list[str] = []
    values: dict[str, list[dict[str, Any]]] = {}
    points: dict[str, dict[str, Any]] = {}
    for runs in per_seed:
        for point, measures in runs:
            key = json.dumps(point, sort_keys=True)
            if key not in values:
                order.append(key)
                values[key] = []
                points[key] = point
            values[key].append(measures)
    rows = []
    for key in order:
        runs = values[key]
        row: dict[str, Any] = {"point": points[key], "runs": len(runs),
                               "converged": sum(r["convergence_time"] is not None for r in runs)}
        for measure in MEASURES:
            row[measure] = mean_ci(r[measure] for r in runs if r[measure] is not None)
        rows.append(row)
    return rows


def _cell(stat: Mapping[str, Any]) -> str:
    if stat["mean"] is None:
        return "-"
    if stat["ci95"] is None:
        return f"{stat['mean']:g}"
    return f"{stat['mean']:g} ± {stat['ci95']:g}"


def markdown(name: str, seeds: list[int], rows: list[dict[str, Any]]) -> str:
    axes = list(rows[0]["point"]) if rows and rows[0]["point"] else []
    head = axes + ["converged"] + list(MEASURES)
    lines = [f"# {name}: {len(seeds)} seeds ({seeds[0]}..{seeds[-1]}), mean ± 95% CI", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        cells = [str(row["point"][axis]) for axis in axes]
        cells.append(f"{row['converged']}/{row['runs']}")
        cells += [_cell(row[m]) for m in MEASURES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
