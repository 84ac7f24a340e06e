"""A node's long-term X25519 identity, kept in a private key file.

The peer id *is* the X25519 public key (32 bytes, shown as 64 hex
characters): there is no certificate or registry, so whoever is told a peer
id can derive the keys to talk to that node and nobody else can.

The key file is PKCS#8 PEM (``-----BEGIN PRIVATE KEY-----``), readable by
OpenSSL and most crypto libraries.  It is created with mode 0600 and without
ever existing in a partial state (written to a temporary file, fsynced, then
linked into place so a concurrent creator cannot be overwritten).  A key
file that other users can read is refused rather than used: the key may
already have leaked, and silently carrying on would hide that.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)

from mvds.durable import fsync_directory

__all__ = ["Identity", "IdentityError", "PEER_ID_SIZE"]

PEER_ID_SIZE = 32
"""Bytes in a peer id (an X25519 public key)."""

_MAX_KEY_FILE = 64 * 1024
"""A PEM X25519 key is about 120 bytes; anything huge is not a key file."""


class IdentityError(ValueError):
    """A key file that is missing, malformed, or too widely readable.

    The message is one line meant for the user, naming the file and what to do.
    """


class Identity:
    """An X25519 key pair; ``peer_id`` is the public key.

    ``repr`` shows the peer id only: the private key never appears in logs,
    tracebacks or debugger output.
    """

    __slots__ = ("_private", "peer_id", "peer_id_hex")

    def __init__(self, private_key: X25519PrivateKey) -> None:
        self._private = private_key
        self.peer_id: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.peer_id_hex: str = self.peer_id.hex()

    # -- construction -------------------------------------------------------
    @classmethod
    def generate(cls) -> "Identity":
        """A fresh random identity, not saved anywhere (tests, simulations)."""
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> "Identity":
        """The identity with this raw 32-byte X25519 private key (test vectors)."""
        if len(raw) != 32:
            raise IdentityError(f"an X25519 private key is 32 bytes, got {len(raw)}")
        return cls(X25519PrivateKey.from_private_bytes(bytes(raw)))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Identity":
        """Read the identity in ``path``; :class:`IdentityError` if unusable."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise IdentityError(f"identity key file {path} does not exist") from None
        except OSError as exc:
            raise IdentityError(f"cannot open identity key file {path}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise IdentityError(f"identity key file {path} is not a regular file")
            if os.name == "posix" and info.st_mode & 0o077:
                raise IdentityError(
                    f"identity key file {path} is accessible by other users "
                    f"(mode {stat.S_IMODE(info.st_mode):04o}); "
                    f"run 'chmod 600 {path}' if the key has not leaked, "
                    f"or replace the identity"
                )
            data = os.read(fd, _MAX_KEY_FILE + 1)
        finally:
            os.close(fd)
        return cls(_parse_key_file(path, data))

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> "Identity":
        """Load the identity in ``path``, creating a new one if there is none.

        Two processes racing to create it end up with the same identity (the
        loser loads the winner's file).
        """
        path = Path(path)
        if path.exists() or path.is_symlink():
            return cls.load(path)
        identity = cls.generate()
        if not identity._write_new(path):
            return cls.load(path)
        return identity

    def _write_new(self, path: Path) -> bool:
        """Create ``path`` holding this key; False if someone else created it first."""
        pem = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        directory = path.parent
        temporary = directory / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise IdentityError(f"cannot create identity key file in {directory}: {exc.strerror}") from None
        try:
            try:
                os.fchmod(fd, 0o600)  # the umask cannot widen it, but be explicit
                os.write(fd, pem)  # ~120 bytes: one write
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temporary, path)  # atomic and never overwrites
            except FileExistsError:
                return False
            except OSError as exc:
                raise IdentityError(f"cannot create identity key file {path}: {exc.strerror}") from None
        finally:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
        fsync_directory(directory)
        return True

    # -- use -----------------------------------------------------------------
    def shared_secret(self, peer_id: bytes) -> bytes:
        """The X25519 shared secret with ``peer_id``.

        Raises ValueError for a peer id that is not a usable public key (wrong
        length, or a low-order point giving the all-zero secret).
        """
        if len(peer_id) != PEER_ID_SIZE:
            raise ValueError(f"a peer id is {PEER_ID_SIZE} bytes, got {len(peer_id)}")
        try:
            return self._private.exchange(X25519PublicKey.from_public_bytes(bytes(peer_id)))
        except ValueError:
            raise ValueError(
                f"peer id {bytes(peer_id).hex()} is not a usable X25519 public key"
            ) from None

    def __repr__(self) -> str:
        return f"Identity(peer_id={self.peer_id_hex})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identity) and other.peer_id == self.peer_id

    def __hash__(self) -> int:
        return hash(self.peer_id)

    def __reduce__(self) -> object:
        raise TypeError("an Identity is not picklable (it holds a private key)")


def _parse_key_file(path: Path, data: bytes) -> X25519PrivateKey:
    if len(data) > _MAX_KEY_FILE:
        raise IdentityError(f"identity key file {path} is too large to be a key file")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise IdentityError(
            f"identity key file {path} is not a valid unencrypted PEM private key"
        ) from None
    except Exception as exc:  # the backend may reject odd input in other ways
        raise IdentityError(f"identity key file {path} is malformed ({type(exc).__name__})") from None
    if not isinstance(key, X25519PrivateKey):
        raise IdentityError(
            f"identity key file {path} holds a {type(key).__name__}, "
            f"not an X25519 private key"
        )
    return key

