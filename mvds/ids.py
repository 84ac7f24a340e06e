"""Identifiers: message ids (wire-compatible with vacp2p/mvds) and group ids.

A message id is computed locally from the message's content, never taken
from the wire, so a peer cannot make us believe it holds a message it does
not (an ACK or OFFER only names ids; the id of a received MESSAGE is always
recomputed here).
"""

from __future__ import annotations

import hashlib
import struct

ID_SIZE = 32
"""Bytes in a message id, a group id and a peer id."""

_ID_DOMAIN = b"MESSAGE_ID"
_GROUP_NAME_DOMAIN = b"MVDS_GROUP_NAME"
_pack_timestamp = struct.Struct("<q").pack
_sha256 = hashlib.sha256

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def message_id(group_id: bytes, timestamp: int, body: bytes) -> bytes:
    """Return the 32-byte MVDS message id.

    SHA-256 over ``"MESSAGE_ID" || group_id || timestamp || body`` where the
    timestamp is 8 bytes, little-endian two's complement, exactly as the
    reference Go implementation hashes it.  Metadata is not hashed.
    """
    return _sha256(_ID_DOMAIN + group_id + _pack_timestamp(timestamp) + body).digest()


def group_id_for_name(name: str) -> bytes:
    """Map a human group name to its 32-byte group id.

    ``SHA-256("MVDS_GROUP_NAME" || UTF-8(name))``: every node maps the same
    name to the same id without coordination (documented in docs/PROTOCOL.md).
    """
    if not name:
        raise ValueError("a group name must not be empty")
    return _sha256(_GROUP_NAME_DOMAIN + name.encode("utf-8")).digest()


def parse_group(text: str) -> bytes:
    """Turn a GROUP argument into a group id: 64 hex characters, or a name.

    Only hex digits make an id: ``bytes.fromhex`` also skips spaces, which
    would turn a 64-character name with spaces into a shorter "id"."""
    if len(text) == 2 * ID_SIZE and all(c in _HEX_DIGITS for c in text):
        return bytes.fromhex(text)
    return group_id_for_name(text)


def parse_peer_id(text: str) -> bytes:
    """Parse a peer id (64 hex characters, an X25519 public key)."""
    cleaned = text.strip().lower()
    if len(cleaned) != 2 * ID_SIZE:
        raise ValueError(
            f"a peer id is {2 * ID_SIZE} hex characters, got {len(cleaned)}"
        )
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise ValueError("a peer id must be hexadecimal") from None


def short(identifier: bytes) -> str:
    """First 8 hex characters of an id, for logs and tables."""
    return identifier[:4].hex()
