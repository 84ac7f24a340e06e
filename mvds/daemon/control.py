"""The local control API: JSON lines over a Unix socket (DIR/mvds.sock, mode 0600).

Any language can drive a node: connect, write one JSON object per line,
read one JSON object per line back.  docs/CONTROL_API.md documents every
operation; this module is the server.

Requests are handled one after another per connection, so a client may
pipeline them; a ``subscribe`` turns the connection into a stream.  Bad
input (not JSON, unknown op, wrong types, oversized line) gets
``{"ok": false, "error": "..."}`` and never disturbs the node.  Framing,
parsing and encoding are ``control_protocol`` (no I/O); this is the loop
that moves bytes between it, the socket and the node.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import trio

from mvds import __version__
from mvds.daemon import control_protocol as protocol
from mvds.daemon.control_protocol import LineFramer, LineTooLong, Request, RequestError
from mvds.daemon.logs import get_logger
from mvds.daemon.logthrottle import LogThrottle
from mvds.daemon.node import Node, NodeError


class ControlServer:
    """Serves one node's control socket."""

    def __init__(self, node: Node, path: Path) -> None:
        self.node = node
        self.path = path
        self.log = get_logger(component="control")
        self.max_line = node.config.control_max_line
        self.max_clients = node.config.control_max_clients
        # Refused, not queued, once full: an idle or stuck client must not be
        # able to make the daemon hold unbounded connections and buffers.
        self._slots = trio.CapacityLimiter(self.max_clients)
        # Refusals are logged at a limited rate: a misbehaving client must
        # not turn into a log flood.
        self._refusals = LogThrottle(interval=60.0)
        self._ops: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "ping": self._ping,
            "status": self._status,
            "append": self._append,
            "append_many": self._append_many,
            "peers": self._peers,
            "add_peer": self._add_peer,
            "remove_peer": self._remove_peer,
            "share": self._share,
            "unshare": self._unshare,
            "join": self._join,
            "groups": self._groups,
            "leave": self._leave,
            "wait_ack": self._wait_ack,
            "invite": self._invite,
            "accept": self._accept,
        }
        assert set(self._ops) | {"subscribe"} == protocol.OPS

    def bind(self) -> trio.SocketListener:
        """Create the socket file with mode 0600 (no window where others could open it)."""
        if len(os.fsencode(self.path)) >= 104:
            raise OSError(f"control socket path is too long for a Unix socket: {self.path}")
        try:
            self.path.unlink()  # stale: we hold the node's lock, so no daemon owns it
        except FileNotFoundError:
            pass
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            raw.bind(str(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        raw.listen(64)
        return trio.SocketListener(trio.socket.from_stdlib_socket(raw))

    async def serve(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listener = self.bind()
        try:
            task_status.started()
            await trio.serve_listeners(self._handle, [listener])
        finally:
            try:
                self.path.unlink()
            except OSError:
                pass

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            self._refuse("too_many_clients")
            try:
                async with stream:
                    await stream.send_all(protocol.too_many_clients(self.max_clients))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            return
        try:
            await self._serve_client(stream)
        finally:
            self._slots.release()

    def _refuse(self, reason: str) -> None:
        counters = self.node.counters
        counters[f"control_refused_{reason}"] += 1
        if self._refusals.count(reason, time.monotonic()) is not None:
            self.log.warning("control.refused", reason=reason,
                             count=counters[f"control_refused_{reason}"])

    async def _serve_client(self, stream: trio.SocketStream) -> None:
        framer = LineFramer(self.max_line)
        try:
            async with stream:
                while True:
                    try:
                        line = framer.next_line()
                    except LineTooLong:
                        self._refuse("line_too_long")
                        await stream.send_all(protocol.line_too_long(self.max_line))
                        return
                    if line is None:
                        chunk = await stream.receive_some(protocol.READ_SIZE)
                        if not chunk:
                            return
                        framer.feed(chunk)
                    elif line.strip():
                        await self._request(stream, line)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def _request(self, stream: trio.SocketStream, line: bytes) -> None:
        request_id = None
        try:
            try:
                request = protocol.parse_request(line)
            except RequestError as exc:
                request_id = exc.request_id
                raise
            request_id = request.id
            if request.op == "subscribe":
                await self._subscribe(stream, request)
                return
            reply = protocol.encode_reply(await self._ops[request.op](request.args), request_id)
        except (RequestError, NodeError) as exc:
            reply = protocol.encode_error(str(exc), request_id)
        except Exception as exc:  # never let one request take the node down
            self.log.exception("control.error", error=str(exc))
            reply = protocol.encode_error(f"internal error: {type(exc).__name__}", request_id)
        await stream.send_all(reply)

    # -- operations ------------------------------------------------------------
    async def _ping(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"version": __version__, "peer_id": self.node.identity.peer_id_hex}

    async def _status(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"status": self.node.status_now()}

    async def _append(self, args: dict[str, Any]) -> dict[str, Any]:
        message_id = await self.node.append(args["group"], args["body"], ephemeral=args["ephemeral"])
        return {"message_id": message_id.hex()}

    async def _append_many(self, args: dict[str, Any]) -> dict[str, Any]:
        ids = await self.node.append_many(args["group"], args["bodies"])
        return {"message_ids": [i.hex() for i in ids]}

    async def _peers(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"peers": self.node.status_now()["peers"]}

    async def _add_peer(self, args: dict[str, Any]) -> dict[str, Any]:
        await self.node.add_peer(
            args["name"], args["peer_id"], args["address"], args["groups"],
            plaintext=args["plaintext"],
        )
        return {}

    async def _remove_peer(self, args: dict[str, Any]) -> dict[str, Any]:
        await self.node.remove_peer(args["name"])
        return {}

    async def _share(self, args: dict[str, Any]) -> dict[str, Any]:
        await self.node.share(args["group"], args["peer"])
        return {}

    async def _unshare(self, args: dict[str, Any]) -> dict[str, Any]:
        await self.node.unshare(args["group"], args["peer"])
        return {}

    async def _join(self, args: dict[str, Any]) -> dict[str, Any]:
        group_id = await self.node.join(args["group"])
        return {"group_id": group_id.hex()}

    async def _groups(self, args: dict[str, Any]) -> dict[str, Any]:
        from mvds.daemon.admin import group_list

        return {"groups": group_list(self.node.config)}

    async def _leave(self, args: dict[str, Any]) -> dict[str, Any]:
        await self.node.leave(args["group"])
        return {}

    async def _wait_ack(self, args: dict[str, Any]) -> dict[str, Any]:
        peers: Any = args["peers"] if args["peers"] is not None else args["count"]
        acked = await self.node.wait_acked(bytes.fromhex(args["id"]), peers, timeout=args["timeout"])
        return {"acked": acked}

    async def _invite(self, args: dict[str, Any]) -> dict[str, Any]:
        code = await self.node.invite(args["groups"], expires=args["expires"], name=args["name"],
                                      addresses=args["addresses"])
        return {"code": code}

    async def _accept(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.node.accept(args["code"], name=args["name"], timeout=args["timeout"])

    async def _subscribe(self, stream: trio.SocketStream, request: Request) -> None:
        since, group, follow, own = (request.args[k] for k in ("since", "group", "follow", "own"))
        node = self.node
        if group is not None:
            node.group_id(group)  # unknown group: an error before the stream starts
        await stream.send_all(protocol.encode_subscribed(request.id))
        cursor = since
        async for batch in node.message_batches(since, group=group, follow=False, own=own):
            cursor = max([cursor, *(m.seq for m in batch if m.seq is not None)])
            await self._send_messages(stream, batch)
        await stream.send_all(protocol.encode_caught_up(cursor))
        if not follow:
            return
        async for batch in node.message_batches(cursor, group=group, follow=True, own=own):
            await self._send_messages(stream, batch)

    async def _send_messages(self, stream: trio.SocketStream, batch: list[Any]) -> None:
        """One write for a whole batch: a busy subscriber costs one syscall per batch."""
        await stream.send_all(protocol.encode_event_lines(m.event_line() for m in batch))
