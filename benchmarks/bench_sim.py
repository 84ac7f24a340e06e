"""The simulator at scale: 1,000 nodes and 100,000 messages.

What "1,000 nodes and 100,000 messages" means here (the reference
simulation's shape, cut into groups so the work is finite): 1,000 nodes in
333 groups of 3 (the leftover node joins the last group), each node sharing
its group one-way with 2 random members (so, with groups of 3, with both
others), every node appending a message every 5 ticks, 100 messages each:
100,000 appends and 200,000 deliveries, no loss, always online, batch mode,
exponential backoff, exposure tracking on.  A broadcast of every message to
all 1,000 nodes would be 10^8 deliveries, which no Python simulator does in
a minute.

Two variants: the full wire path (every datagram encoded and decoded), and
encode-only (bytes counted exactly, payload objects handed over).  A third
benchmark keeps the reference simulation's single group: 1,000 nodes, each
sharing one-way with 2 random others, 100 of them appending one message
each, every message going to every node the sharing graph reaches (about
80,000 deliveries), full wire path.  Reported:
wall and CPU seconds, simulator events (datagram arrivals, engine wake-ups,
appends and availability switches) per wall and per CPU second, appended
messages and deliveries per wall second, and the machine's 1-minute load
average when the run ended.  The simulator is single-threaded, so on an
otherwise idle machine wall time is about CPU time; on a shared machine
wall time also counts the waits for a core, and CPU time is the
simulator's own cost.
"""

from __future__ import annotations

import os
import time

from benchmarks.common import Benchmark
from mvds.sim.runner import run_scenario


def scale_params(
    nodes: int, messages: int, decode: bool, group_size: int = 3
) -> dict[str, object]:
    """Every node appends ``messages // nodes`` messages, one every 5 ticks,
    in groups of ``group_size`` (0: one group; then the first ``messages``
    nodes append one each)."""
    per_node = max(1, messages // nodes)
    return {
        "nodes": nodes,
        "group_size": group_size,
        "sharing": 2,
        "communicating": nodes if group_size else min(nodes, messages),
        "interactive": 0,
        "offline": 0.0,
        "interval": 5.0,
        "chat": 5.0 * per_node,
        "drain": 50.0,
        "messages": messages,
        "policy": "exponential",
        "latency": 0.01,
        "decode": decode,
    }


def run_scale(nodes: int, messages: int, decode: bool, group_size: int = 3) -> dict[str, float]:
    params = scale_params(nodes, messages, decode, group_size)
    started, cpu_started = time.perf_counter(), time.process_time()
    outcome = run_scenario("reference", params, seed=0)
    result = outcome.result
    summary = result.summary()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    if summary["messages"] != messages or summary["delivery_ratio"] != 1.0:
        raise RuntimeError(f"scale run did not deliver everything: {summary['delivered']} deliveries")
    return {
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "events": float(result.events),
        "events_per_s": result.events / elapsed,
        "events_per_cpu_s": result.events / cpu,
        "messages_per_s": messages / elapsed,
        "deliveries_per_s": summary["delivered"] / elapsed,
        "deliveries": float(summary["delivered"]),
        "load_1min": os.getloadavg()[0],
    }


def benchmarks(quick: bool) -> list[Benchmark]:
    nodes, messages = (100, 2_000) if quick else (1_000, 100_000)
    out = []
    for decode in (True, False):
        label = "wire" if decode else "encode-only"
        out.append(
            Benchmark(
                name=f"sim.scale.{label}",
                description=f"mvds sim: {nodes:,} nodes, {messages:,} messages in groups of 3 "
                f"({'encode + decode every datagram' if decode else 'encode only'})",
                run=lambda decode=decode: run_scale(nodes, messages, decode),
                metrics={
                    "seconds": "s",
                    "cpu_seconds": "s",
                    "events": "events",
                    "events_per_s": "events/s",
                    "events_per_cpu_s": "events/CPU s",
                    "messages_per_s": "msg/s",
                    "deliveries_per_s": "deliveries/s",
                    "load_1min": "load",
                },
                targets={
                    "seconds": "< 60 (1,000 nodes, 100,000 messages)",
                    "cpu_seconds": "< 60 (wall time on an idle machine)",
                    "load_1min": "(other work on the machine)",
                },
                params={"nodes": nodes, "messages": messages, **scale_params(nodes, messages, decode)},
            )
        )
    broadcast = 10 if quick else 100
    out.append(
        Benchmark(
            name="sim.scale.one-group",
            description=f"mvds sim: {nodes:,} nodes in one group, each sharing with 2, "
            f"{broadcast} messages to everyone reachable (encode + decode every datagram)",
            run=lambda: run_scale(nodes, broadcast, True, group_size=0),
            metrics={
                "seconds": "s",
                "cpu_seconds": "s",
                "events": "events",
                "events_per_cpu_s": "events/CPU s",
                "deliveries_per_s": "deliveries/s",
                "deliveries": "deliveries",
                "load_1min": "load",
            },
            targets={"load_1min": "(other work on the machine)"},
            params={"nodes": nodes, "messages": broadcast, **scale_params(nodes, broadcast, True, 0)},
        )
    )
    return out
