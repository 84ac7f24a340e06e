"""`mvds status DIR [--json]`: peers, reachability, pending records, counters.

With the daemon stopped it still reports what the store holds.
"""

from __future__ import annotations

import argparse
from typing import Any

from mvds.cli.common import add_dir_argument, call, connect, daemon_running, load, node_dir, print_json
from mvds.cli.errors import CliError
from mvds.daemon.status import build_status
from mvds.secure import Identity


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="peers, reachability, pending records, counters")
    add_dir_argument(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    nodedir = node_dir(args.dir)
    if daemon_running(nodedir):
        with connect(nodedir) as client:
            status = call(client, "status")["status"]
    else:
        status = offline_status(nodedir)
    if args.json:
        print_json(status)
    else:
        print(render(status))
    return 0


def offline_status(nodedir) -> dict[str, Any]:
    """What a stopped node's directory says."""
    from mvds.store.errors import StoreError
    from mvds.store.sqlite import SQLiteStore

    config = load(nodedir)
    identity = Identity.load(nodedir.key)
    pending: dict = {}
    messages = 0
    last_seq = 0
    if nodedir.db.exists():
        try:
            store = SQLiteStore(nodedir.db, readonly=True)
        except StoreError as exc:
            raise CliError(str(exc)) from None
        try:
            pending = store.record_stats()
            messages = store.message_count()
            last_seq = store.last_seq()
        finally:
            store.close()
    return build_status(
        config, identity.peer_id_hex, pending=pending, messages_stored=messages, last_seq=last_seq
    )


def render(status: dict[str, Any]) -> str:
    state = "running" if status["running"] else "stopped"
    if status.get("running") and not status.get("online", True):
        state += " (radio down)"
    lines = [
        f"node     {status['peer_id']}",
        f"listen   {status['listen']}  ({state}, {status['mode']} mode)",
        f"store    {status['messages_stored']} messages, last seq {status['last_seq']}",
        f"groups   {', '.join(status['groups']) or '-'}",
    ]
    if status.get("running"):
        lines.append(
            f"traffic  in {status['datagrams_in']} datagrams / {status['bytes_in']} B,"
            f" out {status['datagrams_out']} datagrams / {status['bytes_out']} B"
        )
        drops = status.get("drops") or {}
        if drops:
            lines.append("drops    " + ", ".join(f"{k}={v}" for k, v in drops.items()))
    lines.append("")
    header = (
        "peer", "reachable", "last heard", "rtt", "offer", "request", "message", "retrans", "in", "out"
    )
    rows = [header]
    for peer in status["peers"]:
        heard = peer.get("last_heard_s")
        rtt = peer.get("rtt_ms")
        rows.append((
            peer["name"],
            "yes" if peer.get("reachable") else "no",
            "-" if heard is None else f"{heard:.1f}s ago",
            "-" if rtt is None else f"{rtt:.1f}ms",
            str(peer["pending"]["offer"]),
            str(peer["pending"]["request"]),
            str(peer["pending"]["message"]),
            str(peer.get("retransmissions", "-")),
            str(peer.get("datagrams_in", "-")),
            str(peer.get("datagrams_out", "-")),
        ))
    if len(rows) == 1:
        lines.append("no peers (add one with: mvds peer add DIR NAME PEER_ID HOST:PORT --group G)")
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for row in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)
