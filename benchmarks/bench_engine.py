"""The sans-IO engine alone: two engines in memory, no network, no disk.

Comparable to the reference Go implementation's in-memory figure (about
35,000 messages/s): how fast the protocol logic itself can go, which bounds
everything built on it.
"""

from __future__ import annotations

import time

from benchmarks.common import Benchmark
from mvds.engine import Engine, EngineConfig, Mode
from mvds.store.memory import MemoryStore
from mvds.wire import decode_payload, encode_payload

GROUP = b"G" * 32
A, B = b"A" * 32, b"B" * 32


def sync(count: int, mode: Mode, body_size: int = 256) -> dict[str, float]:
    """Append ``count`` messages on A and run until B has all of them."""
    config = EngineConfig(mode=mode, epoch_length=1.0)
    a = Engine(MemoryStore(), config, now=0.0)
    b = Engine(MemoryStore(), config, now=0.0)
    a.share(GROUP, B, 0.0)
    b.share(GROUP, A, 0.0)
    bodies = [i.to_bytes(8, "big") * (body_size // 8) for i in range(count)]
    now = 0.0
    delivered = 0
    started = time.perf_counter()
    for body in bodies:
        a.append(GROUP, body, now)
    while delivered < count:
        now += 0.001
        progressed = False
        for src, dst, src_id in ((a, b, A), (b, a, B)):
            for _peer, payload in src.payloads_to_send(now):
                dst.receive(src_id, decode_payload(encode_payload(payload)), now)
                progressed = True
        delivered += sum(1 for e in b.events() if type(e).__name__ == "MessageReceived")
        a.events()
        if not progressed and a.next_timer() is None and b.next_timer() is None:
            raise RuntimeError("engines stalled before delivering everything")
    elapsed = time.perf_counter() - started
    return {"messages_per_s": count / elapsed}


def benchmarks(quick: bool) -> list[Benchmark]:
    count = 2_000 if quick else 50_000
    return [
        Benchmark(
            name=f"engine.{mode.value}",
            description=f"two in-memory engines, {mode.value} mode, wire encode/decode, no I/O",
            run=lambda mode=mode: sync(count, mode),
            metrics={"messages_per_s": "msg/s"},
            targets={"messages_per_s": "> 35,000 (Go, in memory)"},
            params={"messages": count, "body_bytes": 256, "mode": mode.value},
        )
        for mode in (Mode.BATCH, Mode.INTERACTIVE)
    ]
