"""`mvds demo`: a live four-node network in the research sketch's topology.

A and B are bursty mobile devices (radio up 2 s, down 2 s, one second out of
phase, 20% loss, batch mode); C is an always-on desktop in interactive mode,
D one in batch mode.  Links: A-B, A-C, B-D, C-D; every link shares the group
"demo" both ways, so messages route around offline devices.  Each node
appends messages; a live table shows who holds what; at the end a summary of
delivery times.  Ctrl-C stops everything and leaves no process behind.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mvds.cli.errors import CliError
from mvds.daemon.config import PeerConfig, load_config, save_config
from mvds.daemon.control_client import ControlError
from mvds.daemon.setup import init_node_dir

GROUP = "demo"
LINKS = [("A", "B"), ("A", "C"), ("B", "D"), ("C", "D")]
ROLES = {
    "A": {"role": "mobile", "mode": "batch", "schedule": "up 2s, down 2s"},
    "B": {"role": "mobile", "mode": "batch", "schedule": "down 1s, up 2s, down 1s"},
    "C": {"role": "desktop", "mode": "interactive", "schedule": ""},
    "D": {"role": "desktop", "mode": "batch", "schedule": ""},
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run a live local four-node network",
        description=__doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else None,
    )
    parser.add_argument("--messages", type=int, default=5, metavar="N",
                        help="messages each node appends (default 5)")
    parser.add_argument("--interval", type=float, default=1.0, metavar="S",
                        help="seconds between a node's appends (default 1)")
    parser.add_argument("--loss", type=float, default=0.2, metavar="P",
                        help="loss on the mobile devices A and B (default 0.2)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S",
                        help="give up waiting for full delivery after this long (default 60)")
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


def run(args: argparse.Namespace) -> int:
    if args.messages < 0 or args.interval < 0 or not 0 <= args.loss < 1:
        raise CliError("--messages and --interval must not be negative; --loss is in [0, 1)")
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
    try:
        setup(nodes, args)
        start(nodes)
        import trio  # not at the top: the other commands start faster without it

        try:
            trio.run(live, nodes, args)
        except KeyboardInterrupt:
            print("\ninterrupted: stopping the nodes", file=sys.stderr)
            return 130
        except ControlError as exc:
            raise CliError(f"lost contact with a node: {exc}") from None
    finally:
        stop(nodes)
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"nodes kept in {base}", file=sys.stderr)
    return 0


def setup(nodes: dict[str, DemoNode], args: argparse.Namespace) -> None:
    ids = {}
    for name, node in nodes.items():
        _, identity = init_node_dir(node.path)
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


def start(nodes: dict[str, DemoNode]) -> None:
    for node in nodes.values():
        node.log = open(node.path / "daemon.log", "ab")
        node.process = subprocess.Popen(
            [sys.executable, "-m", "mvds", "run", str(node.path)],
            stdout=node.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 15
    for node in nodes.values():
        while not (node.path / "mvds.sock").exists():
            if node.process.poll() is not None:
                raise CliError(f"node {node.name} failed to start: {last_log_line(node)}")
            if time.monotonic() > deadline:
                raise CliError(f"node {node.name} did not start within 15 s")
            time.sleep(0.05)


def last_log_line(node: DemoNode) -> str:
    try:
        lines = (node.path / "daemon.log").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no output"
    except OSError:
        return "no log"


def stop(nodes: dict[str, DemoNode]) -> None:
    """SIGTERM everyone, then SIGKILL whoever does not exit in 5 s."""
    running = [n for n in nodes.values() if n.process is not None and n.process.poll() is None]
    for node in running:
        node.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    for node in running:
        try:
            node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()
    for node in nodes.values():
        if node.log is not None:
            node.log.close()


async def live(nodes: dict[str, DemoNode], args: argparse.Namespace) -> None:
    import trio

    from mvds.daemon.async_client import AsyncControlClient

    appended: dict[str, tuple[str, float]] = {}
    started = time.monotonic()
    done_appending = trio.Event()

    async def watch(node: DemoNode) -> None:
        async with await AsyncControlClient.connect(node.path / "mvds.sock") as client:
            async for event in client.subscribe(0, follow=True):
                if event.get("event") == "message":
                    node.arrivals.setdefault(event["message"]["id"], time.monotonic())

    async def poll(node: DemoNode) -> None:
        async with await AsyncControlClient.connect(node.path / "mvds.sock") as client:
            while True:
                node.status = (await client.request("status"))["status"]
                await trio.sleep(0.25)

    async def append_all() -> None:
        clients = {
            name: await AsyncControlClient.connect(node.path / "mvds.sock")
            for name, node in nodes.items()
        }
        try:
            for index in range(args.messages):
                for name in nodes:
                    reply = await clients[name].request(
                        "append", group=GROUP, text=f"hello #{index + 1} from {name}"
                    )
                    appended[reply["message_id"]] = (name, time.monotonic())
                    await trio.sleep(args.interval / len(nodes))
        finally:
            for client in clients.values():
                await client.aclose()
        done_appending.set()

    def delivered_everywhere() -> bool:
        return done_appending.is_set() and all(
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
                    render(nodes, appended, now - started, clear=tty)
                    last_print = now
            if delivered_everywhere():
                break
            if now - started > args.timeout:
                print(f"timeout: not every message was delivered within {args.timeout:g} s")
                break
            await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    if not args.no_live:
        render(nodes, appended, time.monotonic() - started, clear=sys.stdout.isatty())
    summary(nodes, appended)


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

