"""The `mvds` command line against real daemon processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat

import pytest

from procs import Daemon, cli, make_network, stop_all, wait_until


def one_line_error(result) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mvds: ")
    return lines[0]


def test_init_creates_identity_and_config(tmp_path):
    node = tmp_path / "alice"
    result = cli("init", str(node), "--listen", "127.0.0.1:7471")
    assert result.returncode == 0, result.stderr
    peer_id = result.stdout.strip()
    assert len(peer_id) == 64 and int(peer_id, 16) >= 0
    assert stat.S_IMODE(os.stat(node / "identity.key").st_mode) == 0o600
    assert 'listen = "127.0.0.1:7471"' in (node / "mvds.toml").read_text()
    assert cli("id", str(node)).stdout.strip() == peer_id
    assert "already a node directory" in one_line_error(cli("init", str(node)))


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["id", "{missing}"], "does not exist"),
        (["send", "{node}", "chat", "hi"], "unknown group 'chat'"),
        (["peer", "add", "{node}", "bob", "xyz", "127.0.0.1:1"], "64 hex characters"),
        (["peer", "add", "{node}", "bob", "ab" * 32, "nowhere"], "bad address"),
        (["peer", "remove", "{node}", "ghost"], "no peer named 'ghost'"),
        (["tail", "{node}", "--follow"], "needs the running daemon"),
        (["run", "{missing}"], "does not exist"),
        (["run", "{node}", "--loss", "1.5"], "loss"),
        (["run", "{node}", "--schedule", "sometimes"], "schedule"),
        (["send", "{node}", "chat", "--file", "{missing}"], None),
        (["send", "{node}", "chat", "hi", "--lines"], "not several"),
        # An empty group name is bad input, not an internal error.
        (["send", "{node}", "", "hi"], "bad group ''"),
        (["share", "{node}", "", "bob"], "bad group ''"),
        (["unshare", "{node}", "", "bob"], "bad group ''"),
        (["join", "{node}", ""], "bad group ''"),
        (["tail", "{node}", "--group", ""], "bad group ''"),
        (["peer", "add", "{node}", "bob", "ab" * 32, "127.0.0.1:1", "--group", ""], "bad group ''"),
    ],
)
def test_bad_input_gets_one_clear_line(tmp_path, args, fragment):
    node = tmp_path / "n"
    cli("init", str(node), check=True)
    filled = [a.format(node=node, missing=tmp_path / "missing") for a in args]
    line = one_line_error(cli(*filled))
    if fragment:
        assert fragment in line


@pytest.mark.parametrize(
    "args, command, fragment",
    [
        (["send"], "mvds send", "required: DIR, GROUP"),
        (["send", "{node}", "chat", "hi", "there"], "mvds send", "unrecognized arguments: there"),
        (["run", "{node}", "--loss", "lots"], "mvds run", "invalid float value: 'lots'"),
        (["run", "{node}", "--mode", "turbo"], "mvds run", "invalid choice: 'turbo'"),
        (["peer", "add", "{node}"], "mvds peer add", "required: NAME"),
        (["id", "{node}", "extra"], "mvds id", "unrecognized arguments: extra"),
        (["frobnicate"], "mvds", "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors_are_one_line_too(tmp_path, args, command, fragment):
    node = tmp_path / "n"
    cli("init", str(node), check=True)
    result = cli(*[a.format(node=node) for a in args])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{command}: error: ") and fragment in lines[0]
    assert lines[0].endswith(f"(see {command} --help)")


def test_ports_in_use_are_one_line_naming_the_address(tmp_path):
    node = tmp_path / "n"
    cli("init", str(node), check=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        taken = "127.0.0.1:%d" % udp.getsockname()[1]
        line = one_line_error(cli("run", str(node), "--listen", taken))
        assert line == f"mvds: cannot listen on {taken}: Address already in use"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        taken = "127.0.0.1:%d" % tcp.getsockname()[1]
        line = one_line_error(cli("run", str(node), "--listen", "127.0.0.1:0", "--metrics", taken))
        assert line == f"mvds: cannot serve metrics on {taken}: Address already in use"
    assert not (node / "mvds.sock").exists()


def test_malformed_config_is_reported_in_one_line(tmp_path):
    node = tmp_path / "n"
    cli("init", str(node), check=True)
    (node / "mvds.toml").write_text("listen = [unclosed\n")
    assert "invalid TOML" in one_line_error(cli("run", str(node)))
    (node / "mvds.toml").write_text('listen = "127.0.0.1:1"\nmode = "turbo"\n')
    assert "mode" in one_line_error(cli("status", str(node)))
    (node / "mvds.toml").write_text('listen = "127.0.0.1:1"\nwhatever = 1\n')
    assert "unknown setting 'whatever'" in one_line_error(cli("run", str(node)))


def test_send_tail_status_through_two_daemons(tmp_path):
    paths = make_network(tmp_path, "ab", [("a", "b")])
    a, b = Daemon(paths["a"]).start(), Daemon(paths["b"]).start()
    try:
        assert "already running" in one_line_error(cli("run", str(paths["a"])))
        sock = paths["a"] / "mvds.sock"
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        # Nothing in a node directory is readable by other users, whatever the umask.
        for name in ("identity.key", "mvds.toml", "mvds.db", "mvds.db-wal", "mvds.db-shm", "mvds.lock"):
            assert stat.S_IMODE(os.stat(paths["a"] / name).st_mode) == 0o600, name

        first = cli("send", str(paths["a"]), "chat", "hello from a", check=True).stdout.strip()
        assert len(first) == 64
        payload = tmp_path / "blob.bin"
        payload.write_bytes(bytes(range(256)))
        blob = cli("send", str(paths["a"]), "chat", "--file", str(payload), check=True).stdout.strip()
        lines = cli("send", str(paths["a"]), "chat", "--lines", input="one\ntwo\nthree\n", check=True)
        line_ids = lines.stdout.split()
        assert len(line_ids) == 3 and len(set(line_ids)) == 3

        wait_until(lambda: b.status()["last_seq"] >= 5, 20, what="b to receive 5 messages")
        tail = cli("tail", str(paths["b"]), "--json", check=True)
        records = [json.loads(line) for line in tail.stdout.splitlines()]
        assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
        assert {r["id"] for r in records} == {first, blob, *line_ids}
        by_id = {r["id"]: r for r in records}
        assert by_id[first]["text"] == "hello from a"
        assert "text" not in by_id[blob]  # not UTF-8: body_b64 only
        assert set(by_id[first]) >= {"seq", "group", "id", "timestamp", "body_b64", "text"}
        since = cli("tail", str(paths["b"]), "--json", "--since", "3", check=True)
        assert [json.loads(line)["seq"] for line in since.stdout.splitlines()] == [4, 5]

        human = cli("status", str(paths["a"]), check=True).stdout
        assert "b" in human and "reachable" in human
        status = json.loads(cli("status", str(paths["a"]), "--json", check=True).stdout)
        peer = status["peers"][0]
        assert peer["name"] == "b" and peer["reachable"] is True
        assert set(peer["pending"]) == {"offer", "request", "message"}
        for key in ("datagrams_in", "datagrams_out", "bytes_in", "bytes_out", "retransmissions"):
            assert key in peer
        assert 0 < peer["rtt_ms"] < 5000, "b ACKed a's messages: a measured the round trip"
        assert "rtt" in human
        assert "drops" in status

        assert a.stop(signal.SIGTERM) == 0
        assert b.stop(signal.SIGINT) == 0
        # The store outlives the daemon: tail and status still answer.
        offline = cli("tail", str(paths["b"]), "--json", check=True)
        assert len(offline.stdout.splitlines()) == 5
        assert json.loads(cli("status", str(paths["b"]), "--json", check=True).stdout)["running"] is False
        assert "not running" in one_line_error(cli("send", str(paths["a"]), "chat", "x"))
    finally:
        stop_all([a, b])


def test_peer_add_while_running_takes_effect_at_once(tmp_path):
    pa, pb = tmp_path / "a", tmp_path / "b"
    id_a = cli("init", str(pa), check=True).stdout.strip()
    id_b = cli("init", str(pb), check=True).stdout.strip()
    a, b = Daemon(pa).start(), Daemon(pb).start()
    try:
        listen_a = a.status()["listen"]
        listen_b = b.status()["listen"]
        cli("peer", "add", str(pa), "b", id_b, listen_b, "--group", "chat", check=True)
        cli("peer", "add", str(pb), "a", id_a, listen_a, "--group", "chat", check=True)
        assert 'name = "b"' in (pa / "mvds.toml").read_text()
        cli("send", str(pa), "chat", "live config", check=True)
        wait_until(lambda: b.status()["last_seq"] == 1, 20, what="delivery")
        listing = cli("peer", "list", str(pa), check=True).stdout
        assert "b" in listing and id_b in listing
    finally:
        stop_all([a, b])


def test_a_directory_too_deep_for_the_control_socket_is_one_line(tmp_path):
    node = tmp_path / ("n" * 110)
    cli("init", str(node), check=True)
    line = one_line_error(cli("run", str(node)))
    assert "too long a path for the control socket" in line


def test_main_turns_an_interrupt_inside_an_exception_group_into_130(monkeypatch, tmp_path, capsys):
    """trio wraps a Ctrl-C that lands inside a nursery in a group; main must
    not print it as a traceback (the demo's bug)."""
    import mvds.cli
    import mvds.cli.id

    def interrupted(args):
        raise BaseExceptionGroup("nursery", [KeyboardInterrupt()])

    monkeypatch.setattr(mvds.cli.id, "run", interrupted)
    assert mvds.cli.main(["id", str(tmp_path)]) == 130
    assert capsys.readouterr().err == ""

    def broken(args):
        raise BaseExceptionGroup("nursery", [ValueError("boom")])

    monkeypatch.setattr(mvds.cli.id, "run", broken)
    assert mvds.cli.main(["id", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mvds: unexpected error: ValueError: boom")
