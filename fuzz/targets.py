"""Fuzz targets: every parser that touches bytes from outside the process.

Each target is a callable taking one input (``bytes``) that returns normally
for every input the code handles correctly and raises for a bug: an
exception the parser is not allowed to raise, or a broken invariant.  The
same targets run under two drivers:

* ``python -m fuzz NAME`` (fuzz/__main__.py): atheris, coverage-guided,
  millions of inputs (docs/RELIABILITY.md records the last long runs);
* ``tests/test_fuzz.py``: hypothesis, a few hundred inputs per target in
  the default test suite, so CI catches regressions quickly.

Targets read their input through :class:`Input`, a tiny deterministic
byte consumer, rather than atheris's FuzzedDataProvider: a target is then a
pure function of its bytes under both drivers, and every crash file
reproduces with ``python -m fuzz NAME --replay FILE``.

Most targets have two modes chosen by the first input byte: *raw* (the
bytes themselves are the datagram, payload, file or request line) and
*structured* (the bytes choose among near-valid inputs built on purpose:
correctly sealed datagrams with flipped bits, payloads for a group the
engine shares, TOML with every setting and odd values, control requests
with every op and wrongly typed fields), because random bytes almost never
get past the first check.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from mvds.daemon.config import ConfigError, NodeConfig, parse_config, render_config
from mvds.engine import Engine, EngineConfig
from mvds.engine.records import RecordType
from mvds.ids import INT64_MAX, INT64_MIN, group_id_for_name
from mvds.secure import EnvelopeCodec, EnvelopeError, Identity
from mvds.store.sqlite import SQLiteStore
from mvds.wire import Message, Payload, WireError, decode_payload, encode_payload

__all__ = ["TARGETS", "Input"]


class Input:
    """Deterministic choices drawn from fuzz bytes (zeros once they run out)."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        value = self.data[self.pos]
        self.pos += 1
        return value

    def int(self, size: int) -> int:
        """An unsigned integer from ``size`` bytes (big-endian)."""
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return int.from_bytes(chunk.ljust(size, b"\0"), "big")

    def below(self, n: int) -> int:
        """0 .. n-1."""
        return self.int(2 if n > 255 else 1) % n if n > 1 else 0

    def bytes(self, limit: int) -> bytes:
        size = self.below(limit + 1)
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk

    def pick(self, options: Sequence[Any]) -> Any:
        return options[self.below(len(options))]

    def flag(self) -> bool:
        return bool(self.byte() & 1)


def _scratch(kind: str) -> tempfile.TemporaryDirectory:
    """A temporary directory for a target's node or store, on tmpfs where
    there is one (config saves and commits fsync: a million inputs should
    measure the parsing, not the disk).

    libFuzzer ends the process with exit(), so Python never removes it;
    directories left by fuzzing processes that are gone are removed here
    (their names carry the pid), so tmpfs does not fill up run after run.
    """
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    for old in base.glob("mvds-fuzz-*-*"):
        pid = old.name.split("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old, ignore_errors=True)
    return tempfile.TemporaryDirectory(prefix=f"mvds-fuzz-{os.getpid()}-{kind}-", dir=base)


def _identity(seed: int) -> Identity:
    return Identity.from_private_bytes(bytes([seed]) * 32)


# -- the datagram envelopes ------------------------------------------------------


class EnvelopeTarget:
    """The gate's two envelopes on hostile datagrams: the session layer
    (types 0x03-0x06) and the plaintext codec (0x02, and the retired 0x01).

    Raw mode: any bytes either open (plaintext from the plaintext peer, or
    a transport datagram with a real tag) or are dropped and counted,
    never raising.  Structured mode: a correctly sealed transport datagram
    from the peer we have a session with, then bit flips and truncation:
    the original opens exactly once; anything changed never opens; what
    opens decodes to a Payload or raises WireError only.
    """

    name = "envelope"

    def __init__(self) -> None:
        from mvds.secure.session import SessionManager

        self.me = _identity(1)
        self.session_peer = _identity(2)
        self.plain_peer = _identity(3)
        self.stranger = _identity(4)
        self.codec = EnvelopeCodec(self.me)
        self.codec.add_peer(self.session_peer.peer_id)
        self.codec.add_peer(self.plain_peer.peer_id, plaintext=True)
        self.sessions = SessionManager(self.me, keepalive_s=0, wall_offset=0.0)
        self.sessions.add_peer(self.session_peer.peer_id, ("127.0.0.1", 2))
        self.sender = SessionManager(self.session_peer, keepalive_s=0, wall_offset=0.0)
        self.sender.add_peer(self.me.peer_id, ("127.0.0.1", 1))
        self.sender.send(self.me.peer_id, b"", 0.0)
        for _ in range(3):  # the handshake
            for _, data in self.sender.datagrams_to_send():
                self.sessions.datagram_received(("127.0.0.1", 2), data, 0.0)
            for _, data in self.sessions.datagrams_to_send():
                self.sender.datagram_received(("127.0.0.1", 1), data, 0.0)
        self.reasons = set(_envelope_reasons())
        self.accepted = 0

    def __call__(self, data: bytes) -> None:
        if not data:
            self._open(b"")
            return
        given = Input(data)
        mode = given.byte() % 4
        if mode == 0:
            self._open(given.rest())
            return
        payload = given.bytes(2048)
        self.sender.send(self.me.peer_id, payload, 0.0)
        (datagram,) = [d for _, d in self.sender.datagrams_to_send()]
        mutated = bytearray(datagram)
        for _ in range(given.below(4)):
            position = given.below(len(mutated))
            mutated[position] ^= given.byte() or 1
        if given.flag():
            del mutated[given.below(len(mutated) + 1) :]
        mutated = bytes(mutated)
        outcome = self._open(mutated)
        if mutated == datagram:
            assert outcome == "opened", outcome
            assert self._open(datagram) == "dropped"  # at most once
        else:
            assert outcome != "opened", "a changed transport datagram opened"

    def _open(self, datagram: bytes) -> str:
        from mvds.secure import sessionwire

        if datagram and datagram[0] in sessionwire.SESSION_TYPES:
            received = self.sessions.datagram_received(("127.0.0.1", 2), datagram, 0.0)
            self.sessions.datagrams_to_send()
            self.sessions.events()
            if received is None:
                return "dropped"
            sender, plain = received.peer_id, received.payload
            assert sender == self.session_peer.peer_id
            self.accepted += 1
        else:
            try:
                sender, plain = self.codec.open(datagram)
            except EnvelopeError as exc:
                assert exc.reason in self.reasons, exc.reason
                return exc.reason
            assert sender == self.plain_peer.peer_id
        try:
            decode_payload(plain)
        except WireError:
            pass
        return "opened"


def _envelope_reasons() -> tuple[str, ...]:
    from mvds.secure.envelope import REASONS

    return REASONS


# -- payload decoding and the engine behind it ---------------------------------------


_EXTREME_TIMESTAMPS = (0, 1, -1, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1, 1_700_000_000)


class PayloadTarget:
    """decode_payload on hostile bytes, and the engine (SQLite store) on what decodes.

    decode_payload raises WireError and nothing else; a decoded payload
    re-encodes to bytes that decode to the same payload; feeding it to an
    engine whose peer shares a group never raises, and the engine's sync
    state towards the peer stays within its caps (REQUEST records at most
    ``max_requests``; OFFER/MESSAGE records in flight at most
    ``max_inflight`` per group).  The engine and its store are rebuilt every
    ``reset_every`` inputs, so state from old inputs cannot hide growth.
    """

    name = "payload"
    reset_every = 2000

    def __init__(self) -> None:
        self.peer = b"P" * 32
        self.other = b"O" * 32
        self.shared = group_id_for_name("shared")
        self.private = group_id_for_name("private")  # member, not shared with peer
        self.config = EngineConfig(max_requests=64, max_inflight=16, max_parents=32)
        self._tmp = _scratch("payload")
        self._round = 0
        self.now = 1_700_000_000.0
        self._calls = 0
        self._new_engine()

    def _new_engine(self) -> None:
        if getattr(self, "store", None) is not None:
            self.store.close()
        self._round += 1
        path = Path(self._tmp.name) / f"store-{self._round}.db"
        self.store = SQLiteStore(path)
        with self.store.transaction():
            self.engine = Engine(self.store, self.config, now=self.now)
            self.engine.share(self.shared, self.peer, self.now)
            self.engine.share(self.shared, self.other, self.now)
            self.engine.share(self.private, self.other, self.now)
            self.known = [
                self.engine.append(group, f"known {i}".encode(), self.now).id
                for i, group in enumerate([self.shared, self.private, self.shared])
            ]
            self.engine.payloads_to_send(self.now)
        if self._round > 1:
            (Path(self._tmp.name) / f"store-{self._round - 1}.db").unlink(missing_ok=True)

    def __call__(self, data: bytes) -> None:
        self._calls += 1
        if self._calls % self.reset_every == 0:
            self._new_engine()
        given = Input(data)
        if given.byte() % 2 == 0:
            raw = given.rest()
            try:
                payload = decode_payload(raw)
            except WireError:
                return
            again = decode_payload(encode_payload(payload))
            assert again == payload, "re-encoding changed the payload"
        else:
            payload = self._structured(given)
            assert decode_payload(encode_payload(payload)) == payload
        self.now += given.below(4) * 0.2
        with self.store.transaction():
            self.engine.receive(self.peer, payload, self.now)
            self.engine.payloads_to_send(self.now)
        self.engine.events()
        self._check_bounds()

    def _id(self, given: Input) -> bytes:
        choice = given.below(4)
        if choice == 0 and self.known:
            return given.pick(self.known)
        if choice == 1:
            return bytes([given.byte()]) * 32
        return given.int(32).to_bytes(32, "big")

    def _structured(self, given: Input) -> Payload:
        payload = Payload()
        for _ in range(given.below(8)):
            payload.acks.append(self._id(given))
        for _ in range(given.below(120)):
            payload.offers.append(self._id(given))
        for _ in range(given.below(40)):
            payload.requests.append(self._id(given))
        for _ in range(given.below(6)):
            group = given.pick([self.shared, self.shared, self.private, bytes(32)])
            if given.flag():
                timestamp = given.pick(_EXTREME_TIMESTAMPS)
            else:
                timestamp = given.int(8) - (1 << 63)
            body = given.bytes(64)
            parents = [self._id(given) for _ in range(given.pick([0, 1, 2, 31, 32, 33, 40]))]
            message = Message(group, timestamp, body, parents, ephemeral=given.byte() < 16)
            if given.byte() < 8:  # names itself as a parent
                message = Message(group, timestamp, body, [*parents, message.id])
            payload.messages.append(message)
        return payload

    def _check_bounds(self) -> None:
        stats = self.store.record_stats()
        requests = stats.get((self.peer, RecordType.REQUEST), 0)
        assert requests <= self.config.max_requests, f"{requests} REQUEST records"
        assert self.store.request_count(self.peer) == requests
        for group in (self.shared, self.private):
            inflight = self.store.inflight_count(self.peer, group)
            assert inflight <= self.config.max_inflight, f"{inflight} in flight"
        # Never anything towards the peer in a group not shared with it.
        assert not self.store.is_shared(self.private, self.peer)


# -- config files ------------------------------------------------------------------

_VALUES: tuple[str, ...] = (
    '""', '"x"', '"batch"', '"interactive"', '"causal"', '"eventual"', '"crash"', '"power"',
    '"json"', '"console"', '"debug"', '"127.0.0.1:7400"', '"[::1]:0"', '"up 2s, down 6s"',
    '"up 0s"', '"down 1s"', '"up 1e9h"', '"\\u0000"', '"\\uffff"', "0", "1", "-1", "300", "1200",
    "65507", "65508", "64000", "9223372036854775807", "-9223372036854775808", "1e308", "inf",
    "-inf", "nan", "0.5", "1.0", "true", "false", "[]", '["chat"]', '[""]', "[1, 2]", "{}",
    "{a = 1}", "1979-05-27T07:32:00Z", "[[1]]",
)


class ConfigTarget:
    """parse_config on hostile files: a NodeConfig or ConfigError, nothing else.

    Every error is one line naming the file.  A config that loads can be
    used: it builds the engine's config and its schedule, and writing it
    out and reading it back gives the same config.
    """

    name = "config"

    def __init__(self) -> None:
        from dataclasses import fields

        self.keys = [f.name for f in fields(NodeConfig) if f.name != "peers"]
        self.peer_keys = ["name", "id", "address", "groups", "plaintext", "bogus"]
        self.peer_id = _identity(7).peer_id_hex

    def __call__(self, data: bytes) -> None:
        given = Input(data)
        if given.byte() % 2 == 0:
            raw = given.rest()
        else:
            raw = self._structured(given).encode("utf-8", "surrogatepass")
        try:
            config = parse_config(raw, "fuzz.toml")
        except ConfigError as exc:
            text = str(exc)
            assert "\n" not in text and text.startswith("fuzz.toml"), text
            return
        self._usable(config)

    def _structured(self, given: Input) -> str:
        lines = []
        for _ in range(given.below(6)):
            key = given.pick([*self.keys, "unknown_key"])
            lines.append(f"{key} = {given.pick(_VALUES)}")
        for _ in range(given.below(3)):
            lines.append("[[peers]]")
            for _ in range(given.below(6)):
                key = given.pick(self.peer_keys)
                if key == "id" and given.flag():
                    value = f'"{self.peer_id}"'
                else:
                    value = given.pick(_VALUES)
                lines.append(f"{key} = {value}")
        if given.flag():  # a random edit of the text
            text = "\n".join(lines)
            position = given.below(len(text) + 1)
            return text[:position] + given.rest().decode("latin-1") + text[position:]
        return "\n".join(lines)

    def _usable(self, config: NodeConfig) -> None:
        from mvds.daemon.node import engine_config
        from mvds.daemon.radio import RadioSchedule

        engine_config(config)
        if config.schedule:
            schedule = RadioSchedule.parse(config.schedule)
            up, remaining = schedule.state_at(12345.6)
            assert remaining > 0, (config.schedule, remaining)
        again = parse_config(render_config(config).encode("utf-8"), "fuzz.toml")
        assert again == config, (again, config)


# -- the control API -------------------------------------------------------------------


_CONTROL_OPS = ["ping", "status", "append", "append_many", "peers", "add_peer", "remove_peer",
                "share", "unshare", "join", "groups", "subscribe", "nope", ""]
_CONTROL_VALUES: list[Any] = [None, True, False, 0, -1, 1, 2**63, -(2**63) - 1, 2**64, 1.5,
                              float("inf"), float("nan"), "", "chat", "x" * 70, "a" * 64, "bob",
                              "127.0.0.1:1", "#", [], ["chat"], [1], [""], {}, {"a": 1},
                              base64.b64encode(b"hi").decode(), "!!!"]
_CONTROL_FIELDS = ["group", "text", "body_b64", "texts", "bodies_b64", "ephemeral", "name",
                   "peer_id", "address", "groups", "plaintext", "peer", "since", "id"]


def _control_request(given: Input) -> dict[str, Any]:
    """A JSON request with some op and some (often mistyped) fields."""
    request: dict[str, Any] = {"op": given.pick(_CONTROL_OPS)}
    for _ in range(given.below(6)):
        request[given.pick(_CONTROL_FIELDS)] = given.pick(_CONTROL_VALUES)
    return request


class ControlTarget:
    """A control connection's bytes straight into the protocol (no I/O).

    The bytes are cut into reads of a chosen size and fed to a
    ``LineFramer`` with a small maximum; every line goes to
    ``parse_request``.  The framer must give exactly the stream's lines up
    to the first one over the maximum; the parser a ``Request`` with a
    known op, or a ``RequestError`` whose message is one line and whose
    error reply is standard JSON (no NaN or Infinity, whatever the request
    held).  ``control_server`` runs the same requests through a real node.
    """

    name = "control"
    MAX_LINE = 512

    def __call__(self, data: bytes) -> None:
        from mvds.daemon import control_protocol as protocol

        given = Input(data)
        if given.byte() % 2 == 0:
            read = 1 + given.below(64)
            stream = given.rest()
        else:
            read = 4096
            stream = b"".join(
                json.dumps(_control_request(given)).encode() + b"\n" for _ in range(1 + given.below(4))
            )
        framer = protocol.LineFramer(self.MAX_LINE)
        lines: list[bytes] = []
        try:
            for start in range(0, len(stream), read):
                framer.feed(stream[start : start + read])
                lines.extend(bytes(line) for line in framer.lines())
        except protocol.LineTooLong:
            whole = stream.split(b"\n")
            long = [i for i, line in enumerate(whole) if len(line) > self.MAX_LINE]
            assert long, "refused a stream without a line over the maximum"
            assert lines == whole[: long[0]], lines
        else:
            assert lines == stream.split(b"\n")[:-1], lines
        for line in lines:
            try:
                request = protocol.parse_request(line)
            except protocol.RequestError as exc:
                message = str(exc)
                assert message and "\n" not in message, message
                protocol.loads_strict(protocol.encode_error(message, exc.request_id))
            else:
                assert request.op in protocol.OPS, request
                assert isinstance(request.args, dict)
                protocol.loads_strict(protocol.encode_reply({}, request.id))


class ControlServerTarget:
    """One request line to a running node's control server, over its real socket.

    A real Node (a node directory: SQLite store, config file that
    add_peer/join rewrite) and its ControlServer run in a trio thread.  Every
    non-blank line gets exactly one reply (a subscribe: a head, messages,
    ``caught_up``) that is a JSON object with ``ok`` true or false; an
    error is a string and never an internal error; the node keeps
    answering.
    """

    name = "control_server"

    def __init__(self) -> None:
        self._tmp = _scratch("control")
        self.path = Path(self._tmp.name) / "mvds.sock"
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"control server did not start: {self._error!r}")
        self._connect()
        peer = _identity(9).peer_id_hex
        self._roundtrip(json.dumps({"op": "add_peer", "name": "bob", "peer_id": peer,
                                    "address": "127.0.0.1:9", "groups": ["chat"]}).encode())
        self._roundtrip(b'{"op":"append","group":"chat","text":"first"}')

    def _serve(self) -> None:
        import trio


        from mvds.daemon.control import ControlServer
        from mvds.daemon.node import Node

        from mvds.daemon.setup import init_node_dir

        directory = Path(self._tmp.name) / "node"
        init_node_dir(directory, listen="127.0.0.1:0")

        async def main() -> None:
            # add_peer resolves addresses; fuzzed ones are often host names.
            # A million of them must not become a million DNS queries (slow,
            # and traffic off this machine): numeric addresses only, names
            # fail as "not known" at once, as they would offline.
            trio.socket.set_custom_hostname_resolver(_NumericResolver())
            # A node directory, as `mvds run` has: SQLite store, config file.
            async with Node.open(directory) as node:
                async with trio.open_nursery() as nursery:
                    await nursery.start(ControlServer(node, self.path).serve)
                    self._ready.set()

        try:
            trio.run(main)
        except BaseException as exc:  # reported by __init__ or the next request
            self._error = exc
            self._ready.set()

    def _connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(str(self.path))
        self.reader = self.sock.makefile("rb")

    def _read(self) -> dict[str, Any]:
        line = self.reader.readline()
        assert line.endswith(b"\n"), f"connection closed; server error: {self._error!r}"
        reply = json.loads(line)
        assert isinstance(reply, dict), reply
        return reply

    def _roundtrip(self, line: bytes) -> list[dict[str, Any]]:
        self.sock.sendall(line + b"\n")
        first = self._read()
        replies = [first]
        if first.get("event") == "subscribed":
            while replies[-1].get("event") != "caught_up":
                reply = self._read()
                assert reply.get("ok") is not False, f"subscription failed: {reply}"
                replies.append(reply)
        return replies

    def __call__(self, data: bytes) -> None:
        given = Input(data)
        if given.byte() % 2 == 0:
            line = given.rest().replace(b"\n", b" ")
        else:
            line = json.dumps(self._structured(given)).encode()
        if not line.strip():
            return
        if b"subscribe" in line and b"follow" in line:
            return  # a followed stream never ends; subscribe without follow is covered
        replies = self._roundtrip(line)
        first = replies[0]
        assert isinstance(first.get("ok"), bool), first
        if not first["ok"]:
            assert isinstance(first.get("error"), str), first
            assert not first["error"].startswith("internal error"), first
            assert len(replies) == 1

    def _structured(self, given: Input) -> dict[str, Any]:
        request = _control_request(given)
        if request["op"] == "subscribe":
            request.pop("follow", None)
        return request


class _NumericResolver:
    """A trio hostname resolver that never asks DNS (fuzzing only)."""

    async def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002
        return socket.getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    async def getnameinfo(self, sockaddr, flags):
        return socket.getnameinfo(sockaddr, flags | socket.NI_NUMERICHOST)


TARGETS: dict[str, Callable[[], Callable[[bytes], None]]] = {
    "envelope": EnvelopeTarget,
    "payload": PayloadTarget,
    "config": ConfigTarget,
    "control": ControlTarget,
    "control_server": ControlServerTarget,
}
