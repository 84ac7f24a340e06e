"""Turn an outcome into the report: JSON for machines, Markdown for people.

Both are pure functions of the outcome (no wall-clock times, no paths), so
the same scenario, parameters and seed produce byte-identical files.  Times
are in ticks; one tick is one engine epoch.
"""

from __future__ import annotations

import json
from typing import Any

from mvds.sim.metrics import RECORD_TYPES, percentile
from mvds.sim.model import policy_label, resolve_rules
from mvds.sim.network import SimResult
from mvds.sim.runner import Outcome, RunOutcome, SweepOutcome
from mvds.sim.schedules import online_fraction

CDF_STEPS = list(range(0, 101, 5))


def _r(value: float) -> float:
    return round(value, 6)


def message_label(result: SimResult, mid: bytes) -> str:
    """The body if it is short text, else the short id."""
    info = result.recorder.messages[mid]
    try:
        text = info.body.decode("utf-8")
    except UnicodeDecodeError:
        return mid[:4].hex()
    return text if len(text) <= 24 and text.isprintable() else mid[:4].hex()


def paths(result: SimResult) -> dict[tuple[bytes, int], tuple[float, list[int]]]:
    """For each delivery: when, and the chain of nodes it travelled from its author."""
    recorder = result.recorder
    via = {(d.message, d.node): d.via for d in recorder.deliveries}
    out = {}
    for d in recorder.deliveries:
        author = recorder.messages[d.message].author if d.message in recorder.messages else None
        chain = [d.node]
        hop = d.via
        while hop >= 0 and hop not in chain and len(chain) <= len(result.names):
            chain.append(hop)
            if hop == author:
                break
            hop = via.get((d.message, hop), -1)
        out[(d.message, d.node)] = (d.time, list(reversed(chain)))
    return out


def latency_cdf(result: SimResult) -> list[list[float]]:
    """[percent, latency] at every 5th percentile of delivery latency."""
    latencies = result.recorder.latencies()
    if not latencies:
        return []
    return [[q, _r(percentile(latencies, q) if q else latencies[0])] for q in CDF_STEPS]


def run_json(result: SimResult) -> dict[str, Any]:
    """The measurements of one simulation."""
    recorder = result.recorder
    names = result.names
    stats = result.engine_stats()
    detail = len(recorder.messages) <= result.setup.detail_limit
    doc: dict[str, Any] = {
        "summary": recorder.summary(result.end_time, stats),
        "events": result.events,
        "delivery_ratio_over_time": recorder.ratio_over_time(),
        "latency_cdf": latency_cdf(result),
    }
    nodes = {}
    for i, spec in enumerate(result.setup.nodes):
        nodes[spec.name] = {
            "mode": spec.mode.value,
            "schedule": result.schedules[i].describe(),
            "online_fraction": _r(online_fraction(result.schedules[i], result.end_time)),
            "policy": spec.policy,
            "rules": resolve_rules(spec.policy, spec.rules),
            "messages_held": result.engines[i].store.message_count(),
            "peak_sync_state": result.peak_records[i],
            "sync_state_at_end": result.engines[i].store.record_count(),
        }
        if detail:
            nodes[spec.name]["engine"] = dict(sorted(result.engines[i].stats.items()))
    doc["nodes"] = nodes
    if detail:
        routes = paths(result)
        messages = []
        for mid, info in recorder.messages.items():
            deliveries = [
                {
                    "node": names[node],
                    "at": _r(routes[(mid, node)][0]),
                    "path": [names[n] for n in routes[(mid, node)][1]],
                }
                for node in sorted(
                    (n for (m, n) in routes if m == mid), key=lambda n: (routes[(mid, n)][0], n)
                )
            ]
            messages.append(
                {
                    "id": mid.hex(),
                    "label": message_label(result, mid),
                    "author": names[info.author],
                    "group": info.group,
                    "appended_at": _r(info.appended_at),
                    "parents": [p[:4].hex() for p in info.parents],
                    "expected": sorted(names[n] for n in recorder.expected.get(mid, ())),
                    "deliveries": deliveries,
                }
            )
        doc["messages"] = messages
    if result.exposure is not None:
        doc["exposure"] = result.exposure.report(detail)
    return doc


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "scenario": outcome.scenario.name,
        "question": outcome.scenario.question,
        "seed": outcome.seed,
        "params": outcome.params,
        "time_unit": "tick (one engine epoch)",
    }
    if isinstance(outcome, RunOutcome):
        doc.update(run_json(outcome.result))
    else:
        rules = outcome.params.get("rules", "auto")
        doc["runs"] = [
            {
                "point": point,
                "rules": resolve_rules(point["policy"], rules),
                "summary": result.summary(),
                "events": result.events,
                "latency_cdf": latency_cdf(result),
            }
            for point, result in outcome.points
        ]
    return doc


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


# -- Markdown ----------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return lines


def _params_lines(outcome: Outcome) -> list[str]:
    return _table(["parameter", "value"], [[k, v] for k, v in outcome.params.items()])


def summary_rows(summary: dict[str, Any]) -> list[list[Any]]:
    latency = summary["latency"]
    wire = summary["wire"]
    return [
        ["messages appended", summary["messages"]],
        ["deliveries (got / expected)", f"{summary['delivered']:,} / {summary['expected_deliveries']:,}"],
        ["received (stored; in causal order some wait for parents)", summary["received"]],
        ["delivery ratio", summary["delivery_ratio"]],
        ["time to full convergence (ticks)", summary["convergence_time"]],
        ["sync state drained at (tick)", summary["sync_state_drained_at"]],
        ["latency p50 / p90 / p99 / max (ticks)",
         " / ".join(_fmt(latency.get(k)) for k in ("p50", "p90", "p99", "max"))],
        ["payloads / datagrams sent", f"{wire['payloads']:,} / {wire['datagrams']:,}"],
        ["bytes on the wire", wire["bytes"]],
        ["bytes per delivered message", wire["bytes_per_delivered"]],
        ["datagrams lost / duplicated", f"{wire['lost']:,} / {wire['duplicated']:,}"],
        ["dropped: sender / receiver offline",
         f"{wire['dropped_sender_offline']:,} / {wire['dropped_receiver_offline']:,}"],
        ["retransmissions (offer / request / message)",
         f"{summary['retransmissions']:,} ("
         + " / ".join(f"{summary['retransmissions_by_type'][k]:,}" for k in ("offer", "request", "message"))
         + ")"],
        ["peak sync state (records, all nodes)", summary["peak_sync_state"]],
    ]


def run_markdown(outcome: RunOutcome, doc: dict[str, Any], figures: list[str]) -> str:
    result = outcome.result
    summary = doc["summary"]
    lines = [f"# mvds sim {outcome.scenario.name} (seed {outcome.seed})", "", f"> {outcome.scenario.question}", ""]
    lines += ["Times are in ticks; one tick is one engine epoch.", ""]
    lines += ["## Summary", ""] + _table(["metric", "value"], summary_rows(summary)) + [""]
    wire = summary["wire"]
    lines += ["## On the wire, by record type", ""]
    lines += _table(
        ["record", "records", "bytes", "payloads carrying it"],
        [[kind, wire["records"][kind], wire["record_bytes"][kind], wire["datagrams_with"][kind]] for kind in RECORD_TYPES],
    ) + [""]
    lines += ["## Nodes", ""]
    lines += _table(
        ["node", "mode", "availability", "online", "messages held", "peak sync state"],
        [
            [name, n["mode"], n["schedule"], f"{n['online_fraction']:.0%}", n["messages_held"], n["peak_sync_state"]]
            for name, n in doc["nodes"].items()
        ],
    ) + [""]
    if "messages" in doc and doc["messages"]:
        names = result.names
        lines += ["## Who holds what when, and by which path", ""]
        lines += ["Each cell: tick of delivery and the path the message took (author first).", ""]
        rows = []
        for message in doc["messages"]:
            cells = {d["node"]: f"{_fmt(d['at'])}: {'→'.join(d['path'])}" for d in message["deliveries"]}
            row = [f"{message['label']} ({message['author']}, t={_fmt(message['appended_at'])})"]
            for name in names:
                if name == message["author"]:
                    row.append("author")
                else:
                    row.append(cells.get(name, "never" if name in message["expected"] else "-"))
            rows.append(row)
        if len(names) <= 12:
            lines += _table(["message"] + names, rows) + [""]
        else:
            lines += [f"({len(rows)} messages; per-delivery detail is in report.json)", ""]
    if "exposure" in doc:
        lines += ["## Exposure: what each node could observe", ""]
        lines += [
            "ids seen: message ids named in anything it received; held: messages whose "
            "content it received; relationships: (holder, author) pairs it can infer "
            "beyond its own contacts.",
            "",
        ]
        rows = []
        detailed = False
        for name, e in doc["exposure"].items():
            if "relationship_pairs" in e:
                detailed = True
                rows.append(
                    [name, e["ids_seen"], e["held"], ", ".join(e["authors_seen_names"]) or "-",
                     ", ".join(e["contact_names"]) or "-", ", ".join(e["relationship_pairs"]) or "-"]
                )
            else:
                rows.append([name, e["ids_seen"], e["held"], e["authors_seen"], e["contacts"], e["relationships"]])
        header = ["node", "ids seen", "held", "authors", "contacts", "relationships"]
        if not detailed or len(rows) <= 20:
            lines += _table(header, rows[:50]) + [""]
            if len(rows) > 50:
                lines += [f"(first 50 of {len(rows)} nodes; all in report.json)", ""]
    lines += _figure_lines(figures)
    lines += ["## Parameters", ""] + _params_lines(outcome) + [""]
    return "\n".join(lines)


SWEEP_HEADER = [
    "loss", "availability", "mode", "policy", "delivery", "converged at", "p50", "p90",
    "datagrams", "bytes", "bytes/delivered", "retransmissions", "peak sync state",
]


def sweep_rows(doc: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for run in doc["runs"]:
        p, s = run["point"], run["summary"]
        policy = policy_label(p["policy"], run.get("rules", "auto"))
        rows.append(
            [p["loss"], p["availability"], p["mode"], policy, s["delivery_ratio"], s["convergence_time"],
             s["latency"].get("p50"), s["latency"].get("p90"), s["wire"]["datagrams"], s["wire"]["bytes"],
             s["wire"]["bytes_per_delivered"], s["retransmissions"], s["peak_sync_state"]]
        )
    return rows


def sweep_markdown(outcome: SweepOutcome, doc: dict[str, Any], figures: list[str]) -> str:
    lines = [f"# mvds sim {outcome.scenario.name} (seed {outcome.seed})", "", f"> {outcome.scenario.question}", ""]
    lines += [
        "Every run uses the same network (same seed); times in ticks (one epoch). "
        "`converged at` is the tick of the last expected delivery (- if some never arrived).",
        "",
    ]
    lines += _table(SWEEP_HEADER, sweep_rows(doc)) + [""]
    lines += _figure_lines(figures)
    lines += ["## Parameters", ""] + _params_lines(outcome) + [""]
    return "\n".join(lines)


def _figure_lines(figures: list[str]) -> list[str]:
    if not figures:
        return []
    lines = ["## Figures", ""]
    for name in figures:
        if name.endswith(".png"):
            lines += [f"![{name}]({name})", ""]
        else:
            lines += [f"- [{name}]({name})", ""]
    return lines


def markdown(outcome: Outcome, doc: dict[str, Any], figures: list[str]) -> str:
    if isinstance(outcome, RunOutcome):
        return run_markdown(outcome, doc, figures)
    return sweep_markdown(outcome, doc, figures)
