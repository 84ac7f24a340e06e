"""Run the benchmarks: ``python -m benchmarks [NAME ...] [--quick] [--repeat N]``.

Prints a table (median, min, max over repeats, next to the target) and writes
the full results with machine details to JSON (default
``benchmarks/results/latest.json``).  NAME filters benchmarks by substring.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import pathlib
import sys
import time

from benchmarks.common import Benchmark, Summary, calibrate, machine_info

HERE = pathlib.Path(__file__).resolve().parent


def discover(quick: bool) -> list[Benchmark]:
    found: list[Benchmark] = []
    for path in sorted(HERE.glob("bench_*.py")):
        module = importlib.import_module(f"benchmarks.{path.stem}")
        found.extend(module.benchmarks(quick))
    return found


def format_value(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def print_table(summaries: list[Summary]) -> None:
    rows = [("benchmark", "metric", "median", "min", "max", "unit", "target")]
    for s in summaries:
        rows.append(
            (
                s.benchmark,
                s.metric,
                format_value(s.median),
                format_value(min(s.values)),
                format_value(max(s.values)),
                s.unit,
                s.target,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help="run benchmarks whose name contains one of these")
    parser.add_argument("--quick", action="store_true", help="tiny smoke version of each")
    parser.add_argument("--repeat", type=int, default=None, help="repeats (default 3, quick 1)")
    parser.add_argument(
        "--out", type=pathlib.Path, default=HERE / "results" / "latest.json", help="JSON output"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)

    selected = [
        b for b in discover(args.quick) if not args.names or any(n in b.name for n in args.names)
    ]
    if args.list:
        for b in selected:
            print(f"{b.name}: {b.description}")
        return 0
    if not selected:
        print("no benchmark matches", file=sys.stderr)
        return 2

    calibration_before = calibrate()
    summaries: list[Summary] = []
    records = []
    for bench in selected:
        print(f"running {bench.name} x{repeat} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        runs = [bench.run() for _ in range(repeat)]
        elapsed = time.perf_counter() - started
        bench_summaries = [
            Summary(bench.name, metric, unit, [run[metric] for run in runs], bench.targets.get(metric, ""))
            for metric, unit in bench.metrics.items()
        ]
        summaries.extend(bench_summaries)
        records.append(
            {
                "name": bench.name,
                "description": bench.description,
                "params": bench.params,
                "repeats": repeat,
                "seconds": elapsed,
                "results": [s.as_dict() for s in bench_summaries],
            }
        )
    print_table(summaries)
    calibration = {"before_ms": calibration_before, "after_ms": calibrate()}
    print(
        f"\ninterpreter speed (fixed workload, lower is faster): "
        f"{calibration['before_ms']} ms before, {calibration['after_ms']} ms after"
    )
    document = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine_info(),
        "calibration": calibration,
        "benchmarks": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
