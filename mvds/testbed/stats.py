"""Mean and 95% confidence interval over seeds (Student's t), without SciPy."""

from __future__ import annotations

import math
from typing import Any, Iterable

T_975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
"""Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom."""


def t_quantile(df: int) -> float:
    if df < 1:
        raise ValueError("a confidence interval needs at least two values")
    if df <= len(T_975):
        return T_975[df - 1]
    return 1.960 + 2.4 / df  # within 0.002 of the exact value above 30


def mean_ci(values: Iterable[float]) -> dict[str, float | int | None]:
    """``{"mean", "ci95", "n"}``: the interval is mean +- ci95 (None for n < 2)."""
    data = [float(v) for v in values]
    n = len(data)
    if n == 0:
        return {"mean": None, "ci95": None, "n": 0}
    mean = sum(data) / n
    if n < 2:
        return {"mean": round(mean, 4), "ci95": None, "n": 1}
    var = sum((x - mean) ** 2 for x in data) / (n - 1)
    return {"mean": round(mean, 4), "ci95": round(t_quantile(n - 1) * math.sqrt(var / n), 4), "n": n}


MEASURES = ("convergence_s", "latency_s.p50", "latency_s.max", "bytes_per_delivery",
            "datagrams_per_delivery", "retransmissions", "peak_state_records")


def _get(run: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        run = run.get(part) if isinstance(run, dict) else None  # type: ignore[assignment]
    return run


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each measure over the runs (runs that never converged leave out their convergence)."""
    out: dict[str, Any] = {"runs": len(runs), "passed": sum(1 for r in runs if r.get("passed"))}
    for key in MEASURES:
        values = [v for v in (_get(r, key) for r in runs) if v is not None]
        out[key] = mean_ci(values)
    return out
