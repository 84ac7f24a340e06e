"""`mvds doctor` names why nothing flows, against real daemons on loopback:
a group name typo, a one-sided `peer add`, an unresolvable host, a stopped
peer; `mvds status` shows the same findings, and the logs say it too."""

from __future__ import annotations

import json
import re

from mvds.daemon.config import load_config, save_config
from procs import Daemon, cli, make_network, stop_all, wait_until

FAST = {"epoch_ms": 50, "keepalive_s": 2.0}
"""Short epochs; keepalives every 2 s, so a silent peer is unreachable after 6 s."""


def doctor(path) -> tuple[int, list[dict]]:
    result = cli("doctor", str(path), "--json")
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)["findings"]


def problems(path, kind: str) -> list[dict]:
    return [f for f in doctor(path)[1] if f["problem"] == kind]


def test_doctor_names_a_group_typo_on_the_receiving_side(tmp_path):
    paths = make_network(tmp_path, "ab", [("a", "b")], settings={"a": FAST, "b": FAST})
    config = load_config(paths["a"] / "mvds.toml")
    config.groups = ["Chat"]
    config.peers[0].groups = ["Chat"]  # a says Chat, b says chat
    save_config(paths["a"] / "mvds.toml", config)
    daemons = [Daemon(p).start() for p in paths.values()]
    try:
        cli("send", str(paths["a"]), "Chat", "hello?", check=True)
        wait_until(lambda: problems(paths["b"], "group_mismatch"), 20, what="b to see the mismatch")
        (finding,) = problems(paths["b"], "group_mismatch")
        assert finding["peer"] == "a" and "'Chat'" in finding["detail"]
        assert "mvds share" in finding["fix"]
        human = cli("doctor", str(paths["b"]))
        assert human.returncode == 1 and re.search(r"a: a sent \d+ messages? of group", human.stdout)
        assert "group_mismatch" not in cli("status", str(paths["b"]), check=True).stdout
        assert "not share" in cli("status", str(paths["b"]), check=True).stdout
        events = [json.loads(line) for line in (paths["b"] / "daemon.log").read_text().splitlines()]
        (logged,) = [e for e in events if e["event"] == "message.refused"]  # rate-limited
        assert logged["similar_to"] == "Chat" and logged["peer"] == "a"
    finally:
        stop_all(daemons)


def test_doctor_names_a_one_sided_peer_add_on_both_sides(tmp_path):
    paths = make_network(tmp_path, "ab", [], settings={"a": FAST, "b": FAST})
    id_a = cli("id", str(paths["a"]), check=True).stdout.strip()
    id_b = cli("id", str(paths["b"]), check=True).stdout.strip()
    listen_b = load_config(paths["b"] / "mvds.toml").listen
    cli("peer", "add", str(paths["a"]), "b", id_b, listen_b, "--group", "chat", check=True)
    daemons = [Daemon(p).start() for p in paths.values()]
    try:
        cli("send", str(paths["a"]), "chat", "anyone?", check=True)
        wait_until(lambda: problems(paths["b"], "unknown_sender"), 20, what="b to drop a's datagrams")
        (finding,) = problems(paths["b"], "unknown_sender")
        assert finding["claimed_id"] == id_a and id_a in finding["detail"]
        assert f"mvds peer add {paths['b']} NAME {id_a}" in finding["fix"]
        events = [json.loads(line) for line in (paths["b"] / "daemon.log").read_text().splitlines()]
        # Its handshakes were refused, naming the key they claimed.
        assert any(e.get("claimed_peer") == id_a for e in events
                   if e["event"] in ("datagram.dropped", "handshake.refused"))
        (unreachable,) = problems(paths["a"], "unreachable")
        assert unreachable["peer"] == "b" and "does not trust this node" in unreachable["detail"]
        # Fixed: b trusts a; the finding goes away on both sides.
        listen_a = load_config(paths["a"] / "mvds.toml").listen
        cli("peer", "add", str(paths["b"]), "a", id_a, listen_a, "--group", "chat", check=True)
        wait_until(lambda: doctor(paths["a"])[0] == 0 and doctor(paths["b"])[0] == 0, 20,
                   what="both doctors to find nothing")
        assert "no problems found" in cli("doctor", str(paths["a"])).stdout
    finally:
        stop_all(daemons)


def test_doctor_names_an_unresolvable_host_and_a_stopped_peer(tmp_path):
    paths = make_network(tmp_path, "ab", [("a", "b")], settings={"a": FAST, "b": FAST})
    ghost = "1" * 64
    cli("peer", "add", str(paths["a"]), "ghost", ghost, "nosuch.invalid:7000", "--group", "chat",
        check=True)
    # Stopped: the doctor says so, and checks the hosts it can.
    code, offline = doctor(paths["a"])
    assert code == 1 and {f["problem"] for f in offline} == {"not_running", "unresolved"}
    assert "mvds run" in offline[0]["fix"]
    a = Daemon(paths["a"]).start()  # b stays stopped
    try:
        cli("send", str(paths["a"]), "chat", "into the void", check=True)
        found = {f["peer"]: f for f in doctor(paths["a"])[1]}
        assert found["ghost"]["problem"] == "unresolved"
        assert "nosuch.invalid:7000 does not resolve" in found["ghost"]["detail"]
        assert found["b"]["problem"] == "unreachable"
        assert "never heard from it" in found["b"]["detail"]
        wait_until(lambda: "record waiting" in problems(paths["a"], "unreachable")[0]["detail"], 10,
                   what="the waiting record to show")
        status = cli("status", str(paths["a"]), check=True).stdout
        assert "ghost: nosuch.invalid:7000 does not resolve" in status
        assert "1 of 1 pending" in status or "1 pending" in status
        # b starts: it is heard, and its finding goes away.
        b = Daemon(paths["b"]).start()
        try:
            wait_until(lambda: not problems(paths["a"], "unreachable"), 20, what="b to be reachable")

            def b_synced():
                (entry,) = [p for p in a.status()["peers"] if p["name"] == "b"]
                return not sum(entry["pending"].values())

            wait_until(b_synced, 20, what="b to hold everything")
        finally:
            stop_all([b])
        # b stops again: a logs it once b has been silent for 3 keepalive
        # periods (6 s), and the doctor says when b was last heard.
        cli("send", str(paths["a"]), "chat", "while b is away", check=True)

        def logged_unreachable():
            lines = (paths["a"] / "daemon.log").read_text().splitlines()
            return [e for e in map(json.loads, lines) if e["event"] == "peer.unreachable"]

        (event,) = wait_until(logged_unreachable, 20, what="a to log b unreachable")
        assert event["peer"] == "b" and event["level"] == "info" and event["last_heard_s"] >= 5
        (finding,) = problems(paths["a"], "unreachable")
        assert "last heard" in finding["detail"] and "1 record waiting" in finding["detail"]
    finally:
        stop_all([a])


def test_debug_log_follows_a_message_append_retransmission_delivery_ack(tmp_path):
    """`--log-level debug` answers "where is my message?"."""
    paths = make_network(tmp_path, "ab", [("a", "b")],
                         settings={"a": {**FAST, "seed": 1}, "b": {**FAST, "seed": 2}})
    a = Daemon(paths["a"], "--log-level", "debug", "--loss", "0.5").start()
    b = Daemon(paths["b"], "--log-level", "debug").start()
    try:
        ids = [cli("send", str(paths["a"]), "chat", f"m{i}", check=True).stdout.strip()
               for i in range(6)]

        def events(path, name):
            lines = (path / "daemon.log").read_text().splitlines()
            return [e for e in map(json.loads, lines) if e["event"] == name]

        short = {i[:8] for i in ids}
        wait_until(lambda: {e["message"] for e in events(paths["a"], "message.acked")} >= short, 30,
                   what="a to log every ACK")
        appended = events(paths["a"], "message.appended")
        assert {e["message"] for e in appended} == short and appended[0]["peers"] == ["b"]
        assert all(e["level"] == "debug" for e in appended)
        delivered = events(paths["b"], "message.delivered")
        assert {e["message"] for e in delivered} == short and delivered[0]["via"] == "a"
        assert events(paths["a"], "records.retransmitted"), "half the datagrams were lost"
    finally:
        stop_all([a, b])
    # At the default level none of it is logged.
    quiet = make_network(tmp_path / "quiet", "ab", [("a", "b")])
    daemons = [Daemon(p).start() for p in quiet.values()]
    try:
        cli("send", str(quiet["a"]), "chat", "x", check=True)
        wait_until(lambda: daemons[1].status()["messages_stored"] == 1, 20, what="delivery")
    finally:
        stop_all(daemons)
    assert "message.appended" not in (quiet["a"] / "daemon.log").read_text()
