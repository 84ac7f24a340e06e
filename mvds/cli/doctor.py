"""`mvds doctor DIR [--json]`: why nothing flows, peer by peer.

The findings are the running daemon's (mvds/daemon/diagnose.py: unreachable
or unresolvable peers, senders this node does not trust, messages in
groups a peer does not share with us, a small receive buffer); a stopped
node gets what its directory can tell (it is not running; which peer hosts
do not resolve).  Each finding comes with the command that usually fixes
it.  Exit status 0: nothing found; 1: findings printed.
"""

from __future__ import annotations

import argparse
import socket
from typing import Any

from mvds.cli.common import add_dir_argument, node_dir, print_json
from mvds.daemon.config import parse_address


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor", help="explain why messages do not flow, peer by peer (exit 1 if it finds problems)"
    )
    add_dir_argument(parser)
    parser.add_argument("--json", action="store_true", help="the findings as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mvds.cli.status import node_status

    nodedir = node_dir(args.dir)
    status = node_status(nodedir)
    findings = list(status.get("findings", []))
    if not status.get("running"):
        findings += offline_findings(status)
    for finding in findings:
        finding["fix"] = fix(finding, str(nodedir.path), status)
    if args.json:
        print_json({"findings": findings})
    elif not findings:
        peers = status.get("peers", [])
        print(f"no problems found ({len(peers)} peer{'s' if len(peers) != 1 else ''}, "
              "all reachable)" if peers else "no problems found (no peers configured yet)")
    else:
        for finding in findings:
            print(f"{finding['peer'] or 'node'}: {finding['detail']}")
            print(f"  fix: {finding['fix']}")
    return 1 if findings else 0


def offline_findings(status: dict[str, Any]) -> list[dict[str, Any]]:
    """What a stopped node's config shows: peer hosts that do not resolve."""
    out = []
    for peer in status.get("peers", []):
        host, port = parse_address(peer["address"])
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            out.append({
                "peer": peer["name"], "problem": "unresolved",
                "detail": f"{peer['address']} does not resolve ({exc.strerror or exc}): nothing "
                          f"can be sent to {peer['name']}",
            })
    return out


def fix(finding: dict[str, Any], directory: str, status: dict[str, Any]) -> str:
    """The usual remedy for a finding, as a command where there is one."""
    peer = finding.get("peer") or "NAME"
    problem = finding["problem"]
    if problem == "not_running":
        return f"start it: mvds run {directory}"
    if problem == "unresolved":
        return (f"correct the address (the entry is replaced): mvds peer add {directory} {peer} "
                "PEER_ID HOST:PORT --group G")
    if problem == "unreachable":
        return (f"check that {peer} runs (mvds status on it) and trusts this node: there, "
                f"mvds peer add DIR NAME {status['peer_id']} {status['listen']} --group G")
    if problem == "group_mismatch":
        return (f"use the same group name on both sides: mvds share {directory} GROUP {peer} here, "
                "or correct the name on the other node")
    if problem == "unknown_sender":
        return (f"if you know that node, trust it: mvds peer add {directory} NAME "
                f"{finding['claimed_id']} {finding['source']} --group G")
    if problem == "clock_skew":
        return f"synchronise the clocks of both machines (NTP: timedatectl set-ntp true) on {peer} or here"
    if problem == "small_receive_buffer":
        return "raise the limit: sysctl -w net.core.rmem_max=4194304 (then restart the daemon)"
    return "-"
