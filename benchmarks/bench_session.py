"""The session layer alone: Noise IKpsk2 handshakes and transport seal/open, one core.

Handshakes: an initiator and a responder SessionManager in one process,
each handshake a real sans-IO exchange (initiation -> response -> first
transport datagram), both sides' work counted together.  Transport: seal
on one manager, open on the other, 1,200-byte datagrams, as the daemon
would.
"""

from __future__ import annotations

import os
import random
import time

from benchmarks.common import Benchmark
from mvds.secure import DEFAULT_DATAGRAM_SIZE, Identity
from mvds.secure.session import SessionManager
from mvds.secure.sessionwire import TRANSPORT_OVERHEAD

A, B = ("127.0.0.1", 1), ("127.0.0.1", 2)


def _pair() -> tuple[SessionManager, SessionManager]:
    a = SessionManager(Identity.generate(), rng=random.Random(1))
    b = SessionManager(Identity.generate(), rng=random.Random(2))
    a.add_peer(b.public, B)
    b.add_peer(a.public, A)
    return a, b


def _deliver(a: SessionManager, b: SessionManager, now: float) -> None:
    nodes = {A: a, B: b}
    moved = True
    while moved:
        moved = False
        for src, manager in ((A, a), (B, b)):
            for dst, data in manager.datagrams_to_send():
                moved = True
                nodes[dst].datagram_received(src, data, now)


def handshakes(count: int) -> dict[str, float]:
    a, b = _pair()
    # The responder's handshake budget is not what is measured here.
    b._limiter._global.rate = b._limiter._global.burst = 1e12
    b._limiter._per_source_hps = b._limiter._per_source_burst = 1e12
    b._limiter._sources.clear()
    peer = a._peers[b.public]
    started = time.perf_counter()
    for i in range(count):
        now = 200.0 * i  # each handshake a fresh session (the previous one expired)
        a._initiate(peer, now)
        _deliver(a, b, now)
    elapsed = time.perf_counter() - started
    assert b.counters["handshake_responded"] == count, b.counters
    return {"handshakes_per_s": count / elapsed, "ms_per_handshake": elapsed / count * 1000}


BATCH = 500


def transport(count: int, datagram_size: int) -> dict[str, float]:
    a, b = _pair()
    a.send(b.public, b"", 0.0)
    _deliver(a, b, 0.0)
    payload = os.urandom(datagram_size - TRANSPORT_OVERHEAD)
    to = b.public
    seal_s = open_s = 0.0
    for _ in range(count // BATCH):
        started = time.perf_counter()
        for _ in range(BATCH):
            a.send(to, payload, 1.0)
        out = a.datagrams_to_send()
        sealed = time.perf_counter()
        for addr, data in out:
            b.datagram_received(A, data, 1.0)
        opened = time.perf_counter()
        seal_s += sealed - started
        open_s += opened - sealed
    assert len(out) == BATCH
    total = seal_s + open_s
    return {
        "seal_per_s": count / seal_s,
        "open_per_s": count / open_s,
        "seal_open_per_s": count / total,
        "seal_open_mb_per_s": count * datagram_size / total / 1e6,
    }


def benchmarks(quick: bool) -> list[Benchmark]:
    shakes = 50 if quick else 2_000
    count = 5_000 if quick else 200_000
    return [
        Benchmark(
            name="session.handshake",
            description="Noise IKpsk2 handshakes, initiator + responder SessionManager in one process, one core",
            run=lambda: handshakes(shakes),
            metrics={"handshakes_per_s": "handshakes/s", "ms_per_handshake": "ms"},
            targets={"handshakes_per_s": ">= 50 (cookie threshold UNDER_LOAD_HPS)"},
            params={"handshakes": shakes},
        ),
        Benchmark(
            name="session.transport",
            description="seal then open session transport datagrams of 1,200 bytes, one core",
            run=lambda: transport(count, DEFAULT_DATAGRAM_SIZE),
            metrics={
                "seal_per_s": "datagrams/s",
                "open_per_s": "datagrams/s",
                "seal_open_per_s": "datagrams/s",
                "seal_open_mb_per_s": "MB/s",
            },
            targets={"seal_open_per_s": ">= 5,000 (daemon target per direction)"},
            params={"datagrams": count, "datagram_bytes": DEFAULT_DATAGRAM_SIZE},
        ),
    ]
