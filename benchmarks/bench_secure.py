"""The secure envelope alone: sealing and opening 1,200-byte datagrams.

The daemon's target (20,000 messages/s end to end, about 4 messages per
1,200-byte datagram) needs about 5,000 datagrams/s per direction; this
measures how much of a core the envelope takes for that.  Real
NonceCounter on a real file (its fsync happens once per 65,536 datagrams),
real replay windows.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import Benchmark
from mvds.secure import DEFAULT_DATAGRAM_SIZE, SEALED_OVERHEAD, EnvelopeCodec, Identity, NonceCounter


def _pair(directory: Path) -> tuple[EnvelopeCodec, EnvelopeCodec, Identity]:
    alice, bob = Identity.generate(), Identity.generate()
    sender = EnvelopeCodec(alice, NonceCounter(directory / "alice.nonce"))
    receiver = EnvelopeCodec(bob, NonceCounter(directory / "bob.nonce"))
    sender.add_peer(bob.peer_id)
    receiver.add_peer(alice.peer_id)
    return sender, receiver, bob


BATCH = 500


def run(count: int, datagram_size: int) -> dict[str, float]:
    payload = os.urandom(datagram_size - SEALED_OVERHEAD)
    with tempfile.TemporaryDirectory() as directory:
        sender, receiver, bob = _pair(Path(directory))
        to = bob.peer_id
        seal, open_ = sender.seal, receiver.open
        seal_s = open_s = 0.0
        # Batches, as the daemon works (a drained socket's worth at a time),
        # so the datagrams stay in cache as they would in a real node.
        for _ in range(count // BATCH):
            started = time.perf_counter()
            datagrams = [seal(to, payload) for _ in range(BATCH)]
            sealed = time.perf_counter()
            for datagram in datagrams:
                open_(datagram)
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
            description="seal then open ChaCha20-Poly1305 envelopes of 1,200-byte datagrams, one core",
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
