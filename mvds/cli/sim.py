"""``mvds sim``: run a deterministic simulation and write its report.

    mvds sim --list                       scenarios and their questions
    mvds sim SCENARIO --list              the scenario's parameters
    mvds sim SCENARIO [NAME=VALUE ...] [--seed N] [--out DIR] [--config FILE.toml]
    mvds sim all --out docs/figures       every scenario (regenerates the docs' figures)

A TOML config holds ``scenario = "..."``, ``seed = N`` and a ``[params]``
table; parameters on the command line override it.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
import tomllib
from typing import Any

from mvds.cli.errors import CliError

DEFAULT_OUT = pathlib.Path("sim-results")


def build_parser() -> argparse.ArgumentParser:
    """The ``mvds sim`` options; parsed intermixed so that NAME=VALUE
    parameters may come before or after the options."""
    from mvds.cli import Parser  # one-line usage errors, as every command

    parser = Parser(
        prog="mvds sim",
        description="Run a scenario on the real engine over a virtual network; "
        "write report.json, summary.md and figures.",
    )
    parser.add_argument("scenario", nargs="?", help="scenario name, or 'all' (see --list)")
    parser.add_argument("params", nargs="*", metavar="NAME=VALUE", help="scenario parameters")
    parser.add_argument("--out", type=pathlib.Path, help=f"output directory (default {DEFAULT_OUT}/SCENARIO)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument("--config", type=pathlib.Path, help="TOML file: scenario, seed, [params]")
    parser.add_argument("--list", action="store_true", help="list scenarios, or a scenario's parameters")
    parser.add_argument("--no-plots", action="store_true", help="write JSON and Markdown only")
    parser.add_argument("--progress", action="store_true", help="progress bar even if stderr is not a terminal")
    parser.add_argument("--seeds", type=int, metavar="N",
                        help="run seeds SEED..SEED+N-1 and report each measure's mean and 95%% CI "
                        "(per sweep point); writes seeds.json and seeds.md")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="with --seeds: spread the seeds over N local processes")
    parser.add_argument("--dask", metavar="SCHEDULER_ADDRESS",
                        help="with --seeds: run the seeds on an existing Dask cluster "
                        "(e.g. tcp://10.0.0.5:8786; pip install 'mvds[dask]'; its workers need mvds)")
    return parser


def register(subparsers: argparse._SubParsersAction) -> None:
    inner = build_parser()
    parser = subparsers.add_parser(
        "sim",
        help="deterministic simulation + report",
        description=inner.description,
        usage=inner.format_usage().removeprefix("usage: ").strip(),
        add_help=False,
        # Everything after "sim" (options included) is handed to the inner
        # parser, which can parse options and NAME=VALUE words intermixed.
        prefix_chars="\x00",
    )
    parser.add_argument("argv", nargs="*", help=argparse.SUPPRESS)
    parser.set_defaults(func=lambda args: run(inner.parse_intermixed_args(args.argv)))


def _load_config(path: pathlib.Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            config = tomllib.load(handle)
    except FileNotFoundError:
        raise CliError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise CliError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(config) - {"scenario", "seed", "params"})
    if unknown:
        raise CliError(f"config file {path}: unknown key {unknown[0]!r} (use scenario, seed, [params])")
    if "params" in config and not isinstance(config["params"], dict):
        raise CliError(f"config file {path}: params must be a table ([params])")
    if "seed" in config and (not isinstance(config["seed"], int) or isinstance(config["seed"], bool)):
        raise CliError(f"config file {path}: seed must be an integer")
    if "scenario" in config and not isinstance(config["scenario"], str):
        raise CliError(f"config file {path}: scenario must be a string")
    return config


def _list(scenario: str | None) -> int:
    from mvds.sim.params import Param
    from mvds.sim.scenarios import SCENARIOS, get_scenario

    if scenario is None:
        width = max(len(name) for name in SCENARIOS)
        for name, item in SCENARIOS.items():
            print(f"{name.ljust(width)}  {item.question}")
        print(f"{'all'.ljust(width)}  every scenario above with its defaults (and the variants "
              "docs/SIMULATION.md compares), into OUT/NAME/")
        return 0
    try:
        item = get_scenario(scenario)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(f"{item.name}: {item.question}\n")
    params: list[Param] = item.params
    width = max(len(p.name) for p in params)
    for p in params:
        default = ",".join(str(v) for v in p.default) if isinstance(p.default, list) else p.default
        choices = f" ({'|'.join(p.choices)})" if p.choices else ""
        print(f"  {p.name.ljust(width)}  {p.help}{choices} [default: {default}]")
    return 0


def _run_one(
    name: str, given: dict[str, Any], seed: int, out: pathlib.Path, args: argparse.Namespace,
    label: str | None = None,
) -> None:
    """Run one scenario and print its headline; ``label`` names the run in
    output (``all`` runs some scenarios twice, with different parameters)."""
    label = label or name
    from mvds.sim.output import write_outcome
    from mvds.sim.progress import ProgressBar
    from mvds.sim.runner import RunOutcome, run_scenario

    bar = ProgressBar(f"sim {label}") if (args.progress or sys.stderr.isatty()) else None
    started = time.perf_counter()
    try:
        outcome = run_scenario(name, given, seed, bar)
    except ValueError as exc:
        raise CliError(f"{name}: {exc}") from None
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - started
    try:
        written = write_outcome(outcome, out, want_plots=not args.no_plots)
    except OSError as exc:
        raise CliError(f"cannot write results to {out}: {exc.strerror or exc}") from None
    if isinstance(outcome, RunOutcome):
        results = [outcome.result]
        s = outcome.result.summary()
        ratio = "-" if s["delivery_ratio"] is None else f"{s['delivery_ratio']:.1%}"
        conv = "never" if s["convergence_time"] is None else f"tick {s['convergence_time']:g}"
        print(
            f"{label}: {s['delivered']:,}/{s['expected_deliveries']:,} deliveries ({ratio}), "
            f"converged {conv}, {s['wire']['datagrams']:,} datagrams, {s['wire']['bytes']:,} bytes"
        )
    else:
        results = [result for _, result in outcome.points]
        print(f"{label}: {len(results)} runs")
    events = sum(result.events for result in results)
    rate = events / elapsed if elapsed > 0 else 0.0
    print(f"  {events:,} events in {elapsed:.2f} s ({rate:,.0f} events/s)")
    for path in written.files:
        print(f"  wrote {path}")
    for note in written.notes:
        print(f"  {note}")


def _describe(params: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in params.items())


def run(args: argparse.Namespace) -> int:
    from mvds.sim.params import parse_assignments
    from mvds.sim.scenarios import ALL_RUNS, SCENARIOS

    _check_dask(args)
    config = _load_config(args.config) if args.config else {}
    if args.scenario == "scenario":
        return _run_file(args)
    if args.scenario is not None and "=" in args.scenario:
        # Parameters without a scenario name (it comes from --config).
        args.params.insert(0, args.scenario)
        args.scenario = None
    scenario = args.scenario or config.get("scenario")
    if args.list:
        return _list(scenario)
    if scenario is None:
        raise CliError("name a scenario (mvds sim --list shows them) or give --config FILE.toml")
    try:
        given = dict(config.get("params", {}))
        given.update(parse_assignments(args.params))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    seed = args.seed if args.seed is not None else config.get("seed", 0)
    if scenario == "all":
        if given:
            raise CliError("'all' runs every scenario with its defaults; parameters apply to one scenario")
        base = args.out or DEFAULT_OUT
        for directory, name, params in ALL_RUNS:
            label = name if directory == name else f"{directory} ({name}, {_describe(params)})"
            _run_one(name, params, seed, base / directory, args, label)
        return 0
    if scenario == "scenario":
        return _run_file(args)
    if scenario not in SCENARIOS:
        known = ", ".join(SCENARIOS)
        raise CliError(f"unknown scenario {scenario!r} (scenarios: {known}, all)")
    if args.seeds is not None:
        return _run_seeds(scenario, given, seed, args)
    _run_one(scenario, given, seed, args.out or DEFAULT_OUT / scenario, args)
    return 0


def _where(args: argparse.Namespace) -> str:
    return f"Dask at {args.dask}" if args.dask else f"{args.workers} workers"


def _check_dask(args: argparse.Namespace) -> None:
    if args.dask and args.seeds is None:
        raise CliError("--dask goes with --seeds N")
    if args.dask and args.workers != 1:
        raise CliError("--workers and --dask: pick one (the Dask cluster has its own workers)")


def _run_seeds(name: str, given: dict[str, Any], first: int, args: argparse.Namespace) -> int:
    """``mvds sim NAME --seeds N``: every point over N seeds, mean and 95% CI."""
    import json

    from mvds.sim.distribute import DistributeError
    from mvds.sim.seeds import aggregate, markdown, run_seeds

    if not 2 <= args.seeds <= 100_000:
        raise CliError("--seeds must be between 2 and 100000")
    if not 1 <= args.workers <= 256:
        raise CliError("--workers must be between 1 and 256")
    seeds = list(range(first, first + args.seeds))
    started = time.perf_counter()
    try:
        rows = aggregate(run_seeds(name, given, seeds, args.workers, args.dask))
    except ValueError as exc:
        raise CliError(f"{name}: {exc}") from None
    except DistributeError as exc:
        raise CliError(str(exc)) from None
    elapsed = time.perf_counter() - started
    out = args.out or DEFAULT_OUT / name
    text = markdown(name, seeds, rows)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "seeds.json").write_text(json.dumps({"scenario": name, "params": given, "seeds": seeds,
                                                    "points": rows}, indent=2) + "\n")
        (out / "seeds.md").write_text(text)
    except OSError as exc:
        raise CliError(f"cannot write results to {out}: {exc.strerror or exc}") from None
    sys.stdout.write(text)
    print(f"  {len(seeds)} seeds x {len(rows)} points in {elapsed:.2f} s ({_where(args)})")
    print(f"  wrote {out / 'seeds.json'}")
    print(f"  wrote {out / 'seeds.md'}")
    return 0


def _run_file(args: argparse.Namespace) -> int:
    """``mvds sim scenario FILE``: a testbed scenario file (docs/TESTBED.md) in the simulator."""
    import json

    from mvds.testbed.scenario import ScenarioError, load_scenario
    from mvds.sim.distribute import DistributeError
    from mvds.testbed.simulate import run_seeds
    from mvds.testbed.stats import summarize

    if len(args.params) != 1:
        raise CliError("mvds sim scenario FILE: name one scenario file (docs/TESTBED.md)")
    try:
        scenario = load_scenario(args.params[0])
    except ScenarioError as exc:
        raise CliError(str(exc)) from None
    if args.seeds is not None and not 1 <= args.seeds <= 100_000:
        raise CliError("--seeds must be between 1 and 100000")
    if not 1 <= args.workers <= 256:
        raise CliError("--workers must be between 1 and 256")
    first = args.seed if args.seed is not None else scenario.seed
    seeds = list(range(first, first + (args.seeds or 1)))
    started = time.perf_counter()
    try:
        runs = run_seeds(scenario, seeds, args.workers, args.dask)
    except DistributeError as exc:
        raise CliError(str(exc)) from None
    elapsed = time.perf_counter() - started
    for run in runs:
        run.pop("latencies_s", None)
    stats = summarize(runs)
    out = args.out or DEFAULT_OUT / scenario.name
    report = {"scenario": scenario.name, "seeds": seeds, "summary": stats, "runs": runs}
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        lines = [f"# Simulated: {scenario.name} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
                 f" from {first})", "", "| measure | mean | 95% CI +- |", "| --- | --- | --- |"]
        for key, value in stats.items():
            if isinstance(value, dict):
                lines.append(f"| {key} | {value['mean']} | {value['ci95'] if value['ci95'] is not None else '-'} |")
        lines.append(f"\n{stats['passed']} of {stats['runs']} runs delivered everything.")
        (out / "summary.md").write_text("\n".join(lines) + "\n")
    except OSError as exc:
        raise CliError(f"cannot write results to {out}: {exc.strerror or exc}") from None
    conv = stats["convergence_s"]
    ci = "" if conv["ci95"] is None else f" +- {conv['ci95']:g}"
    print(f"{scenario.name}: {stats['passed']}/{stats['runs']} runs delivered everything; "
          f"convergence {conv['mean']}{ci} s after the last append; "
          f"{stats['bytes_per_delivery']['mean']} bytes per delivery "
          f"({len(seeds)} seeds, {_where(args)}, {elapsed:.2f} s)")
    print(f"  wrote {out / 'report.json'}")
    print(f"  wrote {out / 'summary.md'}")
    return 0 if stats["passed"] == stats["runs"] else 1
