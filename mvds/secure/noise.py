"""A compact Noise Protocol Framework core (revision 34) for IK and IKpsk2.

Only what the session layer needs: DH = 25519, cipher = ChaChaPoly, hash =
SHA-256, the handshake patterns ``IK`` and ``IKpsk2``.  Every primitive
comes from ``cryptography`` (X25519, ChaCha20-Poly1305) or the standard
library (SHA-256, HMAC); this module only composes them as the Noise
specification's CipherState / SymmetricState / HandshakeState describe,
and tests/test_noise_vectors.py checks it byte for byte against the
published cacophony test vectors.

Why not the ``noiseprotocol`` package: its last release (0.3.1) is from
2020, it pins nothing against ``cryptography`` 4x/5x and would be a second
dependency for ~150 lines of composition; and why SHA-256 rather than
BLAKE2s: every language's standard library has SHA-256 and HMAC-SHA256
(an independent implementation needs no extra library), OpenSSL
accelerates it, and the rest of mvds already uses it.

Python cannot promise that key bytes are wiped from memory: "erasing" here
means dropping every reference (``CipherState.clear``), so the garbage
collector may reuse the memory; nothing more is claimed.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

__all__ = [
    "CipherState",
    "HandshakeState",
    "KeyPair",
    "NoiseError",
    "PATTERNS",
    "dh",
    "hkdf",
]

HASHLEN = 32
DHLEN = 32
TAGLEN = 16
_MAX_NONCE = 2**64 - 1  # reserved by the spec


class NoiseError(ValueError):
    """A handshake or transport message that does not authenticate or parse."""


def dh(private: X25519PrivateKey, public: bytes) -> bytes:
    """X25519; NoiseError for a low-order public key (all-zero result).

    Every Diffie-Hellman of the session layer goes through this one function
    (tests count calls to it to prove that floods cost no DH).
    """
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        raise NoiseError("unusable X25519 public key") from None


def public_bytes(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


class KeyPair:
    """An X25519 private key and its 32-byte public key."""

    __slots__ = ("private", "public")

    def __init__(self, private: X25519PrivateKey) -> None:
        self.private = private
        self.public = public_bytes(private)

    @classmethod
    def generate(cls) -> "KeyPair":
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> "KeyPair":
        return cls(X25519PrivateKey.from_private_bytes(bytes(raw)))

    def __repr__(self) -> str:  # never the private key
        return f"KeyPair(public={self.public.hex()})"


def _hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def hkdf(chaining_key: bytes, ikm: bytes, outputs: int) -> tuple[bytes, ...]:
    """Noise's HKDF: HMAC-SHA256 extract, then 2 or 3 chained expands."""
    temp = _hmac(chaining_key, ikm)
    out1 = _hmac(temp, b"\x01")
    out2 = _hmac(temp, out1 + b"\x02")
    if outputs == 2:
        return out1, out2
    return out1, out2, _hmac(temp, out2 + b"\x03")


def _nonce(n: int) -> bytes:
    """32 zero bits then the 64-bit counter, little-endian (the ChaChaPoly rule)."""
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")


class CipherState:
    """A key (or none) and an implicit nonce counter n."""

    __slots__ = ("_aead", "n", "key")

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key
        self._aead = ChaCha20Poly1305(key) if key is not None else None
        self.n = 0

    def has_key(self) -> bool:
        return self._aead is not None

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if self._aead is None:
            return plaintext
        if self.n >= _MAX_NONCE:
            raise NoiseError("nonce space exhausted")
        out = self._aead.encrypt(_nonce(self.n), plaintext, ad)
        self.n += 1
        return out

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        if self._aead is None:
            return ciphertext
        if self.n >= _MAX_NONCE:
            raise NoiseError("nonce space exhausted")
        try:
            out = self._aead.decrypt(_nonce(self.n), ciphertext, ad)
        except Exception:
            raise NoiseError("decryption failed") from None
        self.n += 1
        return out

    def clear(self) -> None:
        """Drop the key (erasure as far as Python allows)."""
        self.key = None
        self._aead = None


class SymmetricState:
    __slots__ = ("cipher", "ck", "h")

    def __init__(self, protocol_name: bytes) -> None:
        if len(protocol_name) <= HASHLEN:
            self.h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self.h = _hash(protocol_name)
        self.ck = self.h
        self.cipher = CipherState()

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = hkdf(self.ck, ikm, 2)
        self.cipher = CipherState(temp_k)

    def mix_hash(self, data: bytes) -> None:
        self.h = _hash(self.h + data)

    def mix_key_and_hash(self, ikm: bytes) -> None:
        self.ck, temp_h, temp_k = hkdf(self.ck, ikm, 3)
        self.mix_hash(temp_h)
        self.cipher = CipherState(temp_k)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        k1, k2 = hkdf(self.ck, b"", 2)
        return CipherState(k1), CipherState(k2)


# Message patterns: the responder's static key is known in advance ("<- s").
PATTERNS: dict[str, tuple[tuple[str, ...], ...]] = {
    "IK": (("e", "es", "s", "ss"), ("e", "ee", "se")),
    "IKpsk2": (("e", "es", "s", "ss"), ("e", "ee", "se", "psk")),
}


class HandshakeState:
    """One Noise handshake (IK or IKpsk2), initiator or responder side.

    ``ephemeral`` may be given for test vectors; otherwise a fresh key pair
    is generated when the ``e`` token is written.  After the last message,
    :meth:`split` gives ``(send, receive)`` cipher states for this side.
    """

    def __init__(
        self,
        pattern: str,
        initiator: bool,
        prologue: bytes,
        static: KeyPair,
        remote_static: bytes | None = None,
        ephemeral: KeyPair | None = None,
        psk: bytes | None = None,
    ) -> None:
        if pattern not in PATTERNS:
            raise ValueError(f"unsupported pattern {pattern}")
        self.messages: Sequence[tuple[str, ...]] = PATTERNS[pattern]
        self.psk_mode = "psk" in pattern
        if self.psk_mode and (psk is None or len(psk) != 32):
            raise ValueError("a psk pattern needs a 32-byte psk")
        self.psk = psk
        self.initiator = initiator
        self.s = static
        self.e = ephemeral
        self.rs = remote_static
        self.re: bytes | None = None
        self.ss = SymmetricState(f"Noise_{pattern}_25519_ChaChaPoly_SHA256".encode())
        self.ss.mix_hash(prologue)
        if initiator:
            if remote_static is None:
                raise ValueError("IK: the initiator must know the responder's static key")
            self.ss.mix_hash(remote_static)
        else:
            self.ss.mix_hash(static.public)
        self._index = 0

    @property
    def handshake_hash(self) -> bytes:
        return self.ss.h

    def _dh_token(self, token: str) -> bytes:
        """The DH a token names: first letter initiator's key, second responder's."""
        mine, theirs = (token[0], token[1]) if self.initiator else (token[1], token[0])
        private = (self.e if mine == "e" else self.s).private  # type: ignore[union-attr]
        public = self.re if theirs == "e" else self.rs
        return dh(private, public)  # type: ignore[arg-type]

    def write_message(self, payload: bytes) -> bytes:
        tokens = self.messages[self._index]
        self._index += 1
        out = bytearray()
        for token in tokens:
            if token == "e":
                if self.e is None:
                    self.e = KeyPair.generate()
                out += self.e.public
                self.ss.mix_hash(self.e.public)
                if self.psk_mode:
                    self.ss.mix_key(self.e.public)
            elif token == "s":
                out += self.ss.encrypt_and_hash(self.s.public)
            elif token == "psk":
                self.ss.mix_key_and_hash(self.psk)  # type: ignore[arg-type]
            else:
                self.ss.mix_key(self._dh_token(token))
        out += self.ss.encrypt_and_hash(payload)
        return bytes(out)

    def read_message(self, message: bytes, *, check_static=None) -> bytes:
        """Process one incoming message; NoiseError if it does not authenticate.

        ``check_static(rs)`` (optional) is called as soon as the remote static
        key is decrypted, before the next DH: raising there saves the work.
        """
        tokens = self.messages[self._index]
        self._index += 1
        at = 0
        for token in tokens:
            if token == "e":
                if len(message) < at + DHLEN:
                    raise NoiseError("message too short")
                self.re = bytes(message[at : at + DHLEN])
                at += DHLEN
                self.ss.mix_hash(self.re)
                if self.psk_mode:
                    self.ss.mix_key(self.re)
            elif token == "s":
                size = DHLEN + (TAGLEN if self.ss.cipher.has_key() else 0)
                if len(message) < at + size:
                    raise NoiseError("message too short")
                self.rs = self.ss.decrypt_and_hash(bytes(message[at : at + size]))
                at += size
                if check_static is not None:
                    check_static(self.rs)
            elif token == "psk":
                self.ss.mix_key_and_hash(self.psk)  # type: ignore[arg-type]
            else:
                self.ss.mix_key(self._dh_token(token))
        return self.ss.decrypt_and_hash(bytes(message[at:]))

    @property
    def finished(self) -> bool:
        return self._index >= len(self.messages)

    def split(self) -> tuple[CipherState, CipherState]:
        """``(send, receive)`` for this side; then forget the handshake secrets."""
        first, second = self.ss.split()
        self.ss.ck = b""
        self.ss.cipher.clear()
        self.e = None  # the ephemeral private key is no longer needed: erase it
        return (first, second) if self.initiator else (second, first)
