"""`mvds status DIR [--json]`: peers, reachability, pending records, counters.

With the daemon stopped it still reports what the store holds.
"""

from __future__ import annotations

import argparse
from typing import Any

from mvds.cli.common import add_dir_argument, call, connect, daemon_running, load, node_dir, print_json
from mvds.cli.errors import CliError
from mvds.daemon.diagnose import human_bytes, human_duration, plural
from mvds.daemon.status import build_status
from mvds.secure import Identity


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="peers, reachability, pending records, counters")
    add_dir_argument(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def node_status(nodedir) -> dict:
    """The node's status: from the running daemon, else read from its
    directory (the same builder, so `status` and `doctor` agree either way)."""
    if daemon_running(nodedir):
        with connect(nodedir) as client:
            return call(client, "status")["status"]
    return offline_status(nodedir)


def run(args: argparse.Namespace) -> int:
    status = node_status(node_dir(args.dir))
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
        f"store    {plural(status['messages_stored'], 'message')}, last seq {status['last_seq']}"
        " (own and received)",
        f"groups   {', '.join(status['groups']) or '-'}",
    ]
    invites = status.get("invites") or {}
    if any(invites.values()):
        lines.append("invites  " + ", ".join(f"{n} {state}" for state, n in invites.items() if n))
    if status.get("running"):
        lines.append(
            f"traffic  in {plural(status['datagrams_in'], 'datagram')} / {human_bytes(status['bytes_in'])},"
            f" out {plural(status['datagrams_out'], 'datagram')} / {human_bytes(status['bytes_out'])}"
        )
        drops = status.get("drops") or {}
        if drops:
            lines.append("drops    " + ", ".join(f"{k}={v}" for k, v in drops.items()))
    lines.append("")
    header = (
        "peer", "reachable", "last heard", "rtt", "sync", "offer", "request", "message", "retrans",
        "in", "out",
    )
    rows = [header]
    for peer in status["peers"]:
        heard = peer.get("last_heard_s")
        rtt = peer.get("rtt_ms")
        rows.append((
            peer["name"],
            "yes" if peer.get("reachable") else "no",
            "-" if heard is None else f"{human_duration(heard)} ago",
            "-" if rtt is None else f"{rtt:.1f}ms",
            progress(peer),
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
    findings = [f for f in status.get("findings", []) if f["problem"] != "not_running"]
    if findings:
        lines.append("")
        lines.append("problems (mvds doctor DIR explains them):")
        for finding in findings:
            lines.append(f"  {finding['peer'] or 'node'}: {finding['detail']}")
    return "\n".join(lines)


def progress(peer: dict[str, Any]) -> str:
    """Sync progress towards a peer this run: ``12 of 40 pending, oldest
    5 m, last ack 3 m ago`` (40: the 12 waiting plus the 28 it acknowledged
    since the daemon started; oldest: the age of the oldest message sent and
    not acknowledged); ``in sync`` when nothing waits."""
    waiting = peer["pending"]["offer"] + peer["pending"]["message"]
    acked = peer.get("acknowledged")
    if acked is None:  # stopped: only the store's records
        return f"{waiting} pending" if waiting else "in sync"
    if not waiting:
        return "in sync"
    text = f"{waiting} of {waiting + acked} pending"
    oldest = peer.get("pending_oldest_s")
    if oldest is not None:
        text += f", oldest {human_duration(oldest)}"
    last = peer.get("last_ack_s")
    if last is not None:
        text += f", last ack {human_duration(last)} ago"
    return text
