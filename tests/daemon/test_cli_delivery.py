"""Delivery you can see, from the command line against real daemons: the
node's own messages in `tail --all` (one sequence with received ones),
`send --wait-ack`, `mvds groups`, `mvds leave`."""

from __future__ import annotations

import json

import pytest

from procs import Daemon, cli, make_network, stop_all, wait_until
from test_cli import one_line_error


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """a <-> b <-> c sharing "chat"; c is stopped (never started)."""
    paths = make_network(
        tmp_path_factory.mktemp("delivery"), "abc", [("a", "b"), ("b", "c")],
        settings={n: {"epoch_ms": 50} for n in "abc"},
    )
    daemons = {n: Daemon(paths[n]).start() for n in "ab"}
    try:
        yield paths, daemons
    finally:
        stop_all(daemons.values())


def tail_json(path, *extra):
    out = cli("tail", str(path), "--json", *extra, check=True).stdout.splitlines()
    return [json.loads(line) for line in out]


def test_tail_all_shows_own_messages_in_the_one_sequence(net):
    paths, daemons = net
    mine = cli("send", str(paths["a"]), "chat", "from a", check=True).stdout.strip()
    theirs = cli("send", str(paths["b"]), "chat", "from b", check=True).stdout.strip()
    wait_until(lambda: any(m["id"] == theirs for m in tail_json(paths["a"])), 20, what="b's message at a")
    received = tail_json(paths["a"])
    everything = tail_json(paths["a"], "--all")
    assert [m["id"] for m in received] == [theirs], "own messages only with --all"
    assert [m["id"] for m in everything] == [mine, theirs]
    assert [m["seq"] for m in everything] == [1, 2]
    assert everything[0]["own"] is True and "via" not in everything[0]
    assert everything[1]["via"] == everything[1]["from"], "from: the deprecated name of via"
    human = cli("tail", str(paths["a"]), "--all", check=True).stdout.splitlines()
    assert "(own)" in human[0] and "from a" in human[0]
    status = daemons["a"].status()
    assert status["last_seq"] == 2 and status["messages_stored"] == 2
    # The stopped node's store reads the same way (no daemon).
    daemons["a"].stop()
    try:
        assert [m["id"] for m in tail_json(paths["a"], "--all")] == [mine, theirs]
    finally:
        daemons["a"] = Daemon(paths["a"]).start()


def test_send_wait_ack_returns_once_peers_hold_the_message(net):
    paths, _ = net
    # b shares chat with a (running) and c (stopped).
    one = cli("send", str(paths["b"]), "chat", "ack me", "--wait-ack", "1", check=True)
    assert len(one.stdout.strip()) == 64
    named = cli("send", str(paths["b"]), "chat", "ack a", "--wait-ack", "a", check=True)
    assert len(named.stdout.strip()) == 64
    everyone = cli("send", str(paths["b"]), "chat", "ack all", "--wait-ack", "--ack-timeout", "1")
    assert everyone.returncode == 1 and len(everyone.stdout.strip()) == 64, "the id is printed first"
    error = one_line_error(everyone)
    assert "1 of 2" in error and "waiting for c" in error
    c_only = one_line_error(cli("send", str(paths["b"]), "chat", "x", "--wait-ack", "c",
                                "--ack-timeout", "0.5"))
    assert "0 of 1" in c_only and "waiting for c" in c_only
    assert "unknown peer 'zed'" in one_line_error(
        cli("send", str(paths["b"]), "chat", "x", "--wait-ack", "zed"))
    lines = cli("send", str(paths["a"]), "chat", "--lines", "--wait-ack", input="l1\nl2\n", check=True)
    assert len(lines.stdout.split()) == 2


def test_groups_lists_and_leave_stops_a_group(net, tmp_path):
    paths, daemons = net
    listing = cli("groups", str(paths["b"]), "--json", check=True).stdout
    (chat,) = json.loads(listing)["groups"]
    assert chat["group"] == "chat" and sorted(chat["peers"]) == ["a", "c"]
    assert len(chat["group_id"]) == 64
    human = cli("groups", str(paths["b"]), check=True).stdout
    assert "chat" in human and chat["group_id"] in human and "a, c" in human
    # Stopped node c: from its config.
    assert json.loads(cli("groups", str(paths["c"]), "--json", check=True).stdout)["groups"][0]["peers"] == ["b"]
    # Leave on a stopped node edits the file; on a running one goes through the daemon.
    cli("leave", str(paths["c"]), "chat", check=True)
    assert json.loads(cli("groups", str(paths["c"]), "--json", check=True).stdout)["groups"] == []
    assert "not a member" in one_line_error(cli("leave", str(paths["c"]), "chat"))
    cli("join", str(paths["a"]), "extra", check=True)
    cli("leave", str(paths["a"]), "extra", check=True)
    assert [g["group"] for g in daemons["a"].request("groups")["groups"]] == ["chat"]
    assert "not a member" in one_line_error(cli("leave", str(paths["a"]), "nope"))
