"""PNG figures (matplotlib, an optional extra: ``pip install 'mvds[plots]'``).

Only :func:`available` may be called without matplotlib; every drawing
function imports it lazily and uses the non-interactive Agg backend, so plots
work on a machine without a display.
"""

from __future__ import annotations

import pathlib
from typing import Any

from mvds.sim.model import policy_label
from mvds.sim.network import SimResult
from mvds.sim.runner import SweepOutcome
from mvds.sim.schedules import offline_intervals

MAX_SEQUENCE_ENTRIES = 160


def available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cdf_points(result: SimResult) -> tuple[list[float], list[float]]:
    """Latency CDF as a fraction of *expected* deliveries (lossy runs stay below 1)."""
    latencies = result.recorder.latencies()
    total = result.recorder.expected_total() or 1
    xs = [0.0] + latencies
    ys = [0.0] + [(i + 1) / total for i in range(len(latencies))]
    return xs, ys


def delivery_figure(result: SimResult, title: str, path: pathlib.Path) -> pathlib.Path:
    """Delivery ratio over time, and the latency CDF, for one run."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    series = result.recorder.ratio_over_time(points=2000)
    if series:
        left.step([p[0] for p in series], [p[1] for p in series], where="post")
    left.set_xlabel("tick")
    left.set_ylabel("delivered / expected")
    left.set_ylim(0, 1.05)
    left.set_title("delivery ratio over time")
    left.grid(alpha=0.3)
    xs, ys = _cdf_points(result)
    right.step(xs, ys, where="post")
    right.set_xlabel("latency (ticks)")
    right.set_ylabel("fraction of expected deliveries")
    right.set_ylim(0, 1.05)
    right.set_title("delivery latency CDF")
    right.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def sequence_figure(result: SimResult, title: str, path: pathlib.Path) -> pathlib.Path:
    """Records exchanged between nodes over time, like the MVDS spec's figures.

    One lifeline per node (grey where the node is offline), one arrow per
    datagram labelled with its records (M message, O offer, R request, A ack,
    - empty announce); lost datagrams end in a red cross half way.
    """
    plt = _pyplot()
    entries = result.trace[:MAX_SEQUENCE_ENTRIES]
    names = result.names
    end = max([e.arrived or e.sent for e in entries] + [1.0]) + 0.5
    fig, ax = plt.subplots(figsize=(max(8.0, 2.2 * len(names) + 1.5), max(5.0, min(30.0, 1.1 * end + 2))))
    for i, name in enumerate(names):
        ax.plot([i, i], [0, end], color="#333333", linewidth=1)
        for start, stop in offline_intervals(result.schedules[i], end):
            ax.add_patch(plt.Rectangle((i - 0.08, start), 0.16, stop - start, color="#bbbbbb", zorder=0))
        ax.text(i, -0.15, name, ha="center", va="bottom", fontsize=12, fontweight="bold")
    for entry in entries:
        x0, x1 = entry.src, entry.dst
        if entry.fate.startswith("dropped: sender"):
            ax.plot([x0], [entry.sent], marker="x", color="red")
            continue
        arrived = entry.arrived if entry.arrived is not None else entry.sent + 0.05
        if entry.fate in ("lost", "dropped: ack loss"):
            mid_x, mid_y = (x0 + x1) / 2, (entry.sent + arrived) / 2
            ax.annotate("", xy=(mid_x, mid_y), xytext=(x0, entry.sent),
                        arrowprops=dict(arrowstyle="-", color="red", linestyle="--"))
            ax.plot([mid_x], [mid_y], marker="x", color="red")
            ax.text(mid_x, mid_y, f" {entry.kinds}", fontsize=7, color="red", va="center")
            continue
        color = "#1f77b4" if entry.fate == "delivered" else "#d62728"
        ax.annotate("", xy=(x1, arrived), xytext=(x0, entry.sent),
                    arrowprops=dict(arrowstyle="->", color=color))
        # Label near the sender, where arrows from different nodes do not meet.
        ax.text(x0 + 0.22 * (x1 - x0), entry.sent + 0.22 * (arrived - entry.sent), entry.kinds,
                fontsize=7, ha="center", va="center", color=color,
                bbox=dict(boxstyle="round,pad=0.1", facecolor="white", edgecolor="none", alpha=0.8))
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(end, -0.3)
    ax.set_xticks([])
    ax.set_ylabel("tick")
    shown = "" if len(result.trace) <= MAX_SEQUENCE_ENTRIES else f" (first {MAX_SEQUENCE_ENTRIES} datagrams)"
    ax.set_title(f"{title}{shown}\nM message, O offer, R request, A ack, - announce; red: lost or dropped; grey: offline",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _label(point: dict[str, Any], varying: list[str], rules: str) -> str:
    parts = [policy_label(point[key], rules) if key == "policy" else str(point[key]) for key in varying]
    return ", ".join(parts) or "run"


def sweep_figures(outcome: SweepOutcome, out: pathlib.Path) -> list[pathlib.Path]:
    """Delivery CDF per mode/policy, and bandwidth per delivered message against
    the swept loss (or availability)."""
    plt = _pyplot()
    points = [p for p, _ in outcome.points]
    varying = [k for k in ("mode", "policy") if len({p[k] for p in points}) > 1]
    x_key = "loss" if len({p["loss"] for p in points}) > 1 else "availability"
    groups: dict[str, list[tuple[dict[str, Any], SimResult]]] = {}
    for point, result in outcome.points:
        groups.setdefault(_label(point, varying, outcome.params.get("rules", "auto")), []).append((point, result))
    files = []

    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, (label, runs) in zip(axes[0], groups.items()):
        for index, (point, result) in enumerate(runs):
            xs, ys = _cdf_points(result)
            ax.step(xs, ys, where="post", color=cmap(index / max(1, len(runs) - 1)),
                    label=f"{x_key} {point[x_key]:g}")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_title(label)
        ax.set_xlabel("delivery latency (ticks)")
        ax.set_ylabel("fraction of expected deliveries")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{outcome.scenario.name}: delivery CDF")
    fig.tight_layout()
    path = out / "delivery_cdf.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    files.append(path)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, runs in groups.items():
        xs = [point[x_key] for point, _ in runs]
        per_delivered = []
        p90 = []
        for _, result in runs:
            summary = result.summary()
            per_delivered.append(summary["wire"]["bytes_per_delivered"] or float("nan"))
            p90.append(summary["latency"].get("p90", float("nan")))
        left.plot(xs, per_delivered, marker="o", label=label)
        right.plot(xs, p90, marker="o", label=label)
    left.set_xlabel(x_key)
    left.set_ylabel("bytes on the wire per delivered message")
    left.set_title("bandwidth per delivered message")
    right.set_xlabel(x_key)
    right.set_ylabel("ticks")
    right.set_yscale("log")
    right.set_title("p90 delivery latency")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if x_key == "availability":
            ax.invert_xaxis()
    fig.suptitle(outcome.scenario.name)
    fig.tight_layout()
    path = out / f"bandwidth_vs_{x_key}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    files.append(path)
    return files
