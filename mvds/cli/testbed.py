"""``mvds testbed``: scenarios with real daemons (docs/TESTBED.md).

    mvds testbed run SCENARIO [--out DIR] [--no-live] [--compose [--image IMAGE] | --netns]
                                                        run it, print the verdict, exit 0/1
    mvds testbed check SCENARIO                         validate a scenario file
    mvds testbed generate KIND --nodes N [...]          print a scenario for a topology
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from mvds.cli.errors import CliError


class Terminated(Exception):
    """SIGTERM ended the run (after the daemons were stopped)."""


async def _run_until_signal(scenario, out: Path, progress, compose: bool = False,
                            image: str | None = None, netns: bool = False):
    """The run, cancelled cleanly (daemons stopped) by SIGTERM; Ctrl-C is
    trio's KeyboardInterrupt, with the same clean-up."""
    import trio

    from mvds.testbed.runner import run_testbed

    from mvds.testbed.runner import TestbedError

    result = None
    try:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                async def run() -> None:
                    nonlocal result
                    result = await run_testbed(scenario, out, progress, compose=compose, image=image,
                                               netns=netns)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(run)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
    except BaseExceptionGroup as group:  # the nursery wraps the run's own error
        errors, rest = group.split(TestbedError)
        if errors is not None and rest is None:
            while isinstance(errors, BaseExceptionGroup):
                errors = errors.exceptions[0]
            raise errors from None
        raise
    if result is None:
        raise Terminated
    return result


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "testbed", help="run a scenario with real daemons and judge it",
        description="Scenarios (TOML, docs/TESTBED.md) run with real mvds daemons on loopback, "
        "per-link latency, loss and partitions, and a verdict.",
    )
    sub = parser.add_subparsers(dest="testbed_command", metavar="SUBCOMMAND", required=True)
    run = sub.add_parser("run", help="run a scenario; exit 0 if the verdict passes, 1 if not")
    run.add_argument("scenario", metavar="SCENARIO", help="a scenario file (TOML)")
    run.add_argument("--out", metavar="DIR", help="where the nodes and the report go "
                     "(default: testbed-results/NAME-TIME)")
    run.add_argument("--no-live", action="store_true", help="no progress line")
    run.add_argument("--calibrate", action="store_true",
                     help="also run the scenario in the simulator with the same seed and write "
                     "calibration.md / .json (/ .png) side by side")
    run.add_argument("--compose", action="store_true",
                     help="run every node in its own container of a generated docker compose project "
                     "(one network per link; docs/TESTBED.md)")
    run.add_argument("--netns", action="store_true",
                     help="run every node in its own Linux network namespace, links shaped by "
                     "nftables and tc in the kernel (root; docs/TESTBED.md)")
    run.add_argument("--image", metavar="IMAGE",
                     help="with --compose: use this prebuilt image instead of building one from the "
                     "checkout (default: build $MVDS_IMAGE or mvds-node:testbed on $MVDS_BASE_IMAGE)")
    run.set_defaults(func=run_command, _parser=run)
    check = sub.add_parser("check", help="validate a scenario file")
    check.add_argument("scenario", metavar="SCENARIO", help="a scenario file (TOML)")
    check.set_defaults(func=check_command, _parser=check)
    from mvds.testbed.generate import KINDS, Params

    gen = sub.add_parser("generate", help="print a scenario (TOML) for a topology")
    gen.add_argument("kind", choices=KINDS, help="the topology")
    defaults = Params()
    gen.add_argument("--nodes", type=int, default=defaults.nodes, help="how many nodes")
    gen.add_argument("--degree", type=int, default=defaults.degree, help="k of random k-regular")
    for name in ("latency", "jitter"):
        gen.add_argument(f"--{name}", type=float, default=0.0, metavar="S", help=f"{name} in seconds")
    for name in ("loss", "duplicate", "reorder"):
        gen.add_argument(f"--{name}", type=float, default=0.0, metavar="P",
                         help=f"{name} probability per datagram on every link (0 to 1)")
    gen.add_argument("--rate", type=float, default=0.0, metavar="BYTES_PER_S",
                     help="link rate limit in bytes a second (0: none)")
    gen.add_argument("--duration", type=float, default=defaults.duration, metavar="S",
                     help="how long the scenario runs, in seconds")
    gen.add_argument("--appends", type=float, default=defaults.appends, metavar="PER_S",
                     help="appends per node per second")
    gen.add_argument("--size", type=int, default=defaults.size, metavar="BYTES",
                     help="message body size")
    gen.add_argument("--start", type=float, default=defaults.start, metavar="S",
                     help="when the appends start, in seconds")
    gen.add_argument("--stop", type=float, default=defaults.stop, metavar="S",
                     help="when the appends stop, in seconds")
    gen.add_argument("--epoch-ms", type=int, default=defaults.epoch_ms,
                     help="the nodes' epoch in milliseconds")
    gen.add_argument("--seed", type=int, default=defaults.seed,
                     help="the seed written into the scenario")
    gen.add_argument("--mode", choices=["batch", "interactive"], default="batch",
                     help="the nodes' sync mode")
    gen.set_defaults(func=generate_command, _parser=gen)


def _load(path: str):
    from mvds.testbed.scenario import ScenarioError, load_scenario

    try:
        return load_scenario(path)
    except ScenarioError as exc:
        raise CliError(str(exc)) from None


def check_command(args: argparse.Namespace) -> int:
    s = _load(args.scenario)
    print(f"{args.scenario}: ok: {len(s.nodes)} nodes, {len(s.links)} links, "
          f"{len(s.groups)} groups, {len(s.faults)} faults, duration {s.duration:g} s")
    return 0


def generate_command(args: argparse.Namespace) -> int:
    from mvds.daemon.netem import LinkConditions
    from mvds.testbed.generate import Params, generate
    from mvds.testbed.scenario import ScenarioError, render_scenario

    link = LinkConditions(latency=args.latency, jitter=args.jitter, loss=args.loss,
                          duplicate=args.duplicate, reorder=args.reorder, rate=args.rate)
    params = Params(
        nodes=args.nodes, degree=args.degree, link=link, duration=args.duration, appends=args.appends, size=args.size, start=args.start,
        stop=args.stop, epoch_ms=args.epoch_ms, seed=args.seed, mode=args.mode,
    )
    try:
        sys.stdout.write(render_scenario(generate(args.kind, params)))
    except ScenarioError as exc:
        raise CliError(str(exc)) from None
    return 0


def run_command(args: argparse.Namespace) -> int:
    scenario = _load(args.scenario)
    import trio

    from mvds.testbed.runner import TestbedError

    out = Path(args.out) if args.out else Path("testbed-results") / (
        f"{scenario.name}-{time.strftime('%Y%m%dT%H%M%S')}")
    if args.image and not args.compose:
        raise CliError("--image goes with --compose")
    if args.compose and args.netns:
        raise CliError("--compose and --netns: pick one")
    live = not args.no_live
    tty = sys.stderr.isatty()

    def progress(line: str) -> None:
        if tty:
            sys.stderr.write("\r" + line[:160] + "\x1b[K")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    try:
        verdict = trio.run(_run_until_signal, scenario, out, progress if live else None,
                           args.compose, args.image, args.netns)
    except TestbedError as exc:
        raise CliError(str(exc)) from None
    except (Terminated, KeyboardInterrupt, BaseExceptionGroup) as exc:
        if isinstance(exc, BaseExceptionGroup) and exc.split(KeyboardInterrupt)[0] is None:
            raise
        sys.stderr.write("\nmvds testbed: interrupted; the daemons were stopped"
                         f"{' and the compose project taken down' if args.compose else ''}"
                         f"{' and the namespaces removed' if args.netns else ''}\n")
        return 143 if isinstance(exc, Terminated) else 130
    if live and tty:
        sys.stderr.write("\n")
    sys.stdout.write((out / "summary.md").read_text())
    print(f"\nreport: {out / 'report.json'}")
    if args.calibrate:
        calibrate(scenario, out)
    return 0 if verdict["passed"] else 1



def calibrate(scenario, out: Path) -> None:
    """The simulator's run of the same scenario and seed, next to the real one."""
    import json

    from mvds.testbed import calibrate as cal
    from mvds.testbed.simulate import simulate

    report = json.loads((out / "report.json").read_text())
    sim = simulate(scenario, scenario.seed)
    comparison = cal.compare(report["verdict"], report["latencies_s"], sim)
    (out / "calibration.json").write_text(json.dumps(
        {"scenario": scenario.name, "seed": scenario.seed, **comparison}, indent=2) + "\n")
    text = cal.markdown(scenario.name, scenario.seed, comparison)
    (out / "calibration.md").write_text(text)
    try:
        cal.plot(out / "calibration.png", scenario.name, report["latencies_s"], sim["latencies_s"])
    except ImportError:
        pass
    sys.stdout.write("\n" + text)
