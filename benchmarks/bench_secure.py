"""The secure envelope alone: sealing and opening 1,200-byte datagrams.

The daemon's target (20,000 messages/s end to end, about 4 messages per
1,200-byte datagram) needs about 5,000 datagrams/s per direction; this
measures how much of a core the session layer takes for that, through
its public calls (``send`` / ``datagram_received``: framing, the path's
byte limit, the replay window), after a real handshake.
"""

from __future__ import annotations

import os
import time

from benchmarks.common import Benchmark
from mvds.secure import DEFAULT_DATAGRAM_SIZE, Identity
from mvds.secure.session import SessionManager
from mvds.secure.sessionwire import TRANSPORT_OVERHEAD

A, B = ("127.0.0.1", 1), ("127.0.0.1", 2)


def _pair() -> tuple[SessionManager, SessionManager, Identity]:
    alice, bob = Identity.generate(), Identity.generate()
    sender = SessionManager(alice, keepalive_s=0)
    receiver = SessionManager(bob, keepalive_s=0)
    sender.add_peer(bob.peer_id, B)
    receiver.add_peer(alice.peer_id, A)
    sender.send(bob.peer_id, b"", 0.0)
    for _ in range(3):
        for _, data in sender.datagrams_to_send():
            receiver.datagram_received(A, data, 0.0)
        for _, data in receiver.datagrams_to_send():
            sender.datagram_received(B, data, 0.0)
    return sender, receiver, bob


BATCH = 500


def run(count: int, datagram_size: int) -> dict[str, float]:
    payload = os.urandom(datagram_size - TRANSPORT_OVERHEAD)
    sender, receiver, bob = _pair()
    to = bob.peer_id
    send, drain, open_ = sender.send, sender.datagrams_to_send, receiver.datagram_received
    seal_s = open_s = 0.0
    # Batches, as the daemon works (a drained socket's worth at a time),
    # so the datagrams stay in cache as they would in a real node.
    for _ in range(count // BATCH):
        started = time.perf_counter()
        for _ in range(BATCH):
            send(to, payload, 1.0)
        datagrams = drain()
        sealed = time.perf_counter()
        for _, datagram in datagrams:
            open_(A, datagram, 1.0)
        opened = time.perf_counter()
        seal_s += sealed - started
        open_s += opened - sealed
    total = seal_s + open_s
    return {
        "seal_per_s": count / seal_s,
        "open_per_s": count / open_s,
        "seal_open_per_s": count / total,
        "seal_open_mb_per_s": count * datagram_size / total / 1e6,
    }


def benchmarks(quick: bool) -> list[Benchmark]:
    count = 5_000 if quick else 200_000
    return [
        Benchmark(
            name="secure.envelope",
            description="seal then open session transport datagrams of 1,200 bytes (SessionManager), one core",
            run=lambda: run(count, DEFAULT_DATAGRAM_SIZE),
            metrics={
                "seal_per_s": "datagrams/s",
                "open_per_s": "datagrams/s",
                "seal_open_per_s": "datagrams/s",
                "seal_open_mb_per_s": "MB/s",
            },
            targets={"seal_open_per_s": ">= 5,000 (daemon target per direction)"},
            params={"datagrams": count, "datagram_bytes": DEFAULT_DATAGRAM_SIZE},
        )
    ]
