"""`mvds run DIR`: the daemon.  Ctrl-C or SIGTERM stop it cleanly (exit 0).

Options override DIR/mvds.toml for this run only; the file is not changed.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import signal

from mvds.cli.common import add_dir_argument, load, node_dir
from mvds.cli.errors import CliError
from mvds.daemon.config import ConfigError
from mvds.daemon.logs import configure_logging, get_logger
from mvds.excgroups import leaves


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run the daemon",
        description="Run the node: sync its groups with its peers over UDP and serve the "
        "control API on DIR/mvds.sock. Options override DIR/mvds.toml for this run.",
    )
    add_dir_argument(parser)
    parser.add_argument("--listen", metavar="HOST:PORT", help="UDP address to listen on")
    parser.add_argument("--loss", type=float, metavar="P",
                        help="simulate loss: drop this fraction (0-1) of datagrams in and out")
    parser.add_argument("--seed", type=int, metavar="N", help="seed of the simulated loss")
    parser.add_argument("--schedule", metavar="SPEC",
                        help="simulate a bursty device, e.g. 'up 2s, down 6s'")
    parser.add_argument("--mode", choices=["batch", "interactive"],
                        help="batch: send each message at once; interactive: offer ids first and "
                        "send what the peer requests (saves bytes when peers often hold a message)")
    parser.add_argument("--delivery", choices=["causal", "eventual"],
                        help="causal: hand a message to readers only after its parents; "
                        "eventual: as soon as it arrives")
    parser.add_argument("--epoch-ms", type=int, metavar="N", help="epoch length in milliseconds")
    parser.add_argument("--log-format", choices=["console", "json"],
                        help="console (the default): for people; json: one object "
                        "a line, for machines")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        help="the least important log level written (default info)")
    parser.add_argument("--metrics", metavar="HOST:PORT",
                        help="serve Prometheus metrics over HTTP on this address")
    parser.set_defaults(func=run)


GC_THRESHOLDS = (50_000, 20, 20)
"""Cyclic garbage collector thresholds for the daemon process.

The default (700, 10, 10) runs a collection every 700 container
allocations; a busy node allocates a tuple or record per message and keeps
hundreds of thousands of long-lived objects (caches, the in-flight set), so
the collector spent about 15% of the sending daemon's CPU re-scanning them
(measured with the benchmark's sender workload: 51.8 -> 43.2 us/message).
The node creates almost no reference cycles (reference counting frees its
garbage), so collecting 70 times less often costs little memory."""

SOCKET_PATH_MAX = 104
"""Longest Unix socket path the control server accepts (macOS's sun_path;
Linux allows 108): checked before the node starts, so a too-deep DIR is one
error line instead of a node that logs its start and stop first."""

RUN_OPTIONS = (
    "listen", "loss", "seed", "schedule", "mode", "delivery", "epoch_ms",
    "log_format", "log_level", "metrics",
)
"""`mvds run` options that override the setting of the same name for this run."""


def run(args: argparse.Namespace) -> int:
    nodedir = node_dir(args.dir)
    if len(os.fsencode(nodedir.socket)) >= SOCKET_PATH_MAX:
        raise CliError(
            f"{nodedir.path} is too long a path for the control socket (DIR/mvds.sock must be "
            f"under {SOCKET_PATH_MAX} bytes): use a shorter directory"
        )
    config = load(nodedir)
    changes = {name: getattr(args, name) for name in RUN_OPTIONS if getattr(args, name) is not None}
    config = dataclasses.replace(config, **changes)
    try:
        config.validate("option")
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    configure_logging(config.log_format, config.log_level)
    import trio  # here, not at the top: the other commands start faster without it

    gc.set_threshold(*GC_THRESHOLDS)
    try:
        trio.run(serve, nodedir.path, config)
    except BaseExceptionGroup as group:
        raise CliError(describe(group)) from None
    except Exception as exc:
        raise CliError(describe(exc)) from None
    return 0


def describe(exc: BaseException) -> str:
    """One line for a startup failure, however deeply trio nested it."""
    exc = leaves(exc)[0]
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = str(exc) or type(exc).__name__
    return text


async def serve(directory, config) -> None:
    import trio

    from mvds.daemon.control import ControlServer
    from mvds.daemon.node import Node

    log = get_logger(component="run")
    async with Node.open(directory, config=config) as node:
        # What exists now (modules, the store's caches) lives as long as the
        # process: keep it out of every later collection.
        gc.freeze()
        server = ControlServer(node, node.nodedir.socket)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(server.serve)
                log.info("control.listening", socket=str(node.nodedir.socket))
                async for signum in signals:
                    log.info("node.stopping", signal=signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break
