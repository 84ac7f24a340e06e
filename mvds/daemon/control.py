"""The local control API: JSON lines over a Unix socket (DIR/mvds.sock, mode 0600).

Any language can drive a node: connect, write one JSON object per line,
read one JSON object per line back.  docs/CONTROL_API.md documents every
operation; this module is the server.

Requests are handled one after another per connection, so a client may
pipeline them; a ``subscribe`` turns the connection into a stream.  Bad
input (not JSON, unknown op, wrong types, oversized line) gets
``{"ok": false, "error": "..."}`` and never disturbs the node.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import trio

from mvds import __version__
from mvds.daemon.logs import get_logger
from mvds.daemon.node import Node, NodeError
from mvds.ids import INT64_MAX

MAX_LINE = 16 * 1024 * 1024
"""Default longest request line (an append_many of many bodies, base64);
the setting ``control_max_line``."""

MAX_CLIENTS = 32
"""Default most connections served at once; the setting ``control_max_clients``.
With the line limit it bounds what clients can make the daemon buffer."""

MAX_BATCH = 100_000
"""Most bodies in one append_many."""


_compact = json.JSONEncoder(separators=(",", ":")).encode
"""One JSON line without spaces.  One encoder for the module: ``json.dumps``
with any option builds a new encoder per call, which a busy subscription
stream would pay for every message."""


class RequestError(Exception):
    """A malformed request; becomes {"ok": false, "error": ...}."""


def _field(request: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    if name not in request:
        if default is ...:
            raise RequestError(f"missing field {name!r}")
        return default
    value = request[name]
    if isinstance(value, bool) and kind in (int, (int, float)):
        raise RequestError(f"field {name!r} must be a number")
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise RequestError(f"field {name!r} must be {expected}")
    return value


def _body(request: dict[str, Any]) -> bytes:
    if "body_b64" in request:
        try:
            return base64.b64decode(_field(request, "body_b64", str), validate=True)
        except (binascii.Error, ValueError):
            raise RequestError("field 'body_b64' is not valid base64") from None
    if "text" in request:
        return _field(request, "text", str).encode("utf-8")
    raise RequestError("give the message as 'text' or 'body_b64'")


def _bodies(request: dict[str, Any]) -> list[bytes]:
    if "bodies_b64" in request:
        items = _field(request, "bodies_b64", list)
        try:
            bodies = [base64.b64decode(item, validate=True) for item in items]
        except (binascii.Error, ValueError, TypeError):
            raise RequestError("'bodies_b64' must be a list of base64 strings") from None
    elif "texts" in request:
        items = _field(request, "texts", list)
        if not all(isinstance(item, str) for item in items):
            raise RequestError("'texts' must be a list of strings")
        bodies = [item.encode("utf-8") for item in items]
    else:
        raise RequestError("give the messages as 'texts' or 'bodies_b64'")
    if len(bodies) > MAX_BATCH:
        raise RequestError(f"at most {MAX_BATCH} messages per append_many")
    return bodies


class ControlServer:
    """Serves one node's control socket."""

    def __init__(self, node: Node, path: Path) -> None:
        self.node = node
        self.path = path
        self.log = get_logger(component="control")
        self.max_line = node.config.control_max_line
        self.max_clients = node.config.control_max_clients
        self._clients = 0
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
        }

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
        if self._clients >= self.max_clients:
            # Refused, not queued: an idle or stuck client must not be able
            # to make the daemon hold unbounded connections and buffers.
            self._refuse("too_many_clients")
            try:
                async with stream:
                    await self._send(stream, {
                        "ok": False,
                        "error": f"too many control connections (control_max_clients = {self.max_clients})",
                    })
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            return
        self._clients += 1
        try:
            await self._serve_client(stream)
        finally:
            self._clients -= 1

    def _refuse(self, reason: str) -> None:
        counters = self.node.counters
        counters[f"control_refused_{reason}"] += 1
        if self.node._warnings.drop(f"control/{reason}", time.monotonic()) is not None:
            self.log.warning("control.refused", reason=reason,
                             count=counters[f"control_refused_{reason}"])

    async def _serve_client(self, stream: trio.SocketStream) -> None:
        buffer = bytearray()
        limit = self.max_line
        try:
            async with stream:
                while True:
                    newline = buffer.find(b"\n")
                    if newline < 0:
                        if len(buffer) > limit:
                            self._refuse("line_too_long")
                            await self._send(stream, {
                                "ok": False,
                                "error": f"request line over {limit} bytes (control_max_line)",
                            })
                            return
                        chunk = await stream.receive_some(65536)
                        if not chunk:
                            return
                        buffer += chunk
                        continue
                    line = bytes(buffer[:newline])
                    del buffer[: newline + 1]
                    if line.strip():
                        await self._request(stream, line)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def _send(self, stream: trio.SocketStream, obj: dict[str, Any]) -> None:
        await stream.send_all(_compact(obj).encode() + b"\n")

    async def _request(self, stream: trio.SocketStream, line: bytes) -> None:
        request_id = None
        try:
            try:
                request = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise RequestError(f"not JSON: {exc}") from None
            except RecursionError:
                raise RequestError("not JSON: nested too deeply") from None
            except ValueError as exc:  # e.g. an integer of more than 4300 digits
                raise RequestError(f"not JSON: {exc}") from None
            if not isinstance(request, dict):
                raise RequestError("a request is a JSON object")
            request_id = request.get("id")
            op = _field(request, "op", str)
            if op == "subscribe":
                await self._subscribe(stream, request, request_id)
                return
            handler = self._ops.get(op)
            if handler is None:
                known = ", ".join(sorted([*self._ops, "subscribe"]))
                raise RequestError(f"unknown op {op!r} (known: {known})")
            reply = await handler(request)
            reply["ok"] = True
        except (RequestError, NodeError) as exc:
            reply = {"ok": False, "error": str(exc)}
        except Exception as exc:  # never let one request take the node down
            self.log.exception("control.error", error=str(exc))
            reply = {"ok": False, "error": f"internal error: {type(exc).__name__}"}
        if request_id is not None:
            reply["id"] = request_id
        await self._send(stream, reply)

    # -- operations ------------------------------------------------------------
    async def _ping(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"version": __version__, "peer_id": self.node.identity.peer_id_hex}

    async def _status(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"status": self.node.status()}

    async def _append(self, request: dict[str, Any]) -> dict[str, Any]:
        group = _field(request, "group", str)
        body = _body(request)
        ephemeral = _field(request, "ephemeral", bool, False)
        message_id = await self.node.append(group, body, ephemeral=ephemeral)
        return {"message_id": message_id.hex()}

    async def _append_many(self, request: dict[str, Any]) -> dict[str, Any]:
        group = _field(request, "group", str)
        ids = await self.node.append_many(group, _bodies(request))
        return {"message_ids": [i.hex() for i in ids]}

    async def _peers(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"peers": self.node.status()["peers"]}

    async def _add_peer(self, request: dict[str, Any]) -> dict[str, Any]:
        groups = _field(request, "groups", list, [])
        if not all(isinstance(g, str) and g for g in groups):
            raise RequestError("'groups' must be a list of group names")
        await self.node.add_peer(
            _field(request, "name", str),
            _field(request, "peer_id", str),
            _field(request, "address", str),
            groups,
            plaintext=_field(request, "plaintext", bool, False),
        )
        return {}

    async def _remove_peer(self, request: dict[str, Any]) -> dict[str, Any]:
        await self.node.remove_peer(_field(request, "name", str))
        return {}

    async def _share(self, request: dict[str, Any]) -> dict[str, Any]:
        await self.node.share(_field(request, "group", str), _field(request, "peer", str))
        return {}

    async def _unshare(self, request: dict[str, Any]) -> dict[str, Any]:
        await self.node.unshare(_field(request, "group", str), _field(request, "peer", str))
        return {}

    async def _join(self, request: dict[str, Any]) -> dict[str, Any]:
        group_id = await self.node.join(_field(request, "group", str))
        return {"group_id": group_id.hex()}

    async def _groups(self, request: dict[str, Any]) -> dict[str, Any]:
        from mvds.ids import parse_group

        out = []
        for name in self.node.config.all_groups():
            out.append(
                {
                    "group": name,
                    "group_id": parse_group(name).hex(),
                    "peers": [p.name for p in self.node.config.peers if name in p.groups],
                }
            )
        return {"groups": out}

    async def _subscribe(
        self, stream: trio.SocketStream, request: dict[str, Any], request_id: Any
    ) -> None:
        since = _field(request, "since", int, 0)
        if not 0 <= since <= INT64_MAX:
            raise RequestError(f"'since' must be between 0 and {INT64_MAX}")
        group = _field(request, "group", str, None)
        follow = _field(request, "follow", bool, False)
        node = self.node
        if group is not None:
            node.group_id(group)  # unknown group: an error before the stream starts
        head: dict[str, Any] = {"ok": True, "event": "subscribed"}
        if request_id is not None:
            head["id"] = request_id
        await self._send(stream, head)
        cursor = since
        async for batch in node.message_batches(since, group=group, follow=False):
            cursor = max([cursor, *(m.seq for m in batch if m.seq is not None)])
            await self._send_messages(stream, batch)
        await self._send(stream, {"event": "caught_up", "seq": cursor})
        if not follow:
            return
        async for batch in node.message_batches(cursor, group=group, follow=True):
            await self._send_messages(stream, batch)

    async def _send_messages(self, stream: trio.SocketStream, batch: list[Any]) -> None:
        """One write for a whole batch: a busy subscriber costs one syscall per batch."""
        lines = [m.event_line() for m in batch]
        await stream.send_all(("\n".join(lines) + "\n").encode())
