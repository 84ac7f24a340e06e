"""`mvds demo`: a live four-node network in the research sketch's topology.

A and B are bursty mobile devices (radio up 2 s, down 2 s, one second out of
phase, 20% loss, batch mode); C is an always-on desktop in interactive mode,
D one in batch mode.  Links: A-B, A-C, B-D, C-D; every link shares the group
"demo" both ways, so messages route around offline devices.  Each node
appends messages; a live table shows who holds what; at the end a summary of
delivery times.  Ctrl-C stops everything and leaves no process behind.

Exit status: 0 once every message reached every node; 1 if --timeout passed
first or a node failed (the summary still shows what was delivered);
128 + N when stopped by signal N (130 for Ctrl-C, 143 for SIGTERM, 129 for
SIGHUP), after the summary of what was delivered so far.

Leaving nothing behind: SIGINT, SIGTERM and SIGHUP all stop the four
daemons (SIGTERM, then SIGKILL after 5 s) before the demo exits.  The
daemons run in process groups of their own, so a terminal's Ctrl-C reaches
only the demo, which then stops them in order; and on Linux the kernel
sends each of them SIGTERM if the demo itself dies without cleaning up
(SIGKILL), so even then no daemon outlives it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mvds.cli.errors import CliError
from mvds.daemon.config import PeerConfig, load_config, save_config
from mvds.daemon.control_client import ControlError
from mvds.daemon.setup import SetupError, init_node_dir
from mvds.excgroups import leaves

GROUP = "demo"
LINKS = [("A", "B"), ("A", "C"), ("B", "D"), ("C", "D")]
ROLES = {
    "A": {"role": "mobile", "mode": "batch", "schedule": "up 2s, down 2s"},
    "B": {"role": "mobile", "mode": "batch", "schedule": "down 1s, up 2s, down 1s"},
    "C": {"role": "desktop", "mode": "interactive", "schedule": ""},
    "D": {"role": "desktop", "mode": "batch", "schedule": ""},
}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that stop the demo in order: daemons stopped, summary printed."""
START_TIMEOUT = 30.0
"""Seconds the four daemons get to answer on their control sockets."""
STOP_GRACE = 5.0
"""Seconds a daemon gets to exit after SIGTERM before it is SIGKILLed."""
PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal the kernel sends a process when its parent dies."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run a live local four-node network",
        description=__doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else None,
        epilog=" ".join(__doc__.split("\n\n")[2].split()) if __doc__ else None,
    )
    parser.add_argument("--messages", type=int, default=5, metavar="N",
                        help="messages each node appends (default 5)")
    parser.add_argument("--interval", type=float, default=1.0, metavar="S",
                        help="seconds between a node's appends (default 1)")
    parser.add_argument("--loss", type=float, default=0.2, metavar="P",
                        help="loss on the mobile devices A and B (default 0.2)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S",
                        help="give up waiting for full delivery after this long and exit 1 "
                        "(default 60)")
    parser.add_argument("--dir", metavar="DIR",
                        help="keep the nodes in DIR (default: a temporary folder, removed after)")
    parser.add_argument("--no-live", action="store_true", help="no live table, just the summary")
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulated loss")
    parser.set_defaults(func=run)


@dataclass
class DemoNode:
    name: str
    path: Path
    process: subprocess.Popen | None = None
    log: Any = None
    arrivals: dict[str, float] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)


@dataclass
class Progress:
    """What the demo did so far: the summary is printed from this however it ends."""

    appended: dict[str, tuple[str, float]] = field(default_factory=dict)
    """message id (hex) -> (author, monotonic time of the append)"""
    started: float = field(default_factory=time.monotonic)
    done_appending: bool = False
    delivered: bool = False
    timed_out: bool = False
    signal: int | None = None
    lost: dict[str, str] = field(default_factory=dict)
    """node name -> why the demo lost contact with it"""


def run(args: argparse.Namespace) -> int:
    if args.messages < 0 or args.interval < 0 or not 0 <= args.loss < 1 or not args.timeout > 0:
        raise CliError(
            "--messages and --interval must not be negative, --timeout must be positive "
            "and --loss is in [0, 1)"
        )
    if args.dir:
        base = Path(args.dir).expanduser().absolute()
        if base.exists() and any(base.iterdir()):
            raise CliError(f"{base} is not empty")
        base.mkdir(parents=True, exist_ok=True)
        keep = True
    else:
        base = Path(tempfile.mkdtemp(prefix="mvds-demo-"))
        keep = False
    nodes = {name: DemoNode(name, base / name) for name in ROLES}
    progress = Progress()
    failed = False
    import trio  # not at the top: the other commands start faster without it

    try:
        try:
            trio.run(main, nodes, args, progress)
        except KeyboardInterrupt:
            # Ctrl-C in the instant before the signal receiver was installed
            # or after it was removed: no daemon runs at those moments.
            progress.signal = signal.SIGINT
        except BaseExceptionGroup as group:
            (inner, *more) = leaves(group)
            if not more and isinstance(inner, KeyboardInterrupt):
                progress.signal = signal.SIGINT
            else:
                failed = True
                if not more and isinstance(inner, CliError):
                    raise inner from None
                raise
        except BaseException:
            failed = True
            raise
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
        elif failed:
            # A demo that failed (a node did not start, a bug) leaves nothing
            # behind in --dir: a rerun with the same --dir must work.  One
            # stopped by a signal or a timeout reports and keeps its nodes.
            for node in nodes.values():
                shutil.rmtree(node.path, ignore_errors=True)
    return report(nodes, args, progress, base if keep else None)


def report(
    nodes: dict[str, DemoNode], args: argparse.Namespace, progress: Progress, kept: Path | None
) -> int:
    """Final table, delivery summary, then one line on stderr unless all went well."""
    if not args.no_live and any(node.status for node in nodes.values()):
        render(nodes, progress.appended, time.monotonic() - progress.started, clear=sys.stdout.isatty())
    summary(nodes, progress.appended)
    if kept is not None:
        print(f"nodes kept in {kept}")
    sys.stdout.flush()
    if progress.signal is not None:
        name = signal.Signals(progress.signal).name
        raise CliError(
            f"demo interrupted by {name}: nodes stopped; the summary shows what was delivered so far",
            exit_code=128 + progress.signal,
        )
    if progress.lost:
        name, why = sorted(progress.lost.items())[0]
        raise CliError(f"lost contact with node {name}: {why}")
    if progress.timed_out:
        raise CliError(f"timeout: not every message was delivered within {args.timeout:g} s")
    return 0


async def main(nodes: dict[str, DemoNode], args: argparse.Namespace, progress: Progress) -> None:
    """Set up, start, watch and stop the nodes; a stop signal cancels it all
    except the stopping, which always runs to the end."""
    import trio

    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:

            async def on_signal() -> None:
                async for signum in signals:
                    progress.signal = signum
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(on_signal)
            try:
                setup(nodes, args)
                await start(nodes)
                await live(nodes, args, progress)
            finally:
                with trio.CancelScope(shield=True):
                    await stop(nodes)
            nursery.cancel_scope.cancel()


def setup(nodes: dict[str, DemoNode], args: argparse.Namespace) -> None:
    ids = {}
    for name, node in nodes.items():
        try:
            _, identity = init_node_dir(node.path)
        except SetupError as exc:
            raise CliError(str(exc)) from None
        ids[name] = identity.peer_id_hex
    for name, node in nodes.items():
        config = load_config(node.path / "mvds.toml")
        role = ROLES[name]
        config.mode = role["mode"]
        config.schedule = role["schedule"]
        config.loss = args.loss if role["role"] == "mobile" else 0.0
        config.seed = args.seed + ord(name)
        config.log_format = "json"
        config.groups = [GROUP]
        for a, b in LINKS:
            if name in (a, b):
                other = b if name == a else a
                other_config = load_config(nodes[other].path / "mvds.toml")
                config.peers.append(PeerConfig(other, ids[other], other_config.listen, [GROUP]))
        save_config(node.path / "mvds.toml", config)


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel SIGTERM the child when the demo
    dies, however it dies (Linux's PR_SET_PDEATHSIG); None elsewhere.

    SIGTERM rather than SIGKILL: a daemon commits and exits cleanly on it.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the demo died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


async def start(nodes: dict[str, DemoNode]) -> None:
    """Start the daemons, each in its own process group, and wait until each
    answers a ping on its control socket."""
    import trio

    from mvds.daemon.async_client import AsyncControlClient

    preexec = die_with_parent()
    for node in nodes.values():
        node.log = open(node.path / "daemon.log", "ab")
        node.process = subprocess.Popen(
            # -P: the current directory does not go first on sys.path, so a
            # folder named "mvds" there (the parent of a clone, a node made
            # with `mvds init mvds`) cannot shadow the installed package.
            [sys.executable, "-P", "-m", "mvds", "run", str(node.path)],
            stdout=node.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            process_group=0, preexec_fn=preexec,
        )
    deadline = trio.current_time() + START_TIMEOUT
    for node in nodes.values():
        assert node.process is not None
        while True:
            if node.process.poll() is not None:
                raise CliError(f"node {node.name} failed to start: {last_log_line(node)}")
            try:
                async with await AsyncControlClient.connect(node.path / "mvds.sock") as client:
                    await client.request("ping")
                break
            except (ControlError, OSError, trio.BrokenResourceError):
                pass
            if trio.current_time() > deadline:
                raise CliError(f"node {node.name} did not start within {START_TIMEOUT:g} s")
            await trio.sleep(0.05)


def last_log_line(node: DemoNode) -> str:
    try:
        lines = (node.path / "daemon.log").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no output"
    except OSError:
        return "no log"


async def stop(nodes: dict[str, DemoNode]) -> None:
    """SIGTERM everyone, then SIGKILL whoever does not exit within STOP_GRACE."""
    import trio

    running = [n.process for n in nodes.values() if n.process is not None and n.process.poll() is None]
    for process in running:
        try:
            process.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = trio.current_time() + STOP_GRACE
    while any(p.poll() is None for p in running) and trio.current_time() < deadline:
        await trio.sleep(0.05)
    for process in running:
        if process.poll() is None:
            process.kill()
            process.wait()
    for node in nodes.values():
        if node.log is not None:
            node.log.close()
            node.log = None


async def live(nodes: dict[str, DemoNode], args: argparse.Namespace, progress: Progress) -> None:
    """Append, watch and show until every message is everywhere, the timeout
    passes, or a node is lost."""
    import trio

    from mvds.daemon.async_client import AsyncControlClient

    lost_errors = (ControlError, OSError, ValueError, trio.BrokenResourceError, trio.ClosedResourceError)
    appended = progress.appended
    progress.started = time.monotonic()

    async def watch(node: DemoNode) -> None:
        try:
            async with await AsyncControlClient.connect(node.path / "mvds.sock") as client:
                async for event in client.subscribe(0, follow=True):
                    if event.get("event") == "message":
                        node.arrivals.setdefault(event["message"]["id"], time.monotonic())
        except lost_errors as exc:
            progress.lost.setdefault(node.name, str(exc) or type(exc).__name__)

    async def poll(node: DemoNode) -> None:
        try:
            async with await AsyncControlClient.connect(node.path / "mvds.sock") as client:
                while True:
                    node.status = (await client.request("status"))["status"]
                    await trio.sleep(0.25)
        except lost_errors as exc:
            progress.lost.setdefault(node.name, str(exc) or type(exc).__name__)

    async def append_all() -> None:
        name = ""
        try:
            for index in range(args.messages):
                for name, node in nodes.items():
                    async with await AsyncControlClient.connect(node.path / "mvds.sock") as client:
                        reply = await client.request(
                            "append", group=GROUP, text=f"hello #{index + 1} from {name}"
                        )
                    appended[reply["message_id"]] = (name, time.monotonic())
                    await trio.sleep(args.interval / len(nodes))
        except lost_errors as exc:
            progress.lost.setdefault(name, str(exc) or type(exc).__name__)
            return
        progress.done_appending = True

    def delivered_everywhere() -> bool:
        return progress.done_appending and all(
            mid in node.arrivals for mid, (author, _) in appended.items()
            for node in nodes.values() if node.name != author
        )

    async with trio.open_nursery() as nursery:
        for node in nodes.values():
            nursery.start_soon(watch, node)
            nursery.start_soon(poll, node)
        nursery.start_soon(append_all)
        last_print = 0.0
        while True:
            now = time.monotonic()
            if not args.no_live:
                tty = sys.stdout.isatty()
                if tty or now - last_print >= 2.0:
                    render(nodes, appended, now - progress.started, clear=tty)
                    last_print = now
            if delivered_everywhere():
                progress.delivered = True
                break
            if progress.lost:
                break
            if now - progress.started > args.timeout:
                progress.timed_out = True
                break
            await trio.sleep(0.25)
        nursery.cancel_scope.cancel()


def render(nodes: dict[str, DemoNode], appended: dict[str, tuple[str, float]], elapsed: float, *, clear: bool) -> None:
    rows = [("node", "role", "mode", "radio", "holds", "pending", "retrans", "sent", "received")]
    total = len(appended)
    for node in nodes.values():
        status = node.status
        if not status:
            continue
        own = sum(1 for author, _ in appended.values() if author == node.name)
        pending = sum(sum(p["pending"].values()) for p in status["peers"])
        retrans = status.get("engine", {}).get("retransmissions", 0)
        rows.append((
            node.name,
            ROLES[node.name]["role"],
            status["mode"],
            "up" if status.get("online") else "DOWN",
            f"{own + len(node.arrivals)}/{total}",
            str(pending),
            str(retrans),
            f"{status['bytes_out'] / 1024:.1f} KiB",
            f"{status['bytes_in'] / 1024:.1f} KiB",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"mvds demo: {elapsed:5.1f} s   links A-B A-C B-D C-D   group {GROUP!r}", ""]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    text = "\n".join(lines) + "\n"
    if clear:
        sys.stdout.write("\x1b[H\x1b[2J" + text)
    else:
        sys.stdout.write(text + "\n")
    sys.stdout.flush()


def summary(nodes: dict[str, DemoNode], appended: dict[str, tuple[str, float]]) -> None:
    print("\nDelivery times (append on the author -> handed to the application):")
    all_delays = []
    for node in nodes.values():
        delays = [
            node.arrivals[mid] - t0 for mid, (author, t0) in appended.items()
            if author != node.name and mid in node.arrivals
        ]
        expected = sum(1 for author, _ in appended.values() if author != node.name)
        all_delays += delays
        if delays:
            print(
                f"  to {node.name} ({ROLES[node.name]['role']:7}): {len(delays)}/{expected} messages, "
                f"median {statistics.median(delays):.2f} s, max {max(delays):.2f} s"
            )
        else:
            print(f"  to {node.name}: 0/{expected} messages")
    expected_total = sum(len(nodes) - 1 for _ in appended)
    print(f"  overall: {len(all_delays)}/{expected_total} deliveries", end="")
    if all_delays:
        print(f", median {statistics.median(all_delays):.2f} s, max {max(all_delays):.2f} s")
    else:
        print()

