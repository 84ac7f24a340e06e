"""Helpers for tests of a real node's store under faults.

* :class:`FaultyConnection`: an ``sqlite3.Connection`` whose COMMIT (or any
  statement matching a prefix) fails with a chosen SQLite error while a
  fault is set; everything else is real SQLite on a real file.
* :func:`node_store`: make ``mvds.open_node(DIR)`` open its SQLite store
  with extra arguments (a connection factory, a short busy timeout).
* :class:`RawPeer`: a hand-driven peer on a real UDP socket with its own
  identity and session layer, to see exactly which datagrams a node sends.
* :func:`json_logs`: capture the node's structlog lines as parsed JSON.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

import structlog
import trio

import mvds.store.sqlite
from mvds.daemon.logs import configure_logging
from mvds.secure import Identity
from mvds.secure.session import SessionManager
from mvds.wire import Payload, decode_payload, encode_payload

CODES = {
    "disk full": (13, "SQLITE_FULL", "database or disk is full"),
    "io": (10, "SQLITE_IOERR", "disk I/O error"),
    "locked": (5, "SQLITE_BUSY", "database is locked"),
    "corrupt": (11, "SQLITE_CORRUPT", "database disk image is malformed"),
}


def sqlite_error(kind: str) -> sqlite3.OperationalError:
    """The exception sqlite3 raises for this kind of failure."""
    code, name, text = CODES[kind]
    exc = sqlite3.OperationalError(text)
    exc.sqlite_errorcode = code
    exc.sqlite_errorname = name
    return exc


class FaultyConnection(sqlite3.Connection):
    """Fails statements starting with ``fault_on`` while ``fault`` is set.

    Class-level switches, because the store creates the connection itself;
    :func:`node_store` resets them for each test.
    """

    fault: str | None = None
    fault_on: str = "COMMIT"
    failures: int = 0

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        cls = type(self)
        if cls.fault is not None and sql.startswith(cls.fault_on):
            cls.failures += 1
            raise sqlite_error(cls.fault)
        return super().execute(sql, *args)


def node_store(monkeypatch, **kwargs: Any) -> None:
    """Nodes opened on a directory from now on get ``SQLiteStore(path, **kwargs)``."""
    FaultyConnection.fault = None
    FaultyConnection.fault_on = "COMMIT"
    FaultyConnection.failures = 0
    original = mvds.store.sqlite.SQLiteStore

    class Patched(original):  # type: ignore[misc, valid-type]
        def __init__(self, path, **given):
            super().__init__(path, **{**given, **kwargs})

    monkeypatch.setattr(mvds.store.sqlite, "SQLiteStore", Patched)


class RawPeer:
    """A peer driven by hand over sessions: sends payloads to a node, opens
    what it sends (its own sans-IO SessionManager, no keepalives)."""

    def __init__(self, tmp: Path) -> None:
        self.identity = Identity.generate()
        self.sessions = SessionManager(self.identity, keepalive_s=0)
        self.sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)

    async def bind(self) -> "RawPeer":
        await self.sock.bind(("127.0.0.1", 0))
        return self

    @property
    def peer_id(self) -> bytes:
        return self.identity.peer_id

    @property
    def address(self) -> str:
        return "%s:%d" % self.sock.getsockname()

    def know(self, node_peer_id: bytes) -> None:
        self.sessions.add_peer(node_peer_id)

    async def _flush(self) -> None:
        for addr, data in self.sessions.datagrams_to_send():
            await self.sock.sendto(data, addr)

    async def send(self, node, payload: Payload) -> None:
        """Send ``payload`` (the handshake first, if there is no session yet)."""
        self.sessions.add_peer(node.peer_id, tuple(node.address))
        self.sessions.send(node.peer_id, encode_payload(payload), time.monotonic())
        await self._flush()
        with trio.move_on_after(5):
            while not self.sessions.status(node.peer_id, time.monotonic())["established"]:
                await self.receive(0.2)

    async def receive(self, timeout: float) -> Payload | None:
        """The next payload from the node, or None if none comes in time
        (handshakes and keepalives are answered on the way)."""
        with trio.move_on_after(timeout):
            while True:
                data, addr = await self.sock.recvfrom(65536)
                received = self.sessions.datagram_received(addr, data, time.monotonic())
                await self._flush()
                if received is not None:
                    return decode_payload(received.payload)
        return None

    async def drain(self, quiet: float = 0.2) -> list[Payload]:
        """Every payload the node sends until it is quiet for ``quiet`` seconds."""
        out = []
        while (payload := await self.receive(quiet)) is not None:
            out.append(payload)
        return out

    def close(self) -> None:
        self.sock.close()


def json_logs() -> tuple[Callable[[], list[dict[str, Any]]], Callable[[], None]]:
    """Route structlog to memory as JSON; returns (read lines, restore)."""
    stream = io.StringIO()
    configure_logging("json", "info", stream)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]

    return lines, structlog.reset_defaults
