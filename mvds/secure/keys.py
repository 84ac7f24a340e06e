"""Direction keys: which symmetric key seals the datagrams from A to B.

Both peers compute the same X25519 shared secret, then derive one key per
direction with HKDF-SHA256 (RFC 5869)::

    key(sender -> receiver) = HKDF-SHA256(ikm  = X25519 shared secret,
                                          salt = none (32 zero bytes),
                                          info = "MVDS-ENVELOPE-V1" || sender_id || receiver_id,
                                          L    = 32)

Putting both peer ids in ``info``, in direction order, gives the two
directions different keys (a datagram cannot be reflected back to its
sender) and binds each key to the pair that made it.  The label carries the
envelope version, so a future version cannot share keys with this one.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["KDF_LABEL", "KEY_SIZE", "direction_key"]

KDF_LABEL = b"MVDS-ENVELOPE-V1"
"""The 16 ASCII bytes that start HKDF's ``info``."""

KEY_SIZE = 32
"""ChaCha20-Poly1305 key bytes."""


def direction_key(shared_secret: bytes, sender_id: bytes, receiver_id: bytes) -> bytes:
    """The key for datagrams from ``sender_id`` to ``receiver_id``."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_SIZE,
        salt=None,
        info=KDF_LABEL + sender_id + receiver_id,
    ).derive(shared_secret)
