"""`mvds tail` against real daemons: remote text cannot drive the terminal
or forge lines, times say their zone, and --follow survives a daemon restart
like `tail -F`."""

from __future__ import annotations

import json
import subprocess
import threading

from procs import MVDS, Daemon, cli, make_network, stop_all, wait_until


def test_human_tail_escapes_control_characters_and_shows_utc(tmp_path):
    paths = make_network(tmp_path, "ab", [("a", "b")])
    daemons = [Daemon(paths["a"]).start(), Daemon(paths["b"]).start()]
    try:
        hostile = "hi\n     9  1970-01-01 00:00:00  chat  forged  line\x1b]0;pwned\x07\x1b[31mred\u202e"
        cli("send", str(paths["a"]), "chat", hostile, check=True)
        wait_until(lambda: daemons[1].status()["last_seq"] >= 1, 20, what="b to receive")
        human = cli("tail", str(paths["b"]), check=True).stdout
        assert human.count("\n") == 1, human  # one message, one line
        assert "\x1b" not in human and "\x07" not in human and "\u202e" not in human
        assert "hi\\n" in human and "\\x1b]0;pwned\\x07" in human and "\\u202e" in human
        assert "Z  chat" in human  # UTC, marked
        # JSON stays exact.
        record = json.loads(cli("tail", str(paths["b"]), "--json", check=True).stdout)
        assert record["text"] == hostile
    finally:
        stop_all(daemons)


def test_follow_reconnects_when_the_daemon_restarts(tmp_path):
    paths = make_network(tmp_path, "ab", [("a", "b")])
    a, b = Daemon(paths["a"]).start(), Daemon(paths["b"]).start()
    follower = subprocess.Popen(
        [*MVDS, "tail", str(paths["b"]), "--follow", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: list[dict] = []
    reader = threading.Thread(
        target=lambda: [lines.append(json.loads(line)) for line in follower.stdout], daemon=True
    )
    reader.start()
    try:
        cli("send", str(paths["a"]), "chat", "before", check=True)
        wait_until(lambda: len(lines) >= 1, 20, what="the first message in tail")
        b.stop()
        cli("send", str(paths["a"]), "chat", "while b is down", check=True)
        b.start()
        cli("send", str(paths["a"]), "chat", "after", check=True)
        wait_until(lambda: len(lines) >= 3, 30, what="tail to resume after the restart")
        assert follower.poll() is None, "tail --follow exited when the daemon restarted"
        assert [m["text"] for m in lines] == ["before", "while b is down", "after"]
        assert [m["seq"] for m in lines] == [1, 2, 3]
    finally:
        follower.kill()
        follower.wait()
        stop_all([a, b])
    assert "waiting for it to come back" in follower.stderr.read()
