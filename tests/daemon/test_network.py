"""Networks of real daemons over loopback UDP with simulated loss and offline periods."""

from __future__ import annotations

from procs import Daemon, make_network, stop_all, wait_until

FAST = {"epoch_ms": 50, "backoff_max_epochs": 16}


def stored_ids(daemon: Daemon) -> set[str]:
    with daemon.client() as client:
        ids = set()
        for event in client.stream("subscribe", since=0, follow=False):
            if event["event"] == "message":
                ids.add(event["message"]["id"])
            elif event["event"] == "caught_up":
                return ids
    return ids


def test_two_daemons_at_30_percent_loss_deliver_everything_once(tmp_path):
    settings = {n: {**FAST, "loss": 0.3, "seed": i} for i, n in enumerate("ab")}
    paths = make_network(tmp_path, "ab", [("a", "b")], settings=settings)
    daemons = {n: Daemon(p).start() for n, p in paths.items()}
    try:
        sent = {"a": set(), "b": set()}
        for round_ in range(5):
            for name, daemon in daemons.items():
                reply = daemon.request(
                    "append_many", group="chat", texts=[f"{name}-{round_}-{i}" for i in range(40)]
                )
                sent[name].update(reply["message_ids"])
        wait_until(lambda: stored_ids(daemons["b"]) >= sent["a"], 60, what="a's messages at b")
        wait_until(lambda: stored_ids(daemons["a"]) >= sent["b"], 60, what="b's messages at a")
        for name, daemon in daemons.items():
            other = "b" if name == "a" else "a"
            assert stored_ids(daemon) == sent[other]
            status = daemon.status()
            assert status["messages_stored"] == len(sent["a"]) + len(sent["b"])
            assert status["last_seq"] == status["messages_stored"], "each once in the sequence"
            assert status["drops"].get("simulated_loss", 0) > 0
        wait_until(
            lambda: all(sum(d.status()["peers"][0]["pending"].values()) == 0 for d in daemons.values()),
            30, what="sync state to drain",
        )
    finally:
        stop_all(daemons.values())


def test_four_daemons_in_the_research_topology(tmp_path):
    """A, B bursty and lossy; C, D always on; links A-B, A-C, B-D, C-D."""
    settings = {
        "A": {**FAST, "loss": 0.2, "seed": 1, "schedule": "up 1s, down 1s"},
        "B": {**FAST, "loss": 0.2, "seed": 2, "schedule": "down 0.5s, up 1s, down 0.5s"},
        "C": {**FAST, "mode": "interactive"},
        "D": {**FAST},
    }
    links = [("A", "B"), ("A", "C"), ("B", "D"), ("C", "D")]
    paths = make_network(tmp_path, "ABCD", links, settings=settings)
    daemons = {n: Daemon(p).start() for n, p in paths.items()}
    try:
        sent: dict[str, set[str]] = {}
        for name, daemon in daemons.items():
            reply = daemon.request("append_many", group="chat", texts=[f"hi from {name} #{i}" for i in range(10)])
            sent[name] = set(reply["message_ids"])
        everything = set().union(*sent.values())

        def converged() -> bool:
            return all(stored_ids(d) | sent[n] == everything for n, d in daemons.items())

        wait_until(converged, 90, interval=0.5, what="all four nodes to hold every message")
        for name, daemon in daemons.items():
            assert daemon.status()["last_seq"] == len(everything), "own and received, once each"
    finally:
        stop_all(daemons.values())


def test_a_new_peer_gets_the_history_by_reconciliation_with_a_window_of_records(tmp_path):
    """Both daemons with ``reconcile`` on: B joins A's group of 600 messages;
    A never holds more sync records for B than its window, and B gets all,
    at 10% loss each way."""
    settings = {
        n: {**FAST, "reconcile": True, "max_inflight": 40, "loss": 0.1, "seed": i}
        for i, n in enumerate("ab")
    }
    paths = make_network(tmp_path, "ab", [], settings=settings)
    daemons = {n: Daemon(p).start() for n, p in paths.items()}
    try:
        a, b = daemons["a"], daemons["b"]
        sent = set(a.request("append_many", group="chat", texts=[f"old {i}" for i in range(600)])["message_ids"])
        ids = {n: daemons[n].status()["peer_id"] for n in "ab"}
        addresses = {n: daemons[n].status()["listen"] for n in "ab"}
        for name, other in (("b", "a"), ("a", "b")):
            daemons[name].request("add_peer", name=other, peer_id=ids[other], address=addresses[other], groups=["chat"])
        peak = 0

        def done() -> bool:
            nonlocal peak
            peers = a.status()["peers"]
            peak = max(peak, sum(peers[0]["pending"].values()) if peers else 0)
            return stored_ids(b) >= sent

        wait_until(done, 60, interval=0.05, what="the history at b")
        assert stored_ids(b) == sent and b.status()["last_seq"] == 600
        assert peak <= 40 + 10, f"A held {peak} records for B"
        engine = a.status()["engine"]
        assert engine.get("reconcile_sessions_done", 0) >= 1
        assert not engine.get("reconcile_fallbacks")
    finally:
        stop_all(daemons.values())
