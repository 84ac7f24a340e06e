"""`mvds send DIR GROUP [TEXT | --file F | --stdin | --lines] [--ephemeral] [--wait-ack [N|PEER...]]`.

Prints each message id (hex) once the append is durable in the daemon's
store.  stdin is read only when asked (--stdin: all of it is one message;
--lines: one message a line), so a forgotten TEXT is an error instead of a
command that silently waits for input.  Bodies are checked against the
node's ``max_body`` before anything is read whole or sent, and an empty body
is refused unless --allow-empty says it is meant.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys

from mvds.cli.common import add_dir_argument, call, check_group, connect, load, node_dir, resolve_file
from mvds.cli.errors import CliError

LINES_PER_REQUEST = 1000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "send", help="append a message to a group; prints its id",
        description="Append a message to GROUP through the running daemon and print the "
        "message id once it is stored durably.",
        # Options may follow TEXT or precede it: `send DIR GROUP --ephemeral TEXT`.
        intermixed=True,
    )
    add_dir_argument(parser)
    parser.add_argument("group", metavar="GROUP", help="group name or 64 hex characters")
    # TEXT stays out of the mutually exclusive group: argparse cannot parse
    # intermixed with a positional in one; run() checks the exclusion.
    parser.add_argument("text", metavar="TEXT", nargs="?", help="the message text")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--file", "-f", metavar="F", help="send the contents of file F (any bytes)")
    source.add_argument("--stdin", action="store_true",
                        help="send all of stdin as one message (any bytes)")
    source.add_argument("--lines", action="store_true",
                        help="send each line of stdin as one message, printing one id per line")
    parser.add_argument("--allow-empty", action="store_true",
                        help="allow an empty message body (refused by default: usually a mistake)")
    parser.add_argument("--ephemeral", action="store_true",
                        help="send once, no ACK, not stored, not retransmitted")
    parser.add_argument(
        "--wait-ack", nargs="*", metavar="N|PEER", default=None,
        help="after printing the id, wait until peers acknowledged (hold) the message: "
        "alone, every peer the group is shared with; N: that many of them; PEER...: those "
        "peers by name (exit 1 on --ack-timeout)")
    parser.add_argument("--ack-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="how long --wait-ack waits (default 30)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.text is not None and (args.file is not None or args.lines or args.stdin):
        raise CliError("give the message as TEXT, --file F, --stdin or --lines, not several")
    if args.text is None and args.file is None and not (args.lines or args.stdin):
        raise CliError("no message: give TEXT, --file F, --stdin or --lines")
    wait = _wait_fields(args)
    nodedir = node_dir(args.dir)
    config = load(nodedir)
    check_group(config, args.group)
    limit = config.max_body
    if args.lines:
        if args.ephemeral:
            raise CliError("--lines and --ephemeral cannot be combined")
        ids = _send_lines(nodedir, args.group, limit, args.allow_empty)
        if wait is not None:
            _wait_acks(nodedir, ids, wait)
        return 0
    if args.text is not None:
        body = args.text.encode("utf-8")
    elif args.file is not None:
        body = _read_file(args.file, limit)
    else:
        # One byte more than the limit is enough to know it is too big.
        body = sys.stdin.buffer.read(limit + 1)
    _check_body(body, limit, args.allow_empty, "the message")
    with connect(nodedir) as client:
        reply = call(client, "append", group=args.group,
                     body_b64=base64.b64encode(body).decode("ascii"), ephemeral=args.ephemeral)
    print(reply["message_id"], flush=True)
    if wait is not None:
        _wait_acks(nodedir, [reply["message_id"]], wait)
    return 0


def _wait_fields(args: argparse.Namespace) -> dict | None:
    """The wait_ack request fields --wait-ack asks for (None: no waiting)."""
    if args.wait_ack is None:
        return None
    if args.ephemeral:
        raise CliError("--wait-ack and --ephemeral cannot be combined (ephemeral messages are never acknowledged)")
    if not 0 < args.ack_timeout <= 86400:
        raise CliError("--ack-timeout must be between 0 and 86400 seconds")
    fields: dict = {"timeout": args.ack_timeout}
    if len(args.wait_ack) == 1 and args.wait_ack[0].isdigit():
        fields["count"] = int(args.wait_ack[0])
    elif args.wait_ack:
        fields["peers"] = list(args.wait_ack)
    return fields


def _wait_acks(nodedir, ids: list[str], fields: dict) -> None:
    """Until every message in ``ids`` is acknowledged as ``fields`` asks, in
    one overall timeout; the error names who is missing."""
    import time

    deadline = time.monotonic() + fields["timeout"]
    with connect(nodedir, timeout=None) as client:
        for message_id in ids:
            left = max(0.001, deadline - time.monotonic())
            call(client, "wait_ack", id=message_id, **{**fields, "timeout": left})


def _check_body(body: bytes, limit: int, allow_empty: bool, what: str) -> None:
    if len(body) > limit:
        # Input read with a bound of limit + 1 bytes: its true size is unknown.
        raise CliError(f"{what} is longer than the maximum of {limit} bytes (setting max_body)")
    if not body and not allow_empty:
        raise CliError(f"{what} is empty (pass --allow-empty if that is meant)")


def _read_file(name: str, limit: int) -> bytes:
    """The file's bytes, its size checked first: a 300 MB file is refused
    without reading it (a message travels whole in one datagram)."""
    path = resolve_file(name)
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise CliError(
                    f"{name} is {size} bytes; the maximum message body is {limit} "
                    "(setting max_body)"
                )
            return f.read(limit + 1)
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror or exc}") from None


def _send_lines(nodedir, group: str, limit: int, allow_empty: bool) -> list[str]:
    """Each line one message, in batches; a line that cannot be sent stops
    the run after everything before it was stored (and its id printed), and
    the error names the line and says how many were stored."""
    stored: list[str] = []
    with connect(nodedir) as client:
        batch: list[str] = []
        # readline with a bound: an over-long line is known without holding it.
        number = 0
        while True:
            raw = sys.stdin.buffer.readline(limit + 2)
            if not raw:
                break
            number += 1
            line = raw[:-1] if raw.endswith(b"\n") else raw
            try:
                _check_body(line, limit, allow_empty, f"line {number}")
            except CliError as exc:
                if batch:
                    stored += _flush(client, group, batch)
                count = len(stored)
                raise CliError(
                    f"{exc}; {count} line{'s' if count != 1 else ''} before it "
                    f"{'were' if count != 1 else 'was'} stored, nothing after it"
                ) from None
            batch.append(base64.b64encode(line).decode("ascii"))
            if len(batch) >= LINES_PER_REQUEST:
                stored += _flush(client, group, batch)
                batch = []
        if batch:
            stored += _flush(client, group, batch)
    return stored


def _flush(client, group: str, batch: list[str]) -> list[str]:
    reply = call(client, "append_many", group=group, bodies_b64=batch)
    sys.stdout.write("".join(f"{mid}\n" for mid in reply["message_ids"]))
    sys.stdout.flush()
    return reply["message_ids"]
