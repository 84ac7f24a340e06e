"""`mvds send`'s input rules against a real daemon: stdin only when asked,
no empty body by accident, a body's size checked before it is read whole,
and `--lines` naming the line it could not send and what it stored."""

from __future__ import annotations

import json

import pytest

from procs import Daemon, cli, make_network, stop_all, wait_until
from test_cli import one_line_error

RECEIVER: dict = {}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """Node a (max_body 1000) sends; b receives, so what a stored shows in b's tail."""
    paths = make_network(
        tmp_path_factory.mktemp("send"), "ab", [("a", "b")], settings={"a": {"max_body": 1000}}
    )
    daemons = [Daemon(paths["a"]).start(), Daemon(paths["b"]).start()]
    RECEIVER["b"], RECEIVER["a"] = daemons[1], daemons[0]
    try:
        yield paths["a"]
    finally:
        stop_all(daemons)


def stored_bodies(node) -> list[str]:
    """The bodies a stored so far, in order, as b received them."""
    stored = RECEIVER["a"].status()["messages_stored"]
    wait_until(lambda: RECEIVER["b"].status()["messages_stored"] >= stored, 20, what="b to catch up")
    tail = cli("tail", str(RECEIVER["b"].path), "--json", check=True).stdout.splitlines()
    return [json.loads(line).get("text") for line in tail]


def test_without_text_nothing_is_read_from_stdin(node):
    before = stored_bodies(node)
    error = one_line_error(cli("send", str(node), "chat", input=""))
    assert "no message" in error and "--stdin" in error
    assert stored_bodies(node) == before


def test_stdin_when_asked_and_empty_bodies_only_when_allowed(node):
    ok = cli("send", str(node), "chat", "--stdin", input="from stdin", check=True)
    assert len(ok.stdout.strip()) == 64
    assert "empty" in one_line_error(cli("send", str(node), "chat", "--stdin", input=""))
    assert "empty" in one_line_error(cli("send", str(node), "chat", ""))
    allowed = cli("send", str(node), "chat", "--stdin", "--allow-empty", input="", check=True)
    assert len(allowed.stdout.strip()) == 64
    assert stored_bodies(node)[-2:] == ["from stdin", ""]


def test_a_file_too_big_is_refused_by_its_size(node, tmp_path):
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(20 * 1024 * 1024)  # sparse: 20 MB that cost no disk
    error = one_line_error(cli("send", str(node), "chat", "--file", str(big)))
    assert f"{big} is 20971520 bytes; the maximum message body is 1000" in error


def test_lines_names_the_line_it_could_not_send_and_what_it_stored(node):
    before = len(stored_bodies(node))
    text = "first\nsecond\n" + "x" * 1001 + "\nfourth\n"
    result = cli("send", str(node), "chat", "--lines", input=text)
    error = one_line_error(result)
    assert "line 3 is longer than the maximum of 1000 bytes" in error
    assert "2 lines before it were stored" in error
    assert len(result.stdout.split()) == 2
    assert stored_bodies(node)[before:] == ["first", "second"]
    # An empty line is named the same way.
    result = cli("send", str(node), "chat", "--lines", input="a\n\nb\n")
    assert "line 2 is empty" in one_line_error(result)
