"""Protocol limits, in one place: datagram sizes, envelope overheads, the
largest message body and the most parents a message carries.

The numbers are part of the protocol (docs/PROTOCOL.md states them); the
engine's defaults (mvds/engine/config.py) and the node's settings
(mvds/daemon/config.py) both take them from here; tests/test_limits.py proves that a message with
the largest body, the most parents and the longest timestamp still fits in
one datagram.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_DATAGRAM_SIZE",
    "MAX_BODY_SIZE",
    "MAX_DATAGRAM_SIZE",
    "MAX_PARENTS_ON_WIRE",
    "PLAINTEXT_OVERHEAD",
    "SEALED_OVERHEAD",
]

SEALED_OVERHEAD = 1 + 32 + 8 + 16
"""Bytes a sealed envelope adds: type, sender id, counter, Poly1305 tag."""

PLAINTEXT_OVERHEAD = 1 + 32
"""Bytes a plaintext envelope adds: type, sender id."""

DEFAULT_DATAGRAM_SIZE = 1200
"""Default largest datagram (envelope included) for ordinary payloads.

1,200 bytes passes every real path without IP fragmentation (QUIC makes the
same choice: IPv6's minimum MTU of 1,280 less IP and UDP headers, with room
to spare for tunnels)."""

MAX_DATAGRAM_SIZE = 65_507
"""The largest UDP payload over IPv4 (65,535 - 20 IP - 8 UDP header bytes).
A single message too big for ``DEFAULT_DATAGRAM_SIZE`` travels alone in a
datagram up to this size (IP fragments it; it may be lost more often)."""

MAX_PARENTS_ON_WIRE = 32
"""Parents a message may carry (the engine's default ``max_parents``)."""

MAX_BODY_SIZE = 64_000
"""The largest message body: with 32 parents, a 10-byte (negative)
timestamp and a sealed envelope it still fits one datagram of
``MAX_DATAGRAM_SIZE`` (the exact ceiling is 64,304 bytes; the round number
leaves room for future metadata)."""
