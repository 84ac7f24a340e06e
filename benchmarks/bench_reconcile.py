"""Catch-up by range-based set reconciliation (docs/PROTOCOL.md section 16).

* ``reconcile.diff.<case>``: the sans-IO reconciler alone (no I/O, no
  store): two sets share N items and each holds D more, ``scattered`` (the
  extra items' timestamps spread over the whole history) or ``recent`` (all
  newer than the shared history: two nodes that each wrote while apart).
  Sketches (PROTOCOL 16.9) on, as between two current nodes; the
  ``-split-only`` variant turns them off (fingerprint splitting alone).
  The sketches' one-off build (a hash per item, at first use per group) is
  reported apart (``sketch_build_seconds``), not in ``seconds``.
  Round trips until the initiator knows the whole difference, bytes of the
  reconcile Payloads both ways (encoded, without envelopes), and those bytes
  divided by the ids of the difference (2 D x 32 bytes).  D = 0 is the
  in-sync anti-entropy round: datagrams and bytes each way.
* ``reconcile.join.<plain|reconcile>``: two real daemons (loopback UDP,
  encryption, SQLite); A holds N messages of a group, then shares it with B
  (control API ``share``).  Time until B has handed over all N, bytes on the
  wire (both directions, envelopes included), A's peak sync-state
  records for B (polled every 20 ms, so a lower bound of the true peak),
  and A's peak of streamed gives in flight to B (in memory, exact), and
  each daemon's CPU seconds until A holds nothing for B (``/proc``: on a
  shared machine steadier than wall time).
  ``plain`` is today's path (a record per historic message); both run in
  the same invocation.
* ``reconcile.away.<plain|reconcile>``: B is stopped (SIGTERM) while A
  appends N messages, then restarted.  A's sync records for B at the end of
  the appends (with reconciliation B is parked after ``park_after_s`` = 2 s),
  A's retransmissions while B was away, and the time from B's restart until
  it has handed over all N.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import threading
import time
from pathlib import Path

from benchmarks.common import Benchmark
from benchmarks.daemons import GROUP, BenchDaemon, Subscriber, body, two_daemons
from mvds.engine.reconcile import Session, respond
from mvds.limits import SEALED_OVERHEAD
from mvds.store.rangeindex import RangeIndex, key_id, make_key
from mvds.wire import FEATURE_RECONCILE, Payload, split_payload

START = 1_600_000_000
DATAGRAM = 1200


def _key(i: int, timestamp: int) -> bytes:
    return make_key(timestamp, hashlib.sha256(i.to_bytes(8, "little")).digest())


def _sets(shared: int, extra: int, case: str) -> tuple[list[bytes], list[bytes], list[bytes]]:
    rng = random.Random(shared + extra)
    common = [_key(i, START + i) for i in range(shared)]

    def more(first: int) -> list[bytes]:
        if case == "recent":
            return [_key(first + j, START + shared + j) for j in range(extra)]
        return [_key(first + j, START + rng.randrange(shared)) for j in range(extra)]

    return common, more(shared), more(shared + extra)


def _payload_sizes(messages) -> tuple[int, int]:
    """(bytes, datagrams) of the payloads carrying ``messages``."""
    if not messages:
        return 0, 0
    chunks = split_payload(
        Payload(features=FEATURE_RECONCILE, reconcile=list(messages)), DATAGRAM - SEALED_OVERHEAD
    )
    return sum(map(len, chunks)), len(chunks)


def diff(shared: int, extra: int, case: str, sketch: bool = True) -> dict[str, float]:
    common, only_a, only_b = _sets(shared, extra, case)
    a = RangeIndex(common + only_a)
    b = RangeIndex(common + only_b)
    built = time.perf_counter()
    if sketch and extra:
        a.sketch()  # built once per group, then kept up to date on append
        b.sketch()
    sketch_build = time.perf_counter() - built
    started = time.perf_counter()
    session = Session(b"\x00" * 32, a, sketch=sketch)
    queries = session.start()
    round_trips = 0
    out_bytes = in_bytes = out_datagrams = in_datagrams = 0
    while queries:
        round_trips += 1
        size, count = _payload_sizes(queries)
        out_bytes += size
        out_datagrams += count
        replies = [r for q in queries for r in respond(b, q)]
        size, count = _payload_sizes(replies)
        in_bytes += size
        in_datagrams += count
        queries = [q for r in replies for q in session.receive(r)]
    elapsed = time.perf_counter() - started
    assert session.done
    given = set(session.give_ids)
    for g in session.give_ranges:
        lo, hi = a.rank(g.lower), a.rank(g.upper) if g.upper != b"\xff" * 41 else len(a)
        given |= {key_id(k) for k in a.keys(lo, hi) if key_id(k) not in g.exclude}
    assert given == {key_id(k) for k in only_a}, "wrong difference"
    assert set(session.need) | set(session.need_keys) == (
        {key_id(k) for k in only_b} if not session.need_keys else {k[:16] for k in only_b}
    ), "wrong difference"
    total = out_bytes + in_bytes
    difference = 2 * extra * 32
    return {
        "round_trips": round_trips,
        "bytes": total,
        "bytes_per_difference_id_byte": total / difference if difference else 0.0,
        "datagrams_out": out_datagrams,
        "datagrams_in": in_datagrams,
        "seconds": elapsed,
        "sketches_decoded": session.sketches,
        "sketch_build_seconds": sketch_build,
    }


# -- a new peer joins: real daemons ---------------------------------------------------


def _cpu_seconds(daemon: BenchDaemon) -> float:
    """User + system CPU seconds the daemon's process has used (Linux
    /proc; 0 elsewhere): on a machine shared with other work, a steadier
    measure of a node's cost than wall time."""
    try:
        assert daemon.process is not None
        fields = Path(f"/proc/{daemon.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, AssertionError, IndexError, ValueError):
        return 0.0


def join(count: int, reconcile: bool) -> dict[str, float]:
    # A shares the group with B only once it holds the history.
    with two_daemons(shares={"a": [], "b": [GROUP]}, prefix="mvds-bench-join-",
                     reconcile=reconcile, groups=[GROUP]) as (a, b):
        daemons = [a, b]
        with a.client() as client:
            for offset in range(0, count, 1000):
                n = min(1000, count - offset)
                client.request("append_many", group=GROUP, texts=[body(offset + i) for i in range(n)])
        time.sleep(0.5)  # hellos exchanged, nothing pending
        bytes_before = a.status()["bytes_out"] + b.status()["bytes_out"]
        cpu_before = [_cpu_seconds(d) for d in daemons]
        subscriber = Subscriber(b)
        peak = [0]
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                peers = a.status()["peers"]
                peak[0] = max(peak[0], sum(peers[0]["pending"].values()) if peers else 0)
                time.sleep(0.02)

        poller = threading.Thread(target=poll, daemon=True)
        try:
            started = time.perf_counter()
            with a.client() as client:
                client.request("share", group=GROUP, peer="b")
            poller.start()
            subscriber.wait_for(count, timeout=max(300.0, count / 50))
            elapsed = max(subscriber.arrivals.values()) - started
        finally:
            done.set()
            subscriber.close()
        deadline = time.monotonic() + 60
        while sum(a.status()["peers"][0]["pending"].values()):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        status = a.status()
        wire = status["bytes_out"] + b.status()["bytes_out"] - bytes_before
        cpu = [_cpu_seconds(d) - before for d, before in zip(daemons, cpu_before)]
        return {
            # Until the sender holds nothing for the joiner (everything
            # acknowledged), both daemons, status polling included.
            "sender_cpu_s": cpu[0],
            "receiver_cpu_s": cpu[1],
            "peak_inflight_gives": status["engine"].get("reconcile_inflight_peak", 0),
            "seconds": elapsed,
            "messages_per_s": count / elapsed,
            "wire_bytes_per_message": wire / count,
            "peak_records": peak[0],
            # Sent again (a datagram lost, or an ACK late): records
            # retransmitted and streamed gives resent.
            "resent": status["engine"].get("retransmissions", 0)
            + status["engine"].get("reconcile_gives_resent", 0),
        }


def away(count: int, reconcile: bool) -> dict[str, float]:
    with two_daemons(prefix="mvds-bench-away-", reconcile=reconcile, park_after_s=2.0,
                     groups=[GROUP]) as (a, b):
        time.sleep(0.5)
        b.stop()
        time.sleep(3.0)  # longer than park_after_s
        retransmitted = a.status()["engine"].get("retransmissions", 0)
        with a.client() as client:
            for offset in range(0, count, 1000):
                n = min(1000, count - offset)
                client.request("append_many", group=GROUP, texts=[body(offset + i) for i in range(n)])
        time.sleep(3.0)
        status = a.status()
        records = sum(status["peers"][0]["pending"].values())
        retransmitted = status["engine"].get("retransmissions", 0) - retransmitted
        started = time.perf_counter()
        b.start()
        subscriber = Subscriber(b)
        try:
            subscriber.wait_for(count, timeout=max(300.0, count / 50))
            elapsed = max(subscriber.arrivals.values()) - started
        finally:
            subscriber.close()
        return {
            "records_for_absent_peer": records,
            "retransmissions_while_away": retransmitted,
            "seconds_to_catch_up": elapsed,
        }


def restore(count: int, reconcile: bool, interval: float) -> dict[str, float]:
    """B takes a backup, receives and ACKs ``count`` messages, then is
    restored from the backup: A holds no record of them any more (they were
    ACKed), so plain MVDS never sends them again.  The time from B's restart
    until it holds them again, waiting at most twice ``interval``
    (``reconcile_interval_s``; the round is started by the node with the
    lower id, the other one's after twice the interval)."""
    with two_daemons(prefix="mvds-bench-restore-", reconcile=reconcile,
                     reconcile_interval_s=interval, groups=[GROUP]) as (a, b):
        time.sleep(0.5)
        b.stop()
        backup = b.path.parent / "b-backup"
        shutil.copytree(b.path, backup, ignore=shutil.ignore_patterns("mvds.sock", "mvds.lock"))
        b.start()
        subscriber = Subscriber(b)
        try:
            with a.client() as client:
                for offset in range(0, count, 1000):
                    n = min(1000, count - offset)
                    client.request("append_many", group=GROUP,
                                   texts=[body(offset + i) for i in range(n)])
            subscriber.wait_for(count, timeout=max(60.0, count / 500))
        finally:
            subscriber.close()
        deadline = time.monotonic() + 30
        while sum(a.status()["peers"][0]["pending"].values()) and time.monotonic() < deadline:
            time.sleep(0.05)  # until B's ACKs settle them on A
        b.stop()
        for name in ("mvds.db", "mvds.db-wal", "mvds.db-shm"):
            (b.path / name).unlink(missing_ok=True)
            if (backup / name).exists():
                shutil.copy2(backup / name, b.path / name)
        started = time.perf_counter()
        b.start()
        subscriber = Subscriber(b)
        wait = 2 * interval + 5
        try:
            try:
                subscriber.wait_for(count, timeout=wait)
                seconds = max(subscriber.arrivals.values()) - started
            except TimeoutError:
                seconds = time.perf_counter() - started  # the whole wait: not all came back
            held = len(subscriber.arrivals)
        finally:
            subscriber.close()
        return {"fraction_held_again": held / count, "seconds": seconds}


def benchmarks(quick: bool) -> list[Benchmark]:
    shared = 10_000 if quick else 1_000_000
    extra = 100 if quick else 1_000
    joining = 1_000 if quick else 100_000  # the size
    away_count = 1_000 if quick else 100_000  # the size
    out = [
        Benchmark(
            name=f"reconcile.diff.{case}{'' if sketch else '-split-only'}",
            description=(
                f"{shared:,} shared + {extra:,} each side, {case}: reconciler alone"
                + ("" if sketch else ", sketches off (PROTOCOL 16.9)")
            ),
            run=lambda case=case, sketch=sketch: diff(shared, extra, case, sketch),
            metrics={
                "round_trips": "round trips",
                "bytes": "B",
                "bytes_per_difference_id_byte": "x",
                "datagrams_out": "datagrams",
                "datagrams_in": "datagrams",
                "seconds": "s",
                "sketches_decoded": "sketches",
                "sketch_build_seconds": "s",
            },
            targets={"round_trips": "<= 4", "bytes_per_difference_id_byte": "<= 2"},
            params={"shared": shared, "extra_each_side": extra, "case": case, "sketch": sketch},
        )
        for case, sketch in (("scattered", True), ("recent", True), ("scattered", False))
    ]
    out.append(
        Benchmark(
            name="reconcile.in_sync",
            description=f"{shared:,} items in sync: one anti-entropy round",
            run=lambda: diff(shared, 0, "recent"),
            metrics={"round_trips": "round trips", "bytes": "B", "datagrams_out": "datagrams",
                     "datagrams_in": "datagrams"},
            targets={"datagrams_out": "1", "datagrams_in": "1"},
            params={"shared": shared},
        )
    )
    for reconcile in (False, True):
        label = "reconcile" if reconcile else "plain"
        out.append(
            Benchmark(
                name=f"reconcile.join.{label}",
                description=f"a new peer joins a group of {joining:,} messages ({label}), real daemons",
                run=lambda reconcile=reconcile: join(joining, reconcile),
                metrics={"seconds": "s", "messages_per_s": "msg/s",
                         "wire_bytes_per_message": "B/msg", "peak_records": "records",
                         "peak_inflight_gives": "messages", "resent": "messages",
                         "sender_cpu_s": "s", "receiver_cpu_s": "s"},
                targets={"peak_inflight_gives": "<= max_inflight (1,024)" if reconcile else ""},
                params={"messages": joining, "body_bytes": 256, "reconcile": reconcile},
            )
        )
    for reconcile in (False, True):
        label = "reconcile" if reconcile else "plain"
        out.append(
            Benchmark(
                name=f"reconcile.away.{label}",
                description=f"a peer away while {away_count:,} messages are written ({label}), real daemons",
                run=lambda reconcile=reconcile: away(away_count, reconcile),
                metrics={"records_for_absent_peer": "records",
                         "retransmissions_while_away": "records",
                         "seconds_to_catch_up": "s"},
                targets={"records_for_absent_peer": "0 (parked)" if reconcile else "",
                         "retransmissions_while_away": "0" if reconcile else "",
                         "seconds_to_catch_up": "<= 10"},
                params={"messages": away_count, "body_bytes": 256, "reconcile": reconcile,
                        "park_after_s": 2.0},
            )
        )
    restore_count = 100 if quick else 10_000
    restore_interval = 2.0 if quick else 10.0
    for reconcile in (False, True):
        label = "reconcile" if reconcile else "plain"
        out.append(
            Benchmark(
                name=f"reconcile.restore.{label}",
                description=(
                    f"{restore_count:,} messages ACKed, then lost with a restored backup ({label}), "
                    f"real daemons, reconcile_interval_s {restore_interval:g}"
                ),
                run=lambda reconcile=reconcile: restore(restore_count, reconcile, restore_interval),
                # seconds: from B's restart until it held them all again, or
                # the whole wait (twice the interval + 5 s) when it did not.
                metrics={"fraction_held_again": "", "seconds": "s"},
                targets={"fraction_held_again": "1 (at the next anti-entropy round)" if reconcile
                         else ""},
                params={"messages": restore_count, "body_bytes": 256, "reconcile": reconcile,
                        "reconcile_interval_s": restore_interval},
            )
        )
    return out
