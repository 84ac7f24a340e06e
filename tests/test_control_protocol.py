"""The control protocol without I/O (mvds/daemon/control_protocol.py).

The framer, the request parser and the encoders are tested here directly,
without a socket; tests/daemon/test_control_limits.py runs the limits
against a real daemon.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mvds.daemon import control_protocol as protocol
from mvds.daemon.control_protocol import LineFramer, LineTooLong, Request, RequestError, parse_request


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


def _frame(chunks: list[bytes], max_line: int | None = None) -> list[bytes]:
    framer = LineFramer(max_line)
    out = []
    for chunk in chunks:
        framer.feed(chunk)
        out.extend(bytes(line) for line in framer.lines())
    return out


@settings(max_examples=300)
@given(
    data=st.binary(max_size=600).map(lambda b: b.replace(b"\x00", b"\n")),
    cuts=st.lists(st.integers(0, 10_000), max_size=40),
)
def test_any_chunking_gives_the_same_lines(data, cuts):
    """However a stream is cut into reads, the framer yields exactly the
    stream's complete lines (the bytes after the last newline wait)."""
    expected = data.split(b"\n")[:-1]
    assert _frame(_chunked(data, cuts)) == expected
    assert _frame([data]) == expected
    assert _frame([bytes([b]) for b in data]) == expected


@settings(max_examples=200)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=20),
    limit=st.integers(1, 30),
    cuts=st.lists(st.integers(0, 1000), max_size=20),
)
def test_the_maximum_holds_whatever_the_chunking(lines, limit, cuts):
    """Lines up to the maximum come out; the first longer one raises, and
    never after the buffer held more than the maximum plus one chunk."""
    data = b"".join(line + b"\n" for line in lines)
    chunks = _chunked(data, cuts)
    framer = LineFramer(limit)
    out = []
    try:
        for chunk in chunks:
            framer.feed(chunk)
            assert framer.pending <= limit + 1 + len(chunk)
            out.extend(bytes(line) for line in framer.lines())
    except LineTooLong as exc:
        assert exc.limit == limit
        first_long = next(i for i, line in enumerate(lines) if len(line) > limit)
        assert out == lines[:first_long]
        assert framer.pending == 0  # the buffer is released at once
    else:
        assert all(len(line) <= limit for line in lines)
        assert out == lines


def test_a_long_line_is_refused_before_its_newline():
    framer = LineFramer(10)
    framer.feed(b"x" * 10)
    assert framer.next_line() is None  # exactly the maximum is allowed
    framer.feed(b"x")
    with pytest.raises(LineTooLong):
        framer.next_line()


def test_each_byte_is_searched_once():
    """Linear time: the framer resumes its newline search where it stopped
    (the old server searched the whole buffer again for every chunk, 89 s
    of CPU for a 256 MiB line).  Counted, not timed: the searches of a
    line fed in 1,000 chunks cover each byte once."""

    class CountingBuffer(bytearray):
        searched = 0

        def find(self, sub, start=0, *args):  # type: ignore[override]
            CountingBuffer.searched += len(self) - start
            return bytearray.find(self, sub, start, *args)

    framer = LineFramer(1 << 20)
    framer._buffer = CountingBuffer()
    for _ in range(1000):
        framer.feed(b"y" * 100)
        assert framer.next_line() is None
    framer.feed(b"\n")
    assert len(framer.next_line()) == 100_000
    assert CountingBuffer.searched <= 100_001


# -- requests ----------------------------------------------------------------------------


def test_parse_request_gives_checked_arguments():
    request = parse_request(b'{"op":"append","group":"chat","body_b64":"aGk=","id":[1]}')
    assert request == Request("append", {"group": "chat", "body": b"hi", "ephemeral": False}, [1])
    assert parse_request(b'{"op":"subscribe"}').args == {"since": 0, "group": None, "follow": False, "own": False}
    assert parse_request(b'{"op":"ping"}') == Request("ping", {}, None)
    assert parse_request(b'{"op":"invite","groups":["chat"]}').args == {
        "groups": ["chat"], "expires": 600.0, "name": None, "addresses": None}
    assert parse_request(b'{"op":"accept","code":"mvds1-x","timeout":5}').args == {
        "code": "mvds1-x", "name": None, "timeout": 5.0}


@pytest.mark.parametrize(
    "line, error",
    [
        (b"not json", "not JSON"),
        (b"[1]", "a request is a JSON object"),
        (b'{"id": 3}', "missing field 'op'"),
        (b'{"op": "nope", "id": 3}', "unknown op 'nope'"),
        (b'{"op": "append", "group": "chat", "text": 1, "id": 3}', "field 'text' must be str"),
        (b'{"op": "subscribe", "since": true, "id": 3}', "field 'since' must be a number"),
        (b'{"op": "subscribe", "since": -1, "id": 3}', "'since' must be between"),
        (b'{"op": "add_peer", "name": "a", "peer_id": "b", "address": "c", "groups": [""], "id": 3}',
         "'groups' must be a list of group names"),
        (b'{"op": "append_many", "group": "g", "texts": [1], "id": 3}', "'texts' must be a list"),
        (b'{"op": "invite", "expires": 0, "id": 3}', "'expires' must be between"),
        (b'{"op": "invite", "addresses": [], "id": 3}', "'addresses' must be a list"),
        (b'{"op": "accept", "id": 3}', "missing field 'code'"),
        (b'{"op": "accept", "code": "x", "timeout": 4000, "id": 3}', "'timeout' must be between"),
        (b"\xff", "not JSON"),
        (b"[" * 100_000, "not JSON"),
    ],
)
def test_malformed_requests_raise_with_the_reply_message(line, error):
    with pytest.raises(RequestError) as caught:
        parse_request(line)
    assert error in str(caught.value)
    if b'"id": 3' in line:
        assert caught.value.request_id == 3  # echoed in the error reply


@pytest.mark.parametrize(
    "line",
    [b'{"op":"ping","id":NaN}', b'{"op":"ping","id":Infinity}', b'{"op":"ping","id":-Infinity}',
     b'{"op":"ping","id":1e400}', b'{"op":"subscribe","since":-1e999}'],
)
def test_non_standard_json_is_refused(line):
    """Regression: these parsed (to nan and inf) and an id holding one was
    echoed back as non-standard JSON."""
    with pytest.raises(RequestError) as caught:
        parse_request(line)
    assert str(caught.value).startswith("not JSON: ")
    assert "standard JSON" in str(caught.value) or "out of range" in str(caught.value)


def test_replies_are_standard_json_lines():
    assert protocol.encode_reply({"x": 1}, request_id="a") == b'{"x":1,"ok":true,"id":"a"}\n'
    assert json.loads(protocol.encode_error("bad", 7)) == {"ok": False, "error": "bad", "id": 7}
    assert protocol.encode_subscribed(None) == b'{"ok":true,"event":"subscribed"}\n'
    assert protocol.encode_caught_up(4) == b'{"event":"caught_up","seq":4}\n'
    assert protocol.encode_event_lines(["{}", "{}"]) == b"{}\n{}\n"
    with pytest.raises(ValueError):
        protocol.encode_reply({"x": float("nan")})
    assert protocol.decode_reply(b'{"ok":true}') == {"ok": True}
    with pytest.raises(ValueError):
        protocol.decode_reply(b"[]")
