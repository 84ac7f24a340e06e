"""The control API's protocol without I/O: framing, requests, replies.

The pattern is h11's: this module never touches a socket.  Bytes go into a
:class:`LineFramer`, whole lines come out; :func:`parse_request` turns a
line into a validated :class:`Request` or raises :class:`RequestError` with
the one-line message the client gets; ``encode_*`` build the reply and
event lines.  The server (``control.py``) and both clients
(``control_client.py``, ``async_client.py``) are thin loops over it, and the
fuzz target calls it directly.  docs/CONTROL_API.md is the specification.

JSON is strict both ways: ``NaN``, ``Infinity`` and numbers too large for a
float (``1e400``) are refused in a request, and a reply is never written
with them, so every line the daemon writes is standard JSON any language
can read.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from mvds.ids import INT64_MAX

MAX_BATCH = 100_000
"""Most bodies in one append_many."""

READ_SIZE = 65536
"""Bytes asked of the socket per read, by the server and the clients."""


# -- framing --------------------------------------------------------------------------


class LineTooLong(Exception):
    """A line (without its newline) is longer than the framer's maximum."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"line over {limit} bytes")
        self.limit = limit


class LineFramer:
    """Splits a byte stream into lines ending in ``\\n``, each at most
    ``max_line`` bytes (None: no maximum).

    Linear time: each byte is searched for a newline once, however the
    stream is chunked (the scan resumes where the last one stopped), and
    consumed bytes are dropped from the front of the buffer only once they
    are at least half of it.  A line over the maximum is refused as soon as
    that many bytes are pending, without waiting for its newline, so the
    buffer never holds more than ``max_line`` plus one chunk.
    """

    __slots__ = ("max_line", "_buffer", "_start", "_scanned")

    def __init__(self, max_line: int | None = None) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._start = 0  # where the next line begins
        self._scanned = 0  # no newline in _buffer[_start:_scanned]

    @property
    def pending(self) -> int:
        """Bytes received that are not yet part of a returned line."""
        return len(self._buffer) - self._start

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        buffer = self._buffer
        start = self._start
        if start:
            if start == len(buffer):
                buffer.clear()
                self._start = self._scanned = 0
            elif 2 * start >= len(buffer):
                del buffer[:start]
                self._scanned -= start
                self._start = 0
        buffer += data

    def next_line(self) -> bytes | None:
        """The next whole line without its newline, or None until more bytes
        come; raises :class:`LineTooLong` (then the stream is unusable).

        The line is bytes-like: a ``bytearray`` when it was all that was
        pending (handed over rather than copied), ``bytes`` otherwise."""
        buffer = self._buffer
        newline = buffer.find(b"\n", self._scanned)
        limit = self.max_line
        if newline < 0:
            self._scanned = len(buffer)
            if limit is not None and len(buffer) - self._start > limit:
                self._fail(limit)
            return None
        start = self._start
        if limit is not None and newline - start > limit:
            self._fail(limit)
        if start == 0 and newline == len(buffer) - 1:
            # The line is everything pending (a client waiting for its
            # reply): hand over the buffer itself, no copy, so a line of
            # many MiB is held once, not twice, while it is parsed.
            del buffer[newline:]
            self._buffer = bytearray()
            self._scanned = 0
            return buffer  # type: ignore[return-value]
        with memoryview(buffer) as view:
            line = view[start:newline].tobytes()
        self._start = self._scanned = newline + 1
        return line

    def lines(self) -> Iterator[bytes]:
        """Every whole line received so far, one at a time (then
        :class:`LineTooLong` where a line over the maximum begins)."""
        while (line := self.next_line()) is not None:
            yield line

    def _fail(self, limit: int) -> None:
        self._buffer = bytearray()  # the memory goes now, not with the connection
        self._start = self._scanned = 0
        raise LineTooLong(limit)


# -- JSON -------------------------------------------------------------------------------


class RequestError(Exception):
    """A malformed request: its message is the ``error`` of the reply.

    ``request_id`` is the request's ``id`` when it got far enough to have
    one, so the error reply can echo it.
    """

    def __init__(self, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.request_id = request_id


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not standard JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


_strict_decoder = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)

_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
"""One compact JSON line; refuses NaN and infinities rather than writing
non-standard JSON.  One encoder for the module: ``json.dumps`` with options
builds a new encoder per call, which a busy stream would pay per message."""


def loads_strict(line: bytes | str) -> Any:
    """Standard JSON only (no NaN, Infinity, or floats that overflow);
    raises ValueError otherwise."""
    if isinstance(line, (bytes, bytearray)):
        line = line.decode("utf-8")
    return _strict_decoder.decode(line)


# -- requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """A valid request: its op, its id (None if it had none) and its
    arguments, checked and converted (bodies decoded from base64)."""

    op: str
    args: dict[str, Any] = field(default_factory=dict)
    id: Any = None


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


def _no_args(request: dict[str, Any]) -> dict[str, Any]:
    return {}


def _append(request: dict[str, Any]) -> dict[str, Any]:
    group = _field(request, "group", str)
    body = _body(request)
    return {"group": group, "body": body, "ephemeral": _field(request, "ephemeral", bool, False)}


def _append_many(request: dict[str, Any]) -> dict[str, Any]:
    group = _field(request, "group", str)
    return {"group": group, "bodies": _bodies(request)}


def _subscribe(request: dict[str, Any]) -> dict[str, Any]:
    since = _field(request, "since", int, 0)
    if not 0 <= since <= INT64_MAX:
        raise RequestError(f"'since' must be between 0 and {INT64_MAX}")
    return {
        "since": since,
        "group": _field(request, "group", str, None),
        "follow": _field(request, "follow", bool, False),
        "own": _field(request, "own", bool, False),
    }


def _add_peer(request: dict[str, Any]) -> dict[str, Any]:
    groups = _field(request, "groups", list, [])
    if not all(isinstance(g, str) and g for g in groups):
        raise RequestError("'groups' must be a list of group names")
    return {
        "name": _field(request, "name", str),
        "peer_id": _field(request, "peer_id", str),
        "address": _field(request, "address", str),
        "groups": groups,
        "plaintext": _field(request, "plaintext", bool, False),
    }


def _name(request: dict[str, Any]) -> dict[str, Any]:
    return {"name": _field(request, "name", str)}


def _group_peer(request: dict[str, Any]) -> dict[str, Any]:
    return {"group": _field(request, "group", str), "peer": _field(request, "peer", str)}


def _group(request: dict[str, Any]) -> dict[str, Any]:
    return {"group": _field(request, "group", str)}


def _wait_ack(request: dict[str, Any]) -> dict[str, Any]:
    message_id = _field(request, "id", str)
    if len(message_id) != 64 or any(c not in "0123456789abcdefABCDEF" for c in message_id):
        raise RequestError("'id' must be a message id (64 hex characters)")
    count = _field(request, "count", int, None)
    peers = _field(request, "peers", list, None)
    if count is not None and peers is not None:
        raise RequestError("give 'count' or 'peers', not both")
    if peers is not None and not (peers and all(isinstance(p, str) and p for p in peers)):
        raise RequestError("'peers' must be a list of peer names")
    timeout = _field(request, "timeout", (int, float), 30.0)
    if not 0 < timeout <= 86400:
        raise RequestError("'timeout' must be between 0 and 86400 seconds")
    return {"id": message_id, "count": count, "peers": peers, "timeout": float(timeout)}


def _invite(request: dict[str, Any]) -> dict[str, Any]:
    groups = _field(request, "groups", list, [])
    if not all(isinstance(g, str) and g for g in groups):
        raise RequestError("'groups' must be a list of group names")
    addresses = _field(request, "addresses", list, None)
    if addresses is not None and not (addresses and all(isinstance(a, str) and a for a in addresses)):
        raise RequestError("'addresses' must be a list of HOST:PORT strings")
    expires = _field(request, "expires", (int, float), 600.0)
    if not 0 < expires <= 7 * 86400:
        raise RequestError("'expires' must be between 0 and 604800 seconds")
    return {"groups": groups, "expires": float(expires), "name": _field(request, "name", str, None),
            "addresses": addresses}


def _accept(request: dict[str, Any]) -> dict[str, Any]:
    timeout = _field(request, "timeout", (int, float), 30.0)
    if not 0 < timeout <= 3600:
        raise RequestError("'timeout' must be between 0 and 3600 seconds")
    return {"code": _field(request, "code", str), "name": _field(request, "name", str, None),
            "timeout": float(timeout)}


_OPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "ping": _no_args,
    "status": _no_args,
    "append": _append,
    "append_many": _append_many,
    "subscribe": _subscribe,
    "peers": _no_args,
    "add_peer": _add_peer,
    "remove_peer": _name,
    "share": _group_peer,
    "unshare": _group_peer,
    "join": _group,
    "groups": _no_args,
    "leave": _group,
    "wait_ack": _wait_ack,
    "invite": _invite,
    "accept": _accept,
}

OPS = frozenset(_OPS)
"""Every op the control API knows."""


def parse_request(line: bytes) -> Request:
    """One request line (without its newline) to a :class:`Request`.

    Raises :class:`RequestError` with the message for the error reply: not
    (standard) JSON, not an object, no or an unknown ``op``, a missing or
    mistyped field.
    """
    try:
        request = loads_strict(line)
    except UnicodeDecodeError as exc:
        raise RequestError(f"not JSON: {exc}") from None
    except RecursionError:
        raise RequestError("not JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN, 1e400, a 5,000-digit integer
        raise RequestError(f"not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise RequestError("a request is a JSON object")
    request_id = request.get("id")
    try:
        op = _field(request, "op", str)
        check = _OPS.get(op)
        if check is None:
            raise RequestError(f"unknown op {op!r} (known: {', '.join(sorted(_OPS))})")
        return Request(op, check(request), request_id)
    except RequestError as exc:
        exc.request_id = request_id
        raise


# -- replies and events -----------------------------------------------------------------


def encode(obj: dict[str, Any]) -> bytes:
    """One JSON object as a line (standard JSON: raises ValueError for NaN)."""
    return _encode(obj).encode() + b"\n"


def encode_reply(result: dict[str, Any], request_id: Any = None) -> bytes:
    """A successful reply: the result fields, ``ok`` true, the request's id."""
    reply = dict(result)
    reply["ok"] = True
    if request_id is not None:
        reply["id"] = request_id
    return encode(reply)


def encode_error(message: str, request_id: Any = None) -> bytes:
    """An error reply: ``{"ok": false, "error": message}`` (and the id)."""
    reply: dict[str, Any] = {"ok": False, "error": message}
    if request_id is not None:
        reply["id"] = request_id
    return encode(reply)


def encode_subscribed(request_id: Any = None) -> bytes:
    """The head of a subscription stream."""
    head: dict[str, Any] = {"ok": True, "event": "subscribed"}
    if request_id is not None:
        head["id"] = request_id
    return encode(head)


def encode_caught_up(seq: int) -> bytes:
    return encode({"event": "caught_up", "seq": seq})


def encode_event_lines(lines: Iterable[str]) -> bytes:
    """Message events already encoded one per line (``event_line``), as one
    write: a busy subscriber costs one syscall per batch."""
    return ("\n".join(lines) + "\n").encode()


def line_too_long(limit: int) -> bytes:
    return encode_error(f"request line over {limit} bytes (control_max_line)")


def too_many_clients(limit: int) -> bytes:
    return encode_error(f"too many control connections (control_max_clients = {limit})")


def decode_reply(line: bytes) -> dict[str, Any]:
    """A reply or event line from the daemon (a client's side)."""
    reply = loads_strict(line)
    if not isinstance(reply, dict):
        raise ValueError("a reply is a JSON object")
    return reply
