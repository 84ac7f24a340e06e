"""SIGKILL during sync: nothing acknowledged is lost, nothing is handed over twice.

Two daemons sync thousands of messages each way at 30% loss while one of
them is killed with SIGKILL at seeded random moments (at least 10 times) and
restarted.  The kills land while appends are outstanding and the two sides
are out of sync, by construction and checked at every kill:

- the appends are paced by the kill schedule: each kill opens the next
  4 batches of 50 messages per side, so every kill has appends left after
  it, and the last batches go out only after the last kill started;
- each kill waits until the victim's appender has sent an ``append_many``
  whose reply it has not read yet, then strikes at once (half of the kills:
  the daemon dies while it handles the batch) or after a random 0-150% of a
  typical request's time, so the daemon dies before, during or just after
  the commit of that batch
  (the appender retries an interrupted batch; if the batch had committed,
  its reply was lost and the retry appends the same texts again);
- at each kill the test records whether the victim's request was still
  unanswered and whether either reader lacked a confirmed append of the
  other side; it asserts that (nearly) every kill at once cut a request and
  that most kills hit unsynced state; the appenders count the requests a
  crash cut, and the test prints how many committed batches lost their
  reply.

Readers follow each node with a sequence cursor and reconnect after every
crash.  At the end: every confirmed append is stored on both sides exactly
once, every reader saw each message exactly once in seq order without
gaps, and a clean stop (SIGTERM, SIGINT) exits 0 with everything committed.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time

import pytest

from mvds.daemon.control_client import ControlError
from procs import Daemon, cli, make_network, stop_all, wait_until

MESSAGES_PER_SIDE = 2000
BATCH = 50
BATCHES_PER_KILL = 4
KILLS = MESSAGES_PER_SIDE // BATCH // BATCHES_PER_KILL  # 10: the last kill opens the last batches
SEED = 20261125


class KillSchedule:
    """How many kills have started; appenders wait on it (the pacing)."""

    def __init__(self) -> None:
        self.started = 0
        self.changed = threading.Condition()

    def next_kill(self) -> None:
        with self.changed:
            self.started += 1
            self.changed.notify_all()

    def wait_for(self, kills: int) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.started >= kills)


class Appender(threading.Thread):
    """Appends MESSAGES_PER_SIDE texts in batches, retrying a batch whose
    request a crash interrupted; batch i waits for kill i // BATCHES_PER_KILL + 1."""

    def __init__(self, daemon: Daemon, name: str, schedule: KillSchedule) -> None:
        super().__init__(daemon=True)
        self.node = daemon
        self.label = name
        self.schedule = schedule
        self.confirmed: set[str] = set()
        self.batches_done = 0
        self.interrupted = 0
        """Requests sent whose reply never came (the daemon died under them)."""
        self.in_flight = threading.Event()
        self.kill_on_send = threading.Event()
        """Armed by the killer: SIGKILL the daemon right after the next
        request is written (from this thread: a wake-up of another thread
        can take longer than the daemon needs to answer)."""
        self.killed = threading.Event()
        self.latencies: list[float] = []
        """Seconds each answered request took, sent to reply."""
        self.error: BaseException | None = None

    def typical_latency(self) -> float:
        """Median of the recent answered requests (what a kill aims inside)."""
        recent = sorted(self.latencies[-20:]) or [0.01]
        return recent[len(recent) // 2]

    @property
    def finished(self) -> bool:
        return self.batches_done * BATCH >= MESSAGES_PER_SIDE

    def run(self) -> None:
        try:
            while not self.finished:
                index = self.batches_done
                self.schedule.wait_for(index // BATCHES_PER_KILL + 1)
                texts = [f"{self.label}-{i}" for i in range(index * BATCH, (index + 1) * BATCH)]
                try:
                    client = self.node.client(timeout=60)
                except ControlError:
                    time.sleep(0.02)  # the daemon is down: wait for its restart
                    continue
                with client:
                    started = time.monotonic()
                    try:
                        client._write({"op": "append_many", "group": "chat", "texts": texts})
                        if self.kill_on_send.is_set():
                            self.kill_on_send.clear()
                            self.node.kill()  # the daemon holds the batch, unanswered
                            self.killed.set()
                        self.in_flight.set()
                        reply = client._read()
                        self.latencies.append(time.monotonic() - started)
                    except ControlError:
                        self.interrupted += 1
                        continue  # same batch again
                    finally:
                        self.in_flight.clear()
                assert reply.get("ok"), reply
                self.confirmed.update(reply["message_ids"])
                self.batches_done += 1
                time.sleep(0.05)
        except BaseException as exc:  # pragma: no cover - reported by the test
            self.error = exc


class Reader(threading.Thread):
    """Follows a node with a cursor, reconnecting after every crash."""

    def __init__(self, daemon: Daemon) -> None:
        super().__init__(daemon=True)
        self.node = daemon
        self.seen: list[tuple[int, str]] = []
        self.stop_flag = threading.Event()

    def ids(self) -> set[str]:
        return {mid for _, mid in list(self.seen)}

    def run(self) -> None:
        while not self.stop_flag.is_set():
            cursor = self.seen[-1][0] if self.seen else 0
            try:
                with self.node.client(timeout=None) as client:
                    for event in client.stream("subscribe", since=cursor, follow=True):
                        if event["event"] == "message":
                            m = event["message"]
                            self.seen.append((m["seq"], m["id"]))
                        if self.stop_flag.is_set():
                            return
            except (ControlError, OSError, ValueError):
                time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_during_lossy_sync_loses_and_repeats_nothing(tmp_path):
    settings = {
        name: {"loss": 0.3, "seed": seed, "epoch_ms": 50, "backoff_max_epochs": 8}
        for name, seed in (("a", 1), ("b", 2))
    }
    paths = make_network(tmp_path, "ab", [("a", "b")], settings=settings)
    daemons = {name: Daemon(path).start() for name, path in paths.items()}
    schedule = KillSchedule()
    appenders = {name: Appender(d, name, schedule) for name, d in daemons.items()}
    readers = {name: Reader(d) for name, d in daemons.items()}
    other = {"a": "b", "b": "a"}
    rng = random.Random(SEED)
    kills: list[dict] = []
    t0 = time.monotonic()
    try:
        for thread in [*appenders.values(), *readers.values()]:
            thread.start()
        while len(kills) < KILLS:
            time.sleep(rng.uniform(0.1, 0.4))
            name = rng.choice("ab")
            victim, appender = daemons[name], appenders[name]
            schedule.next_kill()  # opens the next batches of both appenders
            # Half the kills strike as the victim's next batch is sent (the
            # daemon dies while it handles the batch: the retry path); the
            # others after a random part of a typical request's time on this
            # machine now (also right after the commit, before the reply: the
            # lost-reply path), however fast or loaded the machine is.
            at_once = rng.random() >= 0.5
            appends_left = sum(
                MESSAGES_PER_SIDE - a.batches_done * BATCH for a in appenders.values()
            )
            if at_once:
                appender.killed.clear()
                appender.kill_on_send.set()
                unanswered = appender.killed.wait(timeout=10)
                assert unanswered, "the victim's appender sent nothing for 10 s"
            else:
                sent = appender.in_flight.wait(timeout=10)
                time.sleep(rng.uniform(0.0, 1.5) * appender.typical_latency())
                unanswered = sent and appender.in_flight.is_set()
                victim.kill()
            kills.append({
                "victim": name,
                "at_once": at_once,
                "request_unanswered": unanswered,
                "appends_left": appends_left,
                "unsynced": sum(
                    len(appenders[n].confirmed - readers[other[n]].ids()) for n in "ab"
                ),
                "at": round(time.monotonic() - t0, 2),
            })
            time.sleep(rng.uniform(0.0, 0.2))
            victim.start()
        for appender in appenders.values():
            appender.join(timeout=120)
            assert appender.error is None
            assert len(appender.confirmed) == MESSAGES_PER_SIDE

        report = json.dumps(kills)
        assert len(kills) >= 10
        assert all(k["appends_left"] > 0 for k in kills), report
        at_once = sum(k["at_once"] for k in kills)
        assert at_once >= 3, report
        assert sum(k["unsynced"] > 0 for k in kills) >= 8, report
        interrupted = sum(a.interrupted for a in appenders.values())
        assert interrupted >= at_once, f"only {interrupted} requests were cut: {report}"

        expected = {"a": appenders["b"].confirmed, "b": appenders["a"].confirmed}
        wait_until(lambda: all(readers[n].ids() >= expected[n] for n in "ab"), 120,
                   interval=0.5, what="both sides to receive everything")

        def settled() -> bool:
            # Appends that committed but whose reply was lost in a crash sync
            # too; wait until both stores hold the same number of messages
            # and every one of them reached the other side's reader.
            stored = [daemons[name].status()["messages_stored"] for name in "ab"]
            seen = len(readers["a"].seen) + len(readers["b"].seen)
            return stored[0] == stored[1] == seen

        wait_until(settled, 60, interval=0.5, what="both stores to hold the same messages")
        # Committed appends whose reply a crash swallowed (their retry
        # appended the texts again): stored and synced, never confirmed.
        lost_replies = {n: len(readers[other[n]].seen) - len(appenders[n].confirmed) for n in "ab"}
        print(f"\n{len(kills)} kills, {interrupted} requests cut, replies lost: {lost_replies}, "
              f"{time.monotonic() - t0:.1f} s; kills: {report}")
        for name in "ab":
            seen = readers[name].seen
            seqs = [seq for seq, _ in seen]
            ids = [mid for _, mid in seen]
            # Own appends take seqs in the same sequence: the received ones
            # strictly increase, and every stored message (own or received)
            # holds exactly one seq of 1..last_seq.
            assert seqs == sorted(set(seqs)), "a reader skipped back or repeated a seq"
            assert len(ids) == len(set(ids)), "a message was handed over twice"
            assert set(ids) >= expected[name], "a confirmed append was lost"
            status = daemons[name].status()
            assert status["last_seq"] == status["messages_stored"]
        assert not readers["a"].ids() & readers["b"].ids(), "a node was handed its own message"

        # A clean stop commits and exits 0; the stores agree afterwards.
        for reader in readers.values():
            reader.stop_flag.set()
        assert daemons["a"].stop(signal.SIGTERM) == 0
        assert daemons["b"].stop(signal.SIGINT) == 0
        for name in "ab":
            status = json.loads(cli("status", str(paths[name]), "--json", check=True).stdout)
            assert status["running"] is False
            assert status["last_seq"] == status["messages_stored"] == sum(
                len(r.seen) for r in readers.values()), "own and received: one seq each"
    finally:
        for reader in readers.values():
            reader.stop_flag.set()
        stop_all(daemons.values())
