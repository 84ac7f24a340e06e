"""Sim against real: the same scenario and seed in the simulator and on the
testbed, side by side (``mvds testbed run SCENARIO --calibrate``).

Compared: delivery (expected vs delivered), convergence after the last
append, the delivery-latency distribution (p50, p90, max, and the curve
as a plot), bytes and datagrams per delivered message, retransmissions
and one node's peak sync state.  Bytes differ by construction: the
simulator counts payload bytes, the testbed every datagram (encryption
envelope, handshakes, keepalives).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mvds.testbed.verdict import percentile

ROWS = [
    ("delivered / expected", "delivery"),
    ("convergence after the last append (s)", "convergence_s"),
    ("latency p50 (s)", "p50"),
    ("latency p90 (s)", "p90"),
    ("latency max (s)", "max"),
    ("bytes per delivered message", "bytes_per_delivery"),
    ("datagrams per delivered message", "datagrams_per_delivery"),
    ("retransmissions", "retransmissions"),
    ("peak sync state, one node (records)", "peak_state_records"),
]


def measures(run: dict[str, Any], latencies: list[float]) -> dict[str, Any]:
    """The compared measures of one side (a verdict or a sim headline)."""
    def q(p: float) -> float | None:
        value = percentile(latencies, p)
        return None if value is None else round(value, 3)

    return {
        "delivery": f"{run['delivered']}/{run['expected_deliveries']}",
        "convergence_s": run["convergence_s"],
        "p50": q(0.5), "p90": q(0.9), "max": q(1.0),
        "bytes_per_delivery": run["bytes_per_delivery"],
        "datagrams_per_delivery": run["datagrams_per_delivery"],
        "retransmissions": run["retransmissions"],
        "peak_state_records": run["peak_state_records"],
    }


def compare(real: dict[str, Any], real_latencies: list[float], sim: dict[str, Any]) -> dict[str, Any]:
    return {"real": measures(real, real_latencies), "sim": measures(sim, sim["latencies_s"])}


def ratio(real: Any, sim: Any) -> str:
    if isinstance(real, (int, float)) and isinstance(sim, (int, float)) and real:
        return f"{sim / real:.2f}"
    return "-"


def markdown(name: str, seed: int, comparison: dict[str, Any]) -> str:
    lines = [f"# Calibration: {name}, seed {seed}", "",
             "| measure | real daemons | simulator | sim / real |", "| --- | --- | --- | --- |"]
    for label, key in ROWS:
        real, sim = comparison["real"][key], comparison["sim"][key]
        lines.append(f"| {label} | {real} | {sim} | {ratio(real, sim)} |")
    return "\n".join(lines) + "\n"


def plot(path: Path, name: str, real_latencies: list[float], sim_latencies: list[float]) -> None:
    """Delivery-latency curves (share of deliveries within t seconds), both sides."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for label, values in (("real daemons", real_latencies), ("simulator", sim_latencies)):
        ordered = sorted(values)
        if ordered:
            ax.plot(ordered, [100 * (i + 1) / len(ordered) for i in range(len(ordered))],
                    drawstyle="steps-post", label=label)
    ax.set_xlabel("seconds from append to delivery")
    ax.set_ylabel("deliveries (%)")
    ax.set_title(f"calibration: {name}")
    ax.set_ylim(0, 105)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


CALIBRATED = [
    ("line5-lossless", "lossless line (5)", "scenarios/calibration/line5-lossless.toml"),
    ("ring8-lossy", "lossy ring (8)", "scenarios/calibration/ring8-lossy.toml"),
    ("sketch", "research sketch", "scenarios/sketch.toml"),
]
"""The scenarios docs/SIMULATION.md compares: (name, label, scenario file)."""

SEED_MEASURES = ("convergence_s", "latency_s.p50", "latency_s.max", "bytes_per_delivery",
                 "datagrams_per_delivery", "retransmissions", "peak_state_records")


def docs_tables(directory: Path) -> tuple[str, str]:
    """The two tables docs/SIMULATION.md quotes, from the committed results in
    ``directory`` (NAME.json: calibration; NAME-seeds.json: 20 simulated seeds)."""
    import json

    real_sim = {n: json.loads((directory / f"{n}.json").read_text()) for n, _, _ in CALIBRATED}
    head = "| measure | " + " | ".join(f"{label}: real / sim" for _, label, _ in CALIBRATED) + " |"
    lines = [head, "| --- |" + " --- |" * len(CALIBRATED)]
    for label, key in ROWS:
        cells = [f"{real_sim[n]['real'][key]} / {real_sim[n]['sim'][key]}" for n, _, _ in CALIBRATED]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    first = "\n".join(lines)
    seeds = {n: json.loads((directory / f"{n}-seeds.json").read_text())["summary"]
             for n, _, _ in CALIBRATED}
    lines = ["| simulated, mean ± 95% CI over 20 seeds | "
             + " | ".join(label for _, label, _ in CALIBRATED) + " |",
             "| --- |" + " --- |" * len(CALIBRATED)]
    for key in SEED_MEASURES:
        cells = [f"{seeds[n][key]['mean']:g} ± {seeds[n][key]['ci95']:g}" for n, _, _ in CALIBRATED]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return first, "\n".join(lines)
