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
PATH = "/metrics"
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def route(request: bytes) -> int:
    """The status code for an HTTP request head: 200 only for ``GET /metrics``
    (a query string is ignored), 404 for any other path, 405 for any other
    method, 400 for what is not an HTTP request line."""
    line = request.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return 400
    method, target = parts[0], parts[1].split(b"?", 1)[0]
    if target != PATH.encode():
        return 404
    return 200 if method == b"GET" else 405


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
            code = route(request)
            if code == 200:
                body = render_metrics(node.status_now()).encode()
                content_type = "text/plain; version=0.0.4"
            else:
                body = f"{REASONS[code].lower()}: this server answers only GET {PATH}\n".encode()
                content_type = "text/plain"
            head = (
                f"HTTP/1.1 {code} {REASONS[code]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n"
                + ("Allow: GET\r\n" if code == 405 else "") + "\r\n"
            )
            await stream.send_all(head.encode() + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise NodeError(f"cannot serve metrics on {address}: {exc.strerror or exc}") from None
    for listener in listeners:
        bound = listener.socket.getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        node.log.info("metrics.serving", url=f"http://{shown}:{bound[1]}{PATH}")
    await trio.serve_listeners(handle, listeners, task_status=task_status)
