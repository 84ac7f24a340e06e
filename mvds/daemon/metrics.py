"""The status counters in Prometheus text format, over plain HTTP (`--metrics`).

Read-only and tiny on purpose: one GET returns everything `mvds status
--json` reports that is a number, with peers as labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from mvds.daemon.config import parse_address

if TYPE_CHECKING:
    from mvds.daemon.node import Node

MAX_REQUEST = 16 * 1024


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(status: dict[str, Any]) -> str:
    """Prometheus exposition text for a status dict."""
    lines: list[str] = []

    def metric(name: str, value: Any, kind: str = "counter", help_text: str = "", **labels: str) -> None:
        full = f"mvds_{name}"
        if not any(line.startswith(f"# TYPE {full} ") for line in lines):
            if help_text:
                lines.append(f"# HELP {full} {help_text}")
            lines.append(f"# TYPE {full} {kind}")
        label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        lines.append(f"{full}{{{label_text}}} {float(value):g}" if labels else f"{full} {float(value):g}")

    metric("up", 1 if status.get("online", True) else 0, "gauge", "1 while the radio is up")
    metric("uptime_seconds", status.get("uptime_s", 0), "gauge", "seconds since start")
    metric("messages_stored", status["messages_stored"], "gauge", "messages in the store")
    metric("last_seq", status["last_seq"], "gauge", "last delivery sequence number")
    for key in ("datagrams_in", "datagrams_out", "bytes_in", "bytes_out"):
        metric(f"{key}_total", status.get(key, 0), "counter", f"{key.replace('_', ' ')} on the socket")
    for reason, count in (status.get("drops") or {}).items():
        metric("drops_total", count, "counter", "datagrams dropped, by reason", reason=reason)
    for name, count in (status.get("engine") or {}).items():
        metric("engine_total", count, "counter", "protocol engine counters", counter=name)
    for peer in status["peers"]:
        labels = {"peer": peer["name"]}
        metric("peer_reachable", 1 if peer.get("reachable") else 0, "gauge", "peer heard recently", **labels)
        for kind, count in peer["pending"].items():
            metric("peer_pending_records", count, "gauge", "sync state records", type=kind, **labels)
        for key in ("datagrams_in", "datagrams_out", "bytes_in", "bytes_out", "retransmissions"):
            if key in peer:
                metric(f"peer_{key}_total", peer[key], "counter", f"per-peer {key.replace('_', ' ')}", **labels)
    return "\n".join(lines) + "\n"


async def serve_metrics(node: "Node", address: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve GET /metrics on ``address``; started once the port is bound, so
    a port that is taken fails the start, naming the address."""
    from mvds.daemon.node import NodeError

    host, port = parse_address(address)

    async def handle(stream: trio.SocketStream) -> None:
        request = b""
        try:
            with trio.move_on_after(5):
                while b"\r\n\r\n" not in request and len(request) < MAX_REQUEST:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    request += chunk
            if request.startswith(b"GET /metrics") or request.startswith(b"GET / "):
                body = render_metrics(node.status()).encode()
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
            else:
                body = b"not found\n"
                head = f"HTTP/1.1 404 Not Found\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            await stream.send_all(head.encode() + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise NodeError(f"cannot serve metrics on {address}: {exc.strerror or exc}") from None
    await trio.serve_listeners(handle, listeners, task_status=task_status)
