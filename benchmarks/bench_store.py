"""The SQLite store alone: throughput, commit cost per durability, memory.

* ``store.append.<durability>``: ``Engine.append`` of 256-byte messages,
  1,000 per transaction, into a group shared with one peer (each append
  stores the message, moves the DAG leaf and inserts a sync record);
* ``store.receive.<durability>``: ``Engine.receive`` of MESSAGE payloads as
  the daemon gets them (datagram-sized, decoded from the wire), about 1,000
  messages per transaction, each stored, handed over with its seq and
  ACKed (``payloads_to_send`` after the batch, as each daemon step does);
* ``store.commit.<durability>``: one append per transaction: the latency a
  lone ``mvds send`` pays, where the per-commit fsync of "power" shows;
* ``store.memory``: resident memory of a process that runs a real node on a
  store holding 1,000,000 messages and works on it: appends, a new peer
  (the group's whole history becomes sync records for it), receives from
  it over UDP, id lookups, a reader replaying every delivered message, then
  a restart with that backlog of a million records.
  Measured in a fresh subprocess from /proc/self/status (VmRSS now, VmHWM
  the peak).  The million-message file is built once (with the store's own
  code) and cached in benchmarks/results/cache/ (ignored by git).

The daemon's end-to-end target is 20,000 messages/s; the store must keep
well ahead of it.  docs/STORAGE.md reports and explains the numbers.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Benchmark, percentile
from mvds.engine import Engine, EngineConfig, MessageReceived
from mvds.ids import group_id_for_name
from mvds.limits import DEFAULT_DATAGRAM_SIZE, SEALED_OVERHEAD
from mvds.store import MemoryStore, SQLiteStore
from mvds.wire import Message, decode_payload, split_payload

HERE = Path(__file__).resolve().parent
CACHE = HERE / "results" / "cache"
GROUP = group_id_for_name("chat")
SENDER, RECEIVER = b"S" * 32, b"R" * 32
OLD_PEER = b"P" * 32
NOW = 1_700_000_000.0
BODY = 256
BATCH = 1000
TARGET = ">= 20,000 (daemon end to end)"


def body(i: int, salt: int = 0) -> bytes:
    return (i + (salt << 40)).to_bytes(8, "big") * (BODY // 8)


def _scratch() -> str:
    return tempfile.mkdtemp(prefix="mvds-bench-store-")


def _node(tmp: str, durability: str, peer: bytes) -> tuple[SQLiteStore, Engine]:
    """A fresh store in ``tmp`` and an engine sharing GROUP with ``peer``."""
    store = SQLiteStore(Path(tmp) / "s.db", durability=durability)
    engine = Engine(store, EngineConfig(), now=NOW)
    with store.transaction():
        engine.share(GROUP, peer, NOW)
    return store, engine


# -- throughput -------------------------------------------------------------------------


def append_rate(count: int, durability: str) -> dict[str, float]:
    tmp = _scratch()
    try:
        store, engine = _node(tmp, durability, RECEIVER)
        bodies = [body(i) for i in range(count)]
        batches = []
        started, cpu = time.perf_counter(), time.process_time()
        for offset in range(0, count, BATCH):
            t0 = time.perf_counter()
            with store.transaction():
                for b in bodies[offset : offset + BATCH]:
                    engine.append(GROUP, b, NOW)
            batches.append(time.perf_counter() - t0)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert store.message_count() == count
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _rates(count, elapsed, cpu, batches)


def _rates(count: int, elapsed: float, cpu: float, batches: list[float]) -> dict[str, float]:
    """Wall-clock rate (what a node gets), CPU rate (the same on an idle core:
    these machines are shared, and waiting for the disk costs no CPU)."""
    return {
        "messages_per_s": count / elapsed,
        "cpu_messages_per_s": count / cpu,
        "batch_ms_p50": statistics.median(batches) * 1000,
    }


def _incoming(count: int) -> list:
    """What a peer sends for ``count`` appends: datagram-sized payloads,
    decoded from their wire bytes as the daemon decodes them."""
    sender = Engine(MemoryStore(), EngineConfig(max_inflight=count + 1), now=NOW)
    sender.share(GROUP, RECEIVER, NOW)
    for i in range(count):
        sender.append(GROUP, body(i, salt=1), NOW)
    ((_, payload),) = sender.payloads_to_send(NOW)
    chunks = split_payload(payload, DEFAULT_DATAGRAM_SIZE - SEALED_OVERHEAD)
    return [decode_payload(chunk) for chunk in chunks]


def receive_rate(count: int, durability: str) -> dict[str, float]:
    payloads = _incoming(count)
    tmp = _scratch()
    try:
        store, engine = _node(tmp, durability, SENDER)
        delivered = acked = 0
        batches = []
        now = NOW
        index = 0
        started, cpu = time.perf_counter(), time.process_time()
        while index < len(payloads):
            t0 = time.perf_counter()
            now += 0.001
            with store.transaction():
                taken = 0
                while index < len(payloads) and taken < BATCH:
                    engine.receive(SENDER, payloads[index], now)
                    taken += len(payloads[index].messages)
                    index += 1
                out = engine.payloads_to_send(now)
            acked += sum(len(p.acks) for _, p in out)
            delivered += sum(1 for e in engine.events() if isinstance(e, MessageReceived) and e.seq)
            batches.append(time.perf_counter() - t0)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert delivered == acked == count == store.last_seq(), (delivered, acked, count)
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _rates(count, elapsed, cpu, batches)


def commit_latency(count: int, durability: str) -> dict[str, float]:
    tmp = _scratch()
    try:
        store, engine = _node(tmp, durability, RECEIVER)
        latencies = []
        for i in range(count):
            t0 = time.perf_counter()
            with store.transaction():
                engine.append(GROUP, body(i), NOW)
            latencies.append(time.perf_counter() - t0)
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "commit_ms_p50": percentile(latencies, 50) * 1000,
        "commit_ms_p99": percentile(latencies, 99) * 1000,
        "appends_per_s": count / sum(latencies),
    }


# -- memory ------------------------------------------------------------------------------


def _stored(i: int, parent: bytes | None) -> Message:
    """Message ``i`` of the big store.  Its id does not depend on its parents
    (they are not hashed), so the worker can compute ids without the file."""
    return Message(GROUP, 1_600_000_000 + i, body(i, salt=2), (parent,) if parent else ())


def big_store(count: int) -> Path:
    """A store holding ``count`` messages of one group, half of them received
    from a peer and handed over (seq 1..count/2), half appended here, in one
    DAG chain; built with the store's own code once, then reused."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"store-{count}.db"
    if path.exists():
        try:
            with SQLiteStore(path, readonly=True) as reader:
                if reader.message_count() == count:
                    return path
        except Exception:
            pass
        path.unlink()
    building = path.with_suffix(".building")
    for leftover in CACHE.glob(building.name + "*"):
        leftover.unlink()
    started = time.perf_counter()
    store = SQLiteStore(building)
    store.join(GROUP)
    parent = None
    for offset in range(0, count, 20_000):
        with store.transaction():
            for i in range(offset, min(count, offset + 20_000)):
                message = _stored(i, parent)
                if i % 2:
                    store.add_message(message, ready=False, received_from=OLD_PEER)
                    store.mark_ready(message.id, deliver=True)
                else:
                    store.add_message(message, ready=True, received_from=None)
                parent = message.id
    store.close()
    building.rename(path)
    print(f"built {path} ({count:,} messages) in {time.perf_counter() - started:.1f} s",
          file=sys.stderr, flush=True)
    return path


def memory(count: int, appends: int, receives: int, lookups: int) -> dict[str, float]:
    """Run the worker below in a fresh process on a copy of the big store."""
    from mvds.daemon.config import load_config, save_config
    from mvds.daemon.setup import init_node_dir

    source = big_store(count)
    tmp = _scratch()
    try:
        nodedir, _ = init_node_dir(Path(tmp) / "node")
        config = load_config(nodedir.config)
        config.groups = ["chat"]
        save_config(nodedir.config, config)
        shutil.copyfile(source, nodedir.db)
        result = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_store", "--memory-worker", str(nodedir.path),
             str(count), str(appends), str(receives), str(lookups)],
            capture_output=True, text=True, cwd=HERE.parent, timeout=1800,
        )
        if result.returncode != 0:
            raise RuntimeError(f"memory worker failed: {result.stderr.strip()[-2000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _rss() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def _memory_worker(directory: str, count: int, appends: int, receives: int, lookups: int) -> None:
    """In its own process: open the node, work, report memory as JSON."""
    import trio

    import mvds
    from mvds.secure import EnvelopeCodec, Identity
    from mvds.wire import Payload, encode_payload

    out: dict[str, float] = {}
    out["rss_imports_mb"] = _rss()[0]

    async def work() -> None:
        t0 = time.perf_counter()
        async with mvds.open_node(directory) as node:
            out["open_s"] = time.perf_counter() - t0
            out["rss_open_mb"] = _rss()[0]
            store = node.store
            assert store.message_count() == count
            # Appends through the node, 1,000 a transaction.
            for offset in range(0, appends, BATCH):
                await node.append_many("chat", [body(i, salt=3) for i in range(offset, offset + BATCH)])
            # Receives: a peer sends a chain of messages over UDP, 3 a datagram.
            identity = Identity.generate()
            # Plaintext (a memory benchmark: the session layer's cost is
            # measured by session.* and daemon.*).
            codec = EnvelopeCodec(identity)
            codec.add_peer(node.peer_id, plaintext=True)
            sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            await sock.bind(("127.0.0.1", 0))
            await node.add_peer("src", identity.peer_id, "%s:%d" % sock.getsockname(), ["chat"],
                                plaintext=True)
            parent = None
            messages = []
            for i in range(receives):
                m = Message(GROUP, 1_700_000_000 + i, body(i, salt=4), (parent,) if parent else ())
                messages.append(m)
                parent = m.id
            expected = store.last_seq()
            for start in range(0, receives, 300):
                chunk = messages[start : start + 300]
                expected += len(chunk)
                while store.last_seq() < expected:
                    for j in range(0, len(chunk), 3):
                        payload = encode_payload(Payload(messages=chunk[j : j + 3]))
                        await sock.sendto(codec.seal(node.peer_id, payload), node.address)
                    with trio.move_on_after(2):
                        while store.last_seq() < expected:
                            await trio.sleep(0.005)
            del messages
            sock.close()
            out["rss_work_mb"] = _rss()[0]
            # Lookups: half stored ids, half absent ones.
            rng = random.Random(1)
            t1 = time.perf_counter()
            for _ in range(lookups // 2):
                assert store.has_message(_stored(rng.randrange(count), None).id)
                assert not store.has_message(rng.randbytes(32))
            out["lookups_per_s"] = lookups / (time.perf_counter() - t1)
            # A reader replaying every delivered message from seq 0.
            t2 = time.perf_counter()
            replayed = 0
            async for batch in node.message_batches(0, follow=False):
                replayed += len(batch)
            out["replay_msgs_per_s"] = replayed / (time.perf_counter() - t2)
            assert replayed == count // 2 + receives, replayed
            backlog = store.record_count()
            assert backlog >= count, "sharing with the peer gave it the whole history"
        # Restart: the store now also holds the peer's backlog of records.
        t3 = time.perf_counter()
        async with mvds.open_node(directory) as node:
            out["reopen_s"] = time.perf_counter() - t3
            assert node.store.record_count() == backlog
            await node.append_many("chat", [body(i, salt=5) for i in range(BATCH)])

    trio.run(work)
    out["rss_final_mb"], out["rss_peak_mb"] = _rss()
    print(json.dumps(out))


def benchmarks(quick: bool) -> list[Benchmark]:
    count = 2_000 if quick else 100_000
    commits = 20 if quick else 300
    big = 20_000 if quick else 1_000_000
    work = (1_000, 900, 2_000) if quick else (20_000, 20_100, 100_000)
    out: list[Benchmark] = []
    for durability in ("crash", "power"):
        common = {"durability": durability, "body_bytes": BODY}
        out += [
            Benchmark(
                name=f"store.append.{durability}",
                description=f"Engine.append into SQLite ({durability}), {BATCH} per transaction, "
                "one peer (a sync record each)",
                run=lambda d=durability: append_rate(count, d),
                metrics={"messages_per_s": "msg/s", "cpu_messages_per_s": "msg/cpu-s", "batch_ms_p50": "ms"},
                targets={"messages_per_s": TARGET},
                params={**common, "messages": count, "per_transaction": BATCH},
            ),
            Benchmark(
                name=f"store.receive.{durability}",
                description=f"Engine.receive of MESSAGE payloads into SQLite ({durability}), "
                f"~{BATCH} per transaction, delivered with a seq and ACKed",
                run=lambda d=durability: receive_rate(count, d),
                metrics={"messages_per_s": "msg/s", "cpu_messages_per_s": "msg/cpu-s", "batch_ms_p50": "ms"},
                targets={"messages_per_s": TARGET},
                params={**common, "messages": count, "per_transaction": BATCH},
            ),
            Benchmark(
                name=f"store.commit.{durability}",
                description=f"one append per transaction ({durability}): the cost of a commit",
                run=lambda d=durability: commit_latency(commits, d),
                metrics={"commit_ms_p50": "ms", "commit_ms_p99": "ms", "appends_per_s": "msg/s"},
                params={**common, "transactions": commits},
            ),
        ]
    out.append(
        Benchmark(
            name="store.memory",
            description=f"RSS of a node on a store of {big:,} messages: open, {work[0]:,} appends, "
            f"a new peer (history shared), {work[1]:,} receives over UDP, {work[2]:,} lookups, "
            "replay of every delivered message, restart with the backlog",
            run=lambda: memory(big, *work),
            metrics={
                "rss_peak_mb": "MB",
                "rss_final_mb": "MB",
                "rss_open_mb": "MB",
                "rss_imports_mb": "MB",
                "open_s": "s",
                "reopen_s": "s",
                "lookups_per_s": "/s",
                "replay_msgs_per_s": "msg/s",
            },
            targets={"rss_peak_mb": "<= 150"},
            params={"stored_messages": big, "appends": work[0], "receives": work[1], "lookups": work[2]},
        )
    )
    return out


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--memory-worker":
        _memory_worker(sys.argv[2], *map(int, sys.argv[3:]))
    else:
        print("usage: python -m benchmarks store [--quick]", file=sys.stderr)
        sys.exit(2)
