"""The documented size limits hold for the largest message the protocol allows."""

from mvds.engine import EngineConfig
from mvds.limits import (
    MAX_BODY_SIZE,
    MAX_DATAGRAM_SIZE,
    MAX_PARENTS_ON_WIRE,
    PLAINTEXT_OVERHEAD,
    SEALED_OVERHEAD,
)
from mvds.wire import Message, Payload, encode_payload


def largest_datagram(body_size: int) -> int:
    """Sealed datagram size of one message with the worst-case metadata."""
    message = Message(
        bytes(32),
        -1,  # negative timestamps take the most varint bytes (10)
        bytes(body_size),
        [bytes([i]) * 32 for i in range(MAX_PARENTS_ON_WIRE)],
        ephemeral=True,
    )
    return len(encode_payload(Payload(messages=[message]))) + SEALED_OVERHEAD


def test_largest_body_fits_one_datagram():
    assert largest_datagram(MAX_BODY_SIZE) <= MAX_DATAGRAM_SIZE


def test_documented_exact_ceiling():
    # docs/PROTOCOL.md and limits.py state the exact ceiling: 64,304 bytes.
    assert largest_datagram(64_304) == MAX_DATAGRAM_SIZE
    assert largest_datagram(64_305) > MAX_DATAGRAM_SIZE


def test_limits_agree_with_the_engine_and_the_envelope_layout():
    assert MAX_PARENTS_ON_WIRE == EngineConfig().max_parents
    assert SEALED_OVERHEAD == 57 and PLAINTEXT_OVERHEAD == 33
