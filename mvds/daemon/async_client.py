"""The control API client for trio programs (the demo, tests, your tools)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import trio

from mvds.daemon.control_client import ControlError, NotRunning
from mvds.daemon.control_protocol import READ_SIZE, LineFramer, decode_reply, encode


class AsyncControlClient:
    """One connection to a daemon's control socket."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._framer = LineFramer()

    @classmethod
    async def connect(cls, path: Path) -> "AsyncControlClient":
        try:
            stream = await trio.open_unix_socket(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NotRunning(f"no mvds daemon is running on {path.parent}") from None
        return cls(stream)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def __aenter__(self) -> "AsyncControlClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _read(self) -> dict[str, Any]:
        framer = self._framer
        while (line := framer.next_line()) is None:
            chunk = await self._stream.receive_some(READ_SIZE)
            if not chunk:
                raise ControlError("the daemon closed the connection")
            framer.feed(chunk)
        return decode_reply(line)

    async def _write(self, request: dict[str, Any]) -> None:
        await self._stream.send_all(encode(request))

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        await self._write({"op": op, **fields})
        reply = await self._read()
        if not reply.get("ok"):
            raise ControlError(reply.get("error", "the daemon refused the request"))
        return reply

    async def subscribe(self, since: int = 0, follow: bool = True, group: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Yields subscription events: {"event": "message"|"caught_up", ...}."""
        fields: dict[str, Any] = {"since": since, "follow": follow}
        if group is not None:
            fields["group"] = group
        await self._write({"op": "subscribe", **fields})
        head = await self._read()
        if not head.get("ok"):
            raise ControlError(head.get("error", "the daemon refused the request"))
        while True:
            yield await self._read()
