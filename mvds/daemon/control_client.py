"""A small blocking client for the control API, used by the CLI.

Blocking on purpose: each CLI command is one short conversation, and plain
sockets keep `mvds send` fast to start.  Other programs can use this module
too, or speak the JSON-lines protocol directly (docs/CONTROL_API.md).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Iterator

from mvds.daemon.control_protocol import READ_SIZE, LineFramer, decode_reply, encode


class ControlError(Exception):
    """The daemon answered with an error, or could not be reached."""


class NotRunning(ControlError):
    """Nothing listens on the control socket."""


class ControlClient:
    def __init__(self, path: Path, timeout: float | None = 30.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            self.sock.close()
            raise NotRunning(
                f"no mvds daemon is running on {path.parent} (start it with: mvds run {path.parent})"
            ) from None
        except PermissionError:
            self.sock.close()
            raise ControlError(f"permission denied on {path} (it belongs to another user)") from None
        except OSError as exc:
            self.sock.close()
            raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        self._framer = LineFramer()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, request: dict[str, Any]) -> None:
        try:
            self.sock.sendall(encode(request))
        except OSError as exc:
            raise ControlError(f"the daemon closed the connection: {exc}") from None

    def _read(self) -> dict[str, Any]:
        framer = self._framer
        while (line := framer.next_line()) is None:
            try:
                chunk = self.sock.recv(READ_SIZE)
            except socket.timeout:
                raise ControlError("the daemon did not answer in time") from None
            except OSError as exc:
                raise ControlError(f"the daemon closed the connection: {exc}") from None
            if not chunk:
                raise ControlError("the daemon closed the connection")
            framer.feed(chunk)
        return decode_reply(line)

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """One request, one reply; raises ControlError for {"ok": false}."""
        self._write({"op": op, **fields})
        reply = self._read()
        if not reply.get("ok"):
            raise ControlError(reply.get("error", "the daemon refused the request"))
        return reply

    def stream(self, op: str, **fields: Any) -> Iterator[dict[str, Any]]:
        """A streaming request (subscribe): yields each event object."""
        self.sock.settimeout(None)
        self._write({"op": op, **fields})
        head = self._read()
        if not head.get("ok"):
            raise ControlError(head.get("error", "the daemon refused the request"))
        while True:
            event = self._read()
            yield event
