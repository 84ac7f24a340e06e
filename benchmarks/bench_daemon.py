"""End to end: two daemon processes, loopback UDP, encryption and SQLite on.

* throughput (batch, interactive): append N messages of 256 bytes on A
  through its control API (append_many, 1,000 a request) until all are
  handed to the application on B (B's subscribe stream);
* latency: one message every 10 ms on an idle link, append request on A to
  arrival on B's subscribe stream;
* bandwidth: bytes on the wire (both directions, envelopes, ACKs and
  retransmissions included) per delivered message, divided by the body
  size, at 0/10/30/50% loss per direction, next to the ideal 1/(1-loss).

Loss for the bandwidth runs is set on B only: B drops that fraction of the
datagrams it receives and of those it sends (counted as sent: they were on
the wire), so each direction of the link loses that fraction.
"""

from __future__ import annotations

import threading
import time

from benchmarks.common import Benchmark, percentile
from benchmarks.daemons import GROUP, BenchDaemon, Subscriber, body, two_daemons

BODY = 256
BATCH = 1000


def _append_all(daemon: BenchDaemon, count: int, start: int = 0) -> list[str]:
    ids: list[str] = []
    with daemon.client() as client:
        for offset in range(start, start + count, BATCH):
            n = min(BATCH, start + count - offset)
            reply = client.request("append_many", group=GROUP, texts=[body(offset + i) for i in range(n)])
            ids += reply["message_ids"]
    return ids


def throughput(count: int, mode: str) -> dict[str, float]:
    with two_daemons(mode=mode) as (a, b):
        subscriber = Subscriber(b)
        try:
            started = time.perf_counter()
            appender = threading.Thread(target=_append_all, args=(a, count))
            appender.start()
            subscriber.wait_for(count, timeout=max(120.0, count / 100))
            elapsed = max(subscriber.arrivals.values()) - started
            appender.join()
        finally:
            subscriber.close()
    return {"messages_per_s": count / elapsed, "seconds": elapsed}


def latency(count: int, interval: float = 0.01) -> dict[str, float]:
    with two_daemons() as (a, b):
        subscriber = Subscriber(b)
        sent: dict[str, float] = {}
        try:
            with a.client() as client:
                for i in range(count):
                    t0 = time.perf_counter()
                    reply = client.request("append", group=GROUP, text=body(i))
                    sent[reply["message_id"]] = t0
                    subscriber.wait_for(i + 1, timeout=10)
                    time.sleep(interval)
        finally:
            subscriber.close()
    delays = [(subscriber.arrivals[mid] - t0) * 1000 for mid, t0 in sent.items()]
    return {"p50_ms": percentile(delays, 50), "p99_ms": percentile(delays, 99), "max_ms": max(delays)}


def bandwidth(count: int, mode: str, loss: float) -> dict[str, float]:
    with two_daemons(mode=mode, loss=0.0, epoch_ms=50, backoff_max_epochs=16) as (a, b):
        # Loss on B only: both directions of the A-B link lose `loss`.
        b.stop()
        from mvds.daemon.config import load_config, save_config

        config = load_config(b.path / "mvds.toml")
        config.loss = loss
        config.seed = 42
        save_config(b.path / "mvds.toml", config)
        b.start()
        subscriber = Subscriber(b)
        try:
            _append_all(a, count)
            subscriber.wait_for(count, timeout=300)
        finally:
            subscriber.close()
        deadline = time.monotonic() + 300
        while sum(a.status()["peers"][0]["pending"].values()):
            if time.monotonic() > deadline:
                raise TimeoutError("A's sync state did not drain")
            time.sleep(0.1)
        wire = a.status()["bytes_out"] + b.status()["bytes_out"]
    ratio = wire / (count * BODY)
    return {"wire_per_body_byte": ratio, "ideal": 1 / (1 - loss)}


def benchmarks(quick: bool) -> list[Benchmark]:
    n = 2_000 if quick else 50_000
    out = [
        Benchmark(
            name="daemon.throughput.batch",
            description="2 daemons, loopback, encrypted, SQLite; append on A until delivered on B",
            run=lambda: throughput(n, "batch"),
            metrics={"messages_per_s": "msg/s", "seconds": "s"},
            targets={"messages_per_s": ">= 20,000 (Go+SQLite: ~320)"},
            params={"messages": n, "body_bytes": BODY, "mode": "batch"},
        ),
        Benchmark(
            name="daemon.throughput.interactive",
            description="as above, interactive mode (offer, request, message, ack)",
            run=lambda: throughput(n, "interactive"),
            metrics={"messages_per_s": "msg/s", "seconds": "s"},
            targets={"messages_per_s": ">= 5,000 (Go: 2,000 did not finish in 120 s)"},
            params={"messages": n, "body_bytes": BODY, "mode": "interactive"},
        ),
        Benchmark(
            name="daemon.latency",
            description="one message every 10 ms on an idle lossless link, append on A to delivery on B",
            run=lambda: latency(50 if quick else 500),
            metrics={"p50_ms": "ms", "p99_ms": "ms", "max_ms": "ms"},
            targets={"p50_ms": "<= 2 (Go: epoch-bound, 300 ms)", "p99_ms": "<= 10"},
            params={"messages": 50 if quick else 500, "interval_ms": 10, "body_bytes": BODY},
        ),
    ]
    count = 200 if quick else 2_000
    for mode in ("batch", "interactive"):
        for loss in (0.0, 0.1, 0.3, 0.5):
            out.append(
                Benchmark(
                    name=f"daemon.bandwidth.{mode}.loss{int(loss * 100)}",
                    description=f"wire bytes per body byte, {mode} mode, {loss:.0%} loss each way",
                    run=lambda mode=mode, loss=loss: bandwidth(count, mode, loss),
                    metrics={"wire_per_body_byte": "x", "ideal": "x"},
                    targets={"wire_per_body_byte": f"ideal {1 / (1 - loss):.2f}"},
                    params={"messages": count, "body_bytes": BODY, "mode": mode, "loss": loss},
                )
            )
    return out
