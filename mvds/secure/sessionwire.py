"""The session envelopes on the wire: handshake initiation, response, cookie reply, transport.

docs/PROTOCOL.md ("Sessions") is the normative text; this module is its
code.  Four envelope types, distinct from the static-key envelope (0x01)
and the plaintext one (0x02, unchanged)::

    0x03 initiation  (149 bytes)   0x04 response (92 bytes)
    0x05 cookie reply (52 bytes)   0x06 transport (32 + n bytes)

Integers are little-endian (as in WireGuard, whose layout this follows
field for field; only the hash and labels differ).  Everything here is
pure: bytes in, bytes out.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

__all__ = [
    "COOKIE_REPLY_SIZE",
    "INITIATION_SIZE",
    "PROLOGUE",
    "PROTOCOL_PATTERN",
    "RESPONSE_SIZE",
    "SESSION_TYPES",
    "TRANSPORT_HEADER_SIZE",
    "TRANSPORT_OVERHEAD",
    "TYPE_COOKIE_REPLY",
    "TYPE_INITIATION",
    "TYPE_RESPONSE",
    "TYPE_TRANSPORT",
]

TYPE_INITIATION = 0x03
TYPE_RESPONSE = 0x04
TYPE_COOKIE_REPLY = 0x05
TYPE_TRANSPORT = 0x06
SESSION_TYPES = frozenset({TYPE_INITIATION, TYPE_RESPONSE, TYPE_COOKIE_REPLY, TYPE_TRANSPORT})
"""Envelope type bytes the session layer owns (the gate routes these to it)."""

PROTOCOL_PATTERN = "IKpsk2"
"""Always IKpsk2 (psk = 32 zero bytes when a pair has no pre-shared key),
as WireGuard does: one code path, and the psk slot costs nothing."""

PROLOGUE = b"mvds session v1"
"""Noise prologue: binds the protocol version into every handshake hash."""

LABEL_MAC1 = b"mvds-mac1-v1"
LABEL_COOKIE = b"mvds-cookie-v1"
NO_PSK = bytes(32)

TIMESTAMP_SIZE = 12
INITIATION_PAYLOAD_SIZE = TIMESTAMP_SIZE + 1  # timestamp, flags
FLAG_ANSWER = 0x01
"""Flag in an initiation: it answers an initiation of the receiver's that was
refused as a replay (stale timestamp); the receiver must not treat it as a
collision with its own pending initiation."""
INITIATION_NOISE_SIZE = 32 + (32 + 16) + (INITIATION_PAYLOAD_SIZE + 16)  # e, enc s, enc payload = 109
RESPONSE_NOISE_SIZE = 32 + 16  # e, enc empty payload = 48
INITIATION_SIZE = 8 + INITIATION_NOISE_SIZE + 32  # 149
RESPONSE_SIZE = 12 + RESPONSE_NOISE_SIZE + 32  # 92
COOKIE_REPLY_SIZE = 8 + 12 + 16 + 16  # 52
TRANSPORT_HEADER_SIZE = 16
TRANSPORT_OVERHEAD = TRANSPORT_HEADER_SIZE + 16 + 1  # header, tag, frame kind byte
MAC_SIZE = 16

# Frames inside a transport plaintext (first byte); an empty plaintext is a keepalive.
FRAME_DATA = 0x00
FRAME_PATH_CHALLENGE = 0x01
FRAME_PATH_RESPONSE = 0x02
CHALLENGE_SIZE = 8

_INIT_HEAD = struct.Struct("<B3xI")  # type, reserved, sender index
_RESP_HEAD = struct.Struct("<B3xII")  # type, reserved, sender index, receiver index
_COOKIE_HEAD = struct.Struct("<B3xI")  # type, reserved, receiver index
_TRANSPORT_HEAD = struct.Struct("<B3xIQ")  # type, reserved, receiver index, counter


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mac(key: bytes, data: bytes) -> bytes:
    """MAC(key, data) = first 16 bytes of HMAC-SHA256(key, data)."""
    return hmac.digest(key, data, "sha256")[:MAC_SIZE]


def mac1_key(receiver_public: bytes) -> bytes:
    return _sha256(LABEL_MAC1 + receiver_public)


def cookie_key(receiver_public: bytes) -> bytes:
    return _sha256(LABEL_COOKIE + receiver_public)


def add_macs(body: bytes, mac1_k: bytes, cookie: bytes | None) -> tuple[bytes, bytes]:
    """``body || mac1 || mac2``; mac2 is 16 zero bytes without a cookie.  Returns (message, mac1)."""
    m1 = mac(mac1_k, body)
    m2 = mac(cookie, body + m1) if cookie is not None else bytes(MAC_SIZE)
    return body + m1 + m2, m1


def check_mac1(message: bytes, mac1_k: bytes) -> bool:
    return hmac.compare_digest(mac(mac1_k, message[:-32]), message[-32:-16])


def check_mac2(message: bytes, cookie: bytes) -> bool:
    return hmac.compare_digest(mac(cookie, message[:-16]), message[-16:])


def timestamp_bytes(value: int) -> bytes:
    """A TAI64N-like timestamp as a 96-bit big-endian integer."""
    return value.to_bytes(TIMESTAMP_SIZE, "big")


def timestamp_value(wall_seconds: float) -> int:
    """TAI64N: (2**62 + seconds) as 8 bytes, then nanoseconds as 4 bytes."""
    seconds = int(wall_seconds // 1)
    nanos = int((wall_seconds - seconds) * 1e9)
    return ((2**62 + seconds) << 32) | min(nanos, 999_999_999)


def timestamp_seconds(value: int) -> float:
    """The wall-clock seconds a :func:`timestamp_value` stands for (its inverse)."""
    return (value >> 32) - 2**62 + (value & 0xFFFFFFFF) / 1e9


# -- initiation / response ----------------------------------------------------
def initiation_head(sender_index: int) -> bytes:
    return _INIT_HEAD.pack(TYPE_INITIATION, sender_index)


def parse_initiation(data: bytes) -> tuple[int, bytes]:
    """``(sender index, noise message)``; the caller checked the size."""
    _, sender = _INIT_HEAD.unpack_from(data)
    return sender, data[8 : 8 + INITIATION_NOISE_SIZE]


def response_head(sender_index: int, receiver_index: int) -> bytes:
    return _RESP_HEAD.pack(TYPE_RESPONSE, sender_index, receiver_index)


def parse_response(data: bytes) -> tuple[int, int, bytes]:
    """``(sender index, receiver index, noise message)``."""
    _, sender, receiver = _RESP_HEAD.unpack_from(data)
    return sender, receiver, data[12 : 12 + RESPONSE_NOISE_SIZE]


# -- cookie reply ---------------------------------------------------------------
def seal_cookie_reply(
    receiver_index: int, cookie: bytes, own_public: bytes, answered_mac1: bytes, nonce: bytes
) -> bytes:
    """52 bytes: head, 12-byte random nonce, cookie encrypted under cookie_key(own public).

    The AAD is the mac1 of the initiation it answers, so a reply cannot be
    moved onto another initiation.
    """
    sealed = ChaCha20Poly1305(cookie_key(own_public)).encrypt(nonce, cookie, answered_mac1)
    return _COOKIE_HEAD.pack(TYPE_COOKIE_REPLY, receiver_index) + nonce + sealed


def parse_cookie_reply(data: bytes) -> tuple[int, bytes, bytes]:
    _, receiver = _COOKIE_HEAD.unpack_from(data)
    return receiver, data[8:20], data[20:52]


def open_cookie_reply(nonce: bytes, sealed: bytes, peer_public: bytes, sent_mac1: bytes) -> bytes | None:
    try:
        return ChaCha20Poly1305(cookie_key(peer_public)).decrypt(nonce, sealed, sent_mac1)
    except InvalidTag:
        return None


# -- transport -----------------------------------------------------------------
def transport_head(receiver_index: int, counter: int) -> bytes:
    return _TRANSPORT_HEAD.pack(TYPE_TRANSPORT, receiver_index, counter)


def parse_transport_head(data: bytes) -> tuple[int, int]:
    _, receiver, counter = _TRANSPORT_HEAD.unpack_from(data)
    return receiver, counter


def transport_nonce(counter: int) -> bytes:
    """Noise's ChaChaPoly nonce: 4 zero bytes, then the counter little-endian."""
    return b"\x00\x00\x00\x00" + counter.to_bytes(8, "little")
