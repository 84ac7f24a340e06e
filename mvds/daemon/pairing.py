"""Pairing: invite codes, the invite book of a node, and the config edit that
trusts a paired peer (sans-IO but for the book's file).

``mvds invite`` makes a single-use code; ``mvds accept`` on another node
uses it.  The code carries the inviter's peer id, the addresses it can be
reached at, the groups to share, the invite's slot and expiry, and a
128-bit one-time secret.  Both sides derive the invite's pre-shared key
from the secret (:func:`invite_psk`) and the acceptor proves it inside the
Noise IKpsk2 handshake (mvds/secure/session.py; docs/PROTOCOL.md
"Pairing"), so only the holder of the code gets trusted, and both sides
learn the other's static key from the handshake itself: nothing is copied
twice.

The inviter's pending invites live in ``DIR/invites.json`` (mode 0600:
it holds the secrets), so a restarted daemon keeps offering them; an
invite is marked used in that file before the new peer is written to the
config, so a crash in between leaves the invite used and nobody trusted,
never the other way round.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
import socket
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mvds.daemon import admin
from mvds.daemon.config import NodeConfig, format_address
from mvds.durable import atomic_write
from mvds.ids import parse_group
from mvds.secure.session import MAX_INVITE_ADDRESSES, MAX_INVITES

CODE_PREFIX = "mvds1-"
"""Every code starts with this (the version: a later format gets a new prefix)."""
CODE_VERSION = 1
SECRET_SIZE = 16
CHECKSUM_SIZE = 4
PSK_INFO = b"mvds invite psk v1"
CHECKSUM_LABEL = b"mvds invite code v1"
DEFAULT_EXPIRES_S = 600.0
MAX_EXPIRES_S = 7 * 86400.0
KEEP_DONE_S = 86400.0
"""Used and expired invites stay in the book this long (for status and logs)."""
MAX_SLOT = 127


class PairingError(ValueError):
    """A code that cannot be used, an invite that cannot be made: one line."""


# -- the code ----------------------------------------------------------------------


@dataclass(frozen=True)
class InviteCode:
    """What a code carries."""

    peer_id: bytes
    secret: bytes
    slot: int
    expires: int
    """Unix seconds."""
    addresses: tuple[str, ...]
    groups: tuple[str, ...]

    @property
    def psk(self) -> bytes:
        return invite_psk(self.secret, self.peer_id)


def invite_psk(secret: bytes, inviter_id: bytes) -> bytes:
    """The invite's Noise psk: HKDF-SHA256(ikm=secret, salt=inviter id, info=PSK_INFO), 32 bytes."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=inviter_id, info=PSK_INFO).derive(secret)


def _strings(items: tuple[str, ...], what: str) -> bytes:
    out = bytearray([len(items)])
    for item in items:
        raw = item.encode("utf-8")
        if not raw or len(raw) > 255:
            raise PairingError(f"{what} {item!r} is empty or longer than 255 bytes")
        out += bytes([len(raw)]) + raw
    return bytes(out)


def encode_code(code: InviteCode) -> str:
    """``mvds1-`` then lowercase base32 (no padding) of the fields and a
    4-byte checksum (SHA-256 of a label and the fields), so a mistyped or
    truncated code is caught before anything is sent."""
    if len(code.addresses) > MAX_INVITE_ADDRESSES:
        raise PairingError(f"at most {MAX_INVITE_ADDRESSES} addresses in a code")
    if len(code.groups) > 255:
        raise PairingError("at most 255 groups in a code")
    body = (
        struct.pack(">B32s16sBI", CODE_VERSION, code.peer_id, code.secret, code.slot, code.expires)
        + _strings(code.addresses, "address")
        + _strings(code.groups, "group")
    )
    checksum = hashlib.sha256(CHECKSUM_LABEL + body).digest()[:CHECKSUM_SIZE]
    text = base64.b32encode(body + checksum).decode("ascii").rstrip("=").lower()
    return CODE_PREFIX + text


def decode_code(text: str) -> InviteCode:
    """The fields of a code; PairingError (one line) for anything else.
    Case, spaces, line breaks and dashes inside the code are ignored."""
    if not isinstance(text, str):
        raise PairingError("an invite code is a string")
    cleaned = "".join(text.split()).lower()
    if not cleaned.startswith(CODE_PREFIX):
        raise PairingError(f"not an invite code (one starts with {CODE_PREFIX!r})")
    data = cleaned[len(CODE_PREFIX):].replace("-", "").upper()
    try:
        raw = base64.b32decode(data + "=" * (-len(data) % 8))
    except (ValueError, TypeError):
        raise PairingError("the invite code is mistyped (it has characters base32 does not)") from None
    if base64.b32encode(raw).decode("ascii").rstrip("=") != data:
        # The last character's unused bits, or a length base32 cannot make.
        raise PairingError("the invite code is mistyped or incomplete (its checksum does not match)")
    body, checksum = raw[:-CHECKSUM_SIZE], raw[-CHECKSUM_SIZE:]
    if len(raw) <= CHECKSUM_SIZE or hashlib.sha256(CHECKSUM_LABEL + body).digest()[:CHECKSUM_SIZE] != checksum:
        raise PairingError("the invite code is mistyped or incomplete (its checksum does not match)")
    try:
        version, peer_id, secret, slot, expires = struct.unpack_from(">B32s16sBI", body)
        if version != CODE_VERSION:
            raise PairingError(f"invite code version {version} is not supported")
        offset = struct.calcsize(">B32s16sBI")
        lists = []
        for _ in range(2):
            count = body[offset]
            offset += 1
            items = []
            for _ in range(count):
                size = body[offset]
                items.append(body[offset + 1 : offset + 1 + size].decode("utf-8"))
                if len(items[-1].encode()) != size:
                    raise IndexError
                offset += 1 + size
            lists.append(tuple(items))
        if offset != len(body):
            raise IndexError
    except (struct.error, IndexError, UnicodeDecodeError):
        raise PairingError("the invite code is malformed") from None
    if not 1 <= slot <= MAX_SLOT:
        raise PairingError("the invite code is malformed (bad slot)")
    return InviteCode(peer_id, secret, slot, expires, lists[0], lists[1])


# -- the inviter's book ------------------------------------------------------------


@dataclass
class Invite:
    """One invite this node made."""

    slot: int
    secret: str
    """Hex."""
    groups: list[str]
    name: str | None
    created: float
    expires: float
    used: float | None = None
    peer: str | None = None
    """Hex id of the node that used it."""

    def state(self, now: float) -> str:
        if self.used is not None:
            return "used"
        return "expired" if now >= self.expires else "pending"


@dataclass
class InviteBook:
    """A node's invites, in ``path`` (None: in memory only, an embedded node
    without a directory)."""

    path: Path | None
    invites: list[Invite] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None) -> "InviteBook":
        book = cls(path)
        if path is not None:
            try:
                raw = json.loads(path.read_text())
                book.invites = [Invite(**item) for item in raw.get("invites", [])]
            except FileNotFoundError:
                pass
            except (OSError, ValueError, TypeError) as exc:
                raise PairingError(f"cannot read {path}: {exc}") from None
        return book

    def save(self) -> None:
        if self.path is not None:
            data = json.dumps({"invites": [asdict(i) for i in self.invites]}, indent=1)
            atomic_write(self.path, data.encode(), mode=0o600)

    def pending(self, now: float) -> list[Invite]:
        return [i for i in self.invites if i.state(now) == "pending"]

    def create(self, groups: list[str], expires_s: float, name: str | None, now: float) -> Invite:
        """A new pending invite in a free slot, saved before it is returned."""
        if not 0 < expires_s <= MAX_EXPIRES_S:
            raise PairingError(f"an invite expires after 0 s to {MAX_EXPIRES_S / 86400:.0f} days")
        pending = self.pending(now)
        if len(pending) >= MAX_INVITES:
            raise PairingError(f"{MAX_INVITES} invites are pending already; wait for them "
                               "to be used or to expire")
        taken = {i.slot for i in pending}
        slot = secrets.choice([s for s in range(1, MAX_SLOT + 1) if s not in taken])
        self.invites = [i for i in self.invites if i.state(now) == "pending"
                        or now - max(i.used or 0.0, i.expires) < KEEP_DONE_S]
        invite = Invite(slot, secrets.token_bytes(SECRET_SIZE).hex(), list(groups), name, now,
                        now + expires_s)
        self.invites.append(invite)
        self.save()
        return invite

    def by_slot(self, slot: int) -> Invite | None:
        """The latest invite made in ``slot``."""
        matching = [i for i in self.invites if i.slot == slot]
        return max(matching, key=lambda i: i.created) if matching else None

    def use(self, slot: int, peer_id: bytes, now: float) -> Invite:
        """Mark the pending invite of ``slot`` used by ``peer_id`` and SAVE it
        (before the peer is trusted); PairingError saying why it cannot be."""
        invite = self.by_slot(slot)
        if invite is None:
            raise PairingError("no such invite")
        state = invite.state(now)
        if state != "pending":
            raise PairingError(f"the invite is {state}")
        invite.used, invite.peer = now, peer_id.hex()
        self.save()
        return invite

    def summary(self, now: float) -> dict[str, int]:
        counts = {"pending": 0, "used": 0, "expired": 0}
        for invite in self.invites:
            counts[invite.state(now)] += 1
        return counts


# -- the config edit -----------------------------------------------------------------


def default_name(peer_id: bytes) -> str:
    return f"peer-{peer_id.hex()[:8]}"


def trust(config: NodeConfig, name: str, peer_id: bytes, address: str, groups: list[str] | tuple[str, ...],
          own_id: bytes | None = None) -> NodeConfig:
    """Trust a paired peer and share ``groups`` with it (joining them).  A
    peer already configured with that id keeps its name and gains the
    groups (its address follows the pairing); a name taken by another peer
    gets the id's first hex digits appended."""
    new = config
    for group in groups:
        new = admin.join(new, group)
    existing = new.peer_with_id(peer_id)
    if existing is not None:
        have = {parse_group(g) for g in existing.groups}
        merged = list(existing.groups) + [g for g in groups if parse_group(g) not in have]
        return admin.add_peer(new, existing.name, peer_id, address, merged,
                              plaintext=False, own_id=own_id)
    if new.peer_named(name) is not None:
        name = f"{name}-{peer_id.hex()[:8]}"
    return admin.add_peer(new, name, peer_id, address, list(groups), own_id=own_id)


def set_address(config: NodeConfig, peer_id: bytes, address: str) -> NodeConfig:
    """The configured address of the peer ``peer_id`` (the acceptor learns
    which of the code's addresses answered)."""
    entry = config.peer_with_id(peer_id)
    if entry is None or entry.address == address:
        return config
    new = copy.deepcopy(config)
    next(p for p in new.peers if p.peer_id == peer_id).address = address
    return new


# -- addresses ----------------------------------------------------------------------


def reachable_addresses(host: str, port: int) -> list[str]:
    """The addresses a code offers for a node listening on ``host:port``:
    that address, or for a wildcard listen (0.0.0.0) every IPv4 address of
    the machine's interfaces, loopback last (Linux; elsewhere the host name's
    addresses)."""
    if host not in ("0.0.0.0", "::", ""):
        return [format_address(host, port)]
    found: list[str] = []
    try:
        import fcntl

        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for _, name in socket.if_nameindex():
                try:
                    packed = fcntl.ioctl(probe.fileno(), 0x8915,  # SIOCGIFADDR
                                         struct.pack("256s", name[:15].encode()))
                except OSError:
                    continue
                found.append(socket.inet_ntoa(packed[20:24]))
        finally:
            probe.close()
    except (ImportError, OSError):
        try:
            found = [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)]
        except OSError:
            found = []
    unique = list(dict.fromkeys(found))
    unique.sort(key=lambda a: a.startswith("127."))
    return [format_address(a, port) for a in unique[:MAX_INVITE_ADDRESSES]] or [format_address("127.0.0.1", port)]


def socket_addresses(addresses: tuple[str, ...], v6: bool) -> list[Any]:
    """The code's IP-literal addresses the node's socket family can reach."""
    from mvds.daemon.peers import literal_address

    out = []
    for address in addresses:
        try:
            literal = literal_address(address, v6)
        except ValueError:
            continue
        if literal is not None:
            out.append(literal)
    return out
