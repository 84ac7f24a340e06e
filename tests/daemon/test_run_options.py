"""`mvds run` options given on the command line (not in mvds.toml), `tail
--follow`, `send --ephemeral`, the --metrics HTTP endpoint and the control
API's answers to bad groups, all against real daemon processes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

from mvds.daemon.control_client import ControlError
from procs import MVDS, Daemon, cli, make_network, stop_all, wait_until


def stored_ids(daemon: Daemon) -> set[str]:
    """Ids of the messages the daemon received (its own are not in the stream)."""
    with daemon.client() as client:
        ids = set()
        for event in client.stream("subscribe", since=0):
            if event["event"] == "caught_up":
                return ids
            ids.add(event["message"]["id"])
    return ids


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tail:
    """`mvds tail DIR --follow --json` as a child process, read line by line."""

    def __init__(self, path) -> None:
        self.process = subprocess.Popen(
            [*MVDS, "tail", str(path), "--follow", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def next(self) -> dict:
        line = self.process.stdout.readline()
        assert line, f"tail ended: {self.process.stderr.read()}"
        return json.loads(line)


def test_tail_follow_ephemeral_send_interactive_mode_and_metrics(tmp_path):
    paths = make_network(tmp_path, "ab", [("a", "b")])
    metrics = f"127.0.0.1:{free_tcp_port()}"
    a = Daemon(paths["a"], "--mode", "interactive", "--epoch-ms", "40", "--metrics", metrics).start()
    b = Daemon(paths["b"]).start()
    tail = None
    try:
        status = a.status()
        assert (status["mode"], status["epoch_ms"]) == ("interactive", 40)
        tail = Tail(paths["b"])
        first = cli("send", str(paths["a"]), "chat", "first", check=True).stdout.strip()
        got = tail.next()
        assert (got["seq"], got["id"], got["text"]) == (1, first, "first")
        # Options after TEXT: argparse alone would reject this order.
        cli("send", str(paths["a"]), "chat", "typing", "--ephemeral", check=True)
        got = tail.next()
        assert got["seq"] is None and got["ephemeral"] is True and got["text"] == "typing"
        second = cli("send", str(paths["a"]), "chat", "--ephemeral", "--", "-second", check=False)
        assert second.returncode == 0, second.stderr
        assert tail.next()["text"] == "-second"
        third = cli("send", str(paths["a"]), "chat", "third", check=True).stdout.strip()
        got = tail.next()
        assert (got["seq"], got["id"]) == (2, third)

        tail.process.send_signal(signal.SIGINT)
        _, err = tail.process.communicate(timeout=15)
        assert tail.process.returncode == 130 and "Traceback" not in err

        assert b.status()["messages_stored"] == 2, "ephemeral messages are never stored"
        # Interactive mode: a offered, b requested, before any message moved.
        assert b.status()["engine"]["offers_in"] > 0
        assert a.status()["engine"]["requests_in"] > 0

        with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = response.read().decode()
        assert "mvds_messages_stored 2" in text
        assert 'mvds_peer_reachable{peer="b"} 1' in text
        assert "# TYPE mvds_datagrams_out_total counter" in text
        # Only GET /metrics: no other path, not a prefix, not another method.
        for path, method, code in [("/other", "GET", 404), ("/", "GET", 404),
                                   ("/metricsx", "GET", 404), ("/metrics", "POST", 405)]:
            request = urllib.request.Request(f"http://{metrics}{path}", method=method)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == code, (path, method)
        # The daemon said where it serves.
        log = (paths["a"] / "daemon.log").read_text()
        assert f'"url": "http://{metrics}/metrics"' in log and '"event": "metrics.serving"' in log
    finally:
        if tail is not None and tail.process.poll() is None:
            tail.process.kill()
            tail.process.communicate()
        stop_all([a, b])


def test_control_api_answers_an_empty_group_with_a_clear_error(tmp_path):
    paths = make_network(tmp_path, "ab", [("a", "b")])
    a = Daemon(paths["a"]).start()
    try:
        for op, fields in [
            ("share", {"group": "", "peer": "b"}),
            ("unshare", {"group": "", "peer": "b"}),
            ("join", {"group": ""}),
            ("append", {"group": "", "text": "x"}),
            ("subscribe", {"group": ""}),
        ]:
            with pytest.raises(ControlError, match="a group name must not be empty"):
                a.request(op, **fields)
        assert a.request("ping")["ok"]
        assert "control.error" not in (paths["a"] / "daemon.log").read_text()
    finally:
        stop_all([a])


def simulated_loss(path, seed: str, datagrams: int) -> int:
    """Start a daemon with --loss 0.5 --seed SEED, send it ``datagrams``
    junk datagrams; how many did its simulated loss drop?"""
    daemon = Daemon(path, "--loss", "0.5", "--seed", seed).start()
    try:
        host, port = daemon.status()["listen"].rsplit(":", 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(datagrams):
                s.sendto(b"junk %d" % i, (host, int(port)))
        wait_until(lambda: daemon.status()["datagrams_in"] >= datagrams, 20, what="the datagrams")
        status = daemon.status()
        assert status["datagrams_in"] == datagrams
        return status["drops"].get("simulated_loss", 0)
    finally:
        stop_all([daemon])


def test_loss_and_seed_options_drop_a_reproducible_share(tmp_path):
    """Same seed, same datagrams: the same drops (the node has no peers, so
    nothing else draws from the loss generator)."""
    path = make_network(tmp_path, "x", [])["x"]
    first = simulated_loss(path, "7", 400)
    assert 120 < first < 280, "about half of 400 dropped at --loss 0.5"
    assert simulated_loss(path, "7", 400) == first


def test_radio_down_means_nothing_in_and_nothing_out(tmp_path):
    """`--schedule`: while b's radio is down, a's datagrams reach b's socket
    and are discarded (nothing in) and b's own message does not leave
    (nothing out); once up, both sync."""
    paths = make_network(tmp_path, "ab", [("a", "b")],
                         settings={"a": {"epoch_ms": 50}, "b": {"epoch_ms": 50}})
    a = Daemon(paths["a"]).start()
    b = Daemon(paths["b"], "--schedule", "down 3s, up 60s").start()
    try:
        from_a = a.request("append", group="chat", text="from a")["message_id"]
        from_b = b.request("append", group="chat", text="from b")["message_id"]

        def discarding():
            status = b.status()
            assert not status["online"], "b's radio came up before it discarded anything"
            return status if status["drops"].get("offline", 0) > 0 else None

        while_down = wait_until(discarding, 3, interval=0.05, what="b to discard a datagram")
        assert while_down["last_seq"] == 1, "b received a message with its radio down (1: its own)"
        assert while_down["messages_stored"] == 1  # its own append is stored
        assert a.status()["last_seq"] == 1, "b sent a message with its radio down (1: a's own)"

        wait_until(lambda: b.status()["online"], 10, what="b's radio to come up")
        wait_until(lambda: a.status()["last_seq"] == 2 and b.status()["last_seq"] == 2, 20,
                   what="both messages to cross once the radio is up")
        assert stored_ids(b) == {from_a} and stored_ids(a) == {from_b}
        log = (paths["b"] / "daemon.log").read_text()
        assert log.index('"event": "radio.down"') < log.index('"event": "radio.up"')
    finally:
        stop_all([a, b])
