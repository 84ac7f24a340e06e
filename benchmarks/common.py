"""The benchmark vocabulary shared by every bench_*.py module and the runner."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Benchmark:
    """One benchmark: ``run()`` performs one repeat and returns its metrics.

    ``metrics`` names what ``run`` returns (metric -> unit); ``targets`` the
    goal per metric as text (for example ``">= 20000"``), shown next to the
    result.  ``params`` are recorded in the JSON so a number always comes with
    what produced it.
    """

    name: str
    run: Callable[[], dict[str, float]]
    metrics: dict[str, str]
    targets: dict[str, str] = field(default_factory=dict)
    params: dict[str, object] = field(default_factory=dict)
    description: str = ""


@dataclass
class Summary:
    """A metric aggregated over repeats."""

    benchmark: str
    metric: str
    unit: str
    values: list[float]
    target: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def as_dict(self) -> dict[str, object]:
        return {
            "benchmark": self.benchmark,
            "metric": self.metric,
            "unit": self.unit,
            "min": min(self.values),
            "median": self.median,
            "max": max(self.values),
            "values": self.values,
            "target": self.target,
        }


def machine_info() -> dict[str, object]:
    """What the numbers were measured on."""
    info: dict[str, object] = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for module in ("mvds", "trio", "google.protobuf", "cryptography", "structlog"):
        try:
            mod = __import__(module, fromlist=["__version__"])
            versions[module] = getattr(mod, "__version__", "?")
        except ImportError:
            versions[module] = None
    import sqlite3

    versions["sqlite"] = sqlite3.sqlite_version
    info["versions"] = versions
    return info


def calibrate() -> float:
    """Milliseconds a fixed pure-Python workload takes (best of 5).

    This machine's speed drifts (a shared virtual machine: the same code ran
    about a quarter slower an hour apart), so every result file records how
    fast the interpreter was at its start and end; compare numbers from two
    files only next to these.
    """
    import time

    def work() -> int:
        total = 0
        table = {}
        for i in range(200_000):
            total += i * i % 7
            table[i & 1023] = total
        return total

    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 2)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank on sorted values."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]
