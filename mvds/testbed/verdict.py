"""The verdict of a testbed run: did every node get every acknowledged
message exactly once, in causal order, and what did it cost?

Pure: the runner hands over the ledger (every append a daemon
acknowledged, with what its author had delivered before it), each node's
final history (read back from its store through the control API), the
times deliveries were seen live, and each node's counters.

Causal order without parents on the wire to the reader: a message's
author had *delivered* some messages before it appended (the runner saw
them in the author's subscription before it asked for the append); with
causal delivery each of those is an ancestor of the new message, so every
other node must deliver them first.  The ledger keeps that as a vector
(author -> how many of that author's messages the writer had delivered),
and a node's history is checked against it in sequence order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LedgerEntry:
    message_id: str
    author: str
    index: int
    """The author's own count of durable appends before this one."""
    group: str
    acked_at: float
    """Seconds since the run started when the daemon acknowledged it."""
    ephemeral: bool = False
    seen: dict[str, int] = field(default_factory=dict)
    """Author -> durable messages of that author the writer had delivered
    before this append (its causal past, as far as the runner saw)."""


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def judge(
    ledger: list[LedgerEntry],
    members: dict[str, list[str]],
    histories: dict[str, list[tuple[str, str | None]]],
    seen_at: dict[str, dict[str, float]],
    counters: dict[str, dict[str, int]],
    *,
    refused: int = 0,
    elapsed: float = 0.0,
    unordered: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The verdict as a JSON-able dict; ``passed`` is the exit status.

    ``members``: group -> nodes that should hold its messages;
    ``histories``: node -> (message id, author or None) in its store's sequence order;
    ``seen_at``: node -> message id -> when the runner saw it delivered;
    ``counters``: node -> bytes_out, datagrams_out, retransmissions, peak_records;
    ``unordered``: nodes with eventual delivery (no order promised: not checked).
    """
    durable = [e for e in ledger if not e.ephemeral]
    by_id = {e.message_id: e for e in durable}
    expected = 0
    missing: list[tuple[str, str]] = []
    duplicates = 0
    causal_violations = 0
    causal_examples: list[str] = []
    unknown = 0
    latencies: list[float] = []
    last_delivery = 0.0
    for node, history in histories.items():
        counts: dict[str, int] = {}
        delivered: dict[str, int] = {}
        for message_id, author in history:
            counts[message_id] = counts.get(message_id, 0) + 1
            if counts[message_id] > 1:
                duplicates += 1
                continue
            entry = by_id.get(message_id)
            if entry is None:
                unknown += 1  # e.g. an append whose acknowledgement the runner lost in a kill
            elif node not in unordered:
                for writer, count in entry.seen.items():
                    if writer != node and delivered.get(writer, 0) < count:
                        causal_violations += 1
                        if len(causal_examples) < 5:
                            causal_examples.append(
                                f"{node}: {entry.author}#{entry.index} before {writer}'s "
                                f"message {count} (had {delivered.get(writer, 0)})")
                        break
            if author is not None and author != node:
                delivered[author] = delivered.get(author, 0) + 1
        for entry in durable:
            if entry.author == node or node not in members.get(entry.group, ()):
                continue
            expected += 1
            if entry.message_id not in counts:
                missing.append((node, entry.message_id))
                continue
            at = seen_at.get(node, {}).get(entry.message_id)
            if at is not None:
                latencies.append(max(0.0, at - entry.acked_at))
                last_delivery = max(last_delivery, at)
    delivered_total = expected - len(missing)
    last_ack = max((e.acked_at for e in durable), default=0.0)
    totals = {key: sum(c.get(key, 0) for c in counters.values())
              for key in ("bytes_out", "datagrams_out", "retransmissions")}
    peak = max((c.get("peak_records", 0) for c in counters.values()), default=0)
    per = delivered_total or 1
    passed = not missing and not duplicates and not causal_violations and expected > 0
    return {
        "passed": passed,
        "acknowledged_appends": len(durable),
        "ephemeral_appends": len(ledger) - len(durable),
        "refused_appends": refused,
        "expected_deliveries": expected,
        "delivered": delivered_total,
        "missing": len(missing),
        "missing_examples": [f"{node}: {mid[:16]}" for node, mid in missing[:5]],
        "duplicates": duplicates,
        "causal_violations": causal_violations,
        "causal_examples": causal_examples,
        "unledgered_messages": unknown,
        "convergence_s": round(max(0.0, last_delivery - last_ack), 3) if not missing else None,
        "latency_s": {
            "p50": _round(percentile(latencies, 0.5)),
            "p95": _round(percentile(latencies, 0.95)),
            "max": _round(max(latencies) if latencies else None),
        },
        "bytes_out": totals["bytes_out"],
        "datagrams_out": totals["datagrams_out"],
        "bytes_per_delivery": round(totals["bytes_out"] / per, 1),
        "datagrams_per_delivery": round(totals["datagrams_out"] / per, 2),
        "retransmissions": totals["retransmissions"],
        "peak_state_records": peak,
        "elapsed_s": round(elapsed, 2),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def markdown(name: str, verdict: dict[str, Any], extra: dict[str, Any] | None = None) -> str:
    """The verdict as a Markdown summary."""
    lines = [f"# Testbed verdict: {name}", "",
             f"**{'PASS' if verdict['passed'] else 'FAIL'}**: "
             f"{verdict['delivered']} of {verdict['expected_deliveries']} expected deliveries of "
             f"{verdict['acknowledged_appends']} acknowledged messages; {verdict['missing']} missing, "
             f"{verdict['duplicates']} duplicated, {verdict['causal_violations']} out of causal order.",
             "", "| measure | value |", "| --- | --- |"]
    lat = verdict["latency_s"]
    rows = [
        ("convergence after the last acknowledged append (s)", verdict["convergence_s"]),
        ("delivery latency p50 / p95 / max (s)", f"{lat['p50']} / {lat['p95']} / {lat['max']}"),
        ("bytes sent per delivered message", verdict["bytes_per_delivery"]),
        ("datagrams sent per delivered message", verdict["datagrams_per_delivery"]),
        ("retransmissions", verdict["retransmissions"]),
        ("peak sync state on one node (records)", verdict["peak_state_records"]),
        ("ephemeral appends (not judged)", verdict["ephemeral_appends"]),
        ("appends refused (node down)", verdict["refused_appends"]),
        ("wall time (s)", verdict["elapsed_s"]),
    ]
    if "kernel" in verdict:  # --netns: what nftables and tc did
        k = verdict["kernel"]
        rows.append(("kernel: dropped on cut links / dropped by loss / duplicated / queue full",
                     f"{k.get('cut', 0)} / {k.get('loss', 0)} / {k.get('duplicate', 0)} / "
                     f"{k.get('queue_full', 0)}"))
    if verdict.get("mode"):
        rows.append(("mode", verdict["mode"]))
    for key, value in (extra or {}).items():
        rows.append((key, value))
    lines += [f"| {k} | {v} |" for k, v in rows]
    if verdict.get("causal_examples"):
        lines += ["", "Out of causal order (first few): " + "; ".join(verdict["causal_examples"])]
    if verdict["missing_examples"]:
        lines += ["", "Missing (first few): " + ", ".join(verdict["missing_examples"])]
    return "\n".join(lines) + "\n"
