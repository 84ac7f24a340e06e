"""docpeer: a minimal MVDS peer written only from docs/PROTOCOL.md.

It exists to prove the document is sufficient: it does NOT import mvds
(only the standard library and ``cryptography``, for X25519 and
ChaCha20-Poly1305; HKDF and protobuf are written out by hand from the
document's step-by-step descriptions).  If docpeer and mvds disagree, the
document is wrong or incomplete.

Usable from tests and from a shell against a running daemon::

    me = DocIdentity.generate()
    link = DocLink(me, daemon_peer_id)                  # sealed
    datagram = link.seal(encode_payload(DocPayload(messages=[
        DocMessage(group_id("chat"), int(time.time()), b"hi")])))
    sender, payload = link.open(reply_datagram)         # -> bytes
    decode_payload(payload)                             # -> DocPayload

    peer = DocPeer(me)                                  # a real UDP socket
    peer.send(link, ("127.0.0.1", 7000), DocPayload())  # a hello
    link_sender, received = peer.receive({daemon_peer_id: link}, timeout=2)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import time
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

# --- section 4: identities -------------------------------------------------


class DocPeerError(Exception):
    """A datagram docpeer refuses; ``reason`` uses the document's names (6.4)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DocIdentity:
    """An X25519 key pair; the public key is the peer id."""

    def __init__(self, private: bytes) -> None:
        self._key = X25519PrivateKey.from_private_bytes(private)
        self.public = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> "DocIdentity":
        raw = X25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return cls(raw)

    def shared(self, peer_public: bytes) -> bytes:
        secret = self._key.exchange(X25519PublicKey.from_public_bytes(peer_public))
        if secret == bytes(32):  # (cryptography refuses this itself; the doc says MUST)
            raise ValueError("low-order peer public key")
        return secret


# --- section 5: key derivation ---------------------------------------------

LABEL = b"MVDS-ENVELOPE-V1"


def direction_key(shared: bytes, sender: bytes, receiver: bytes) -> bytes:
    """HKDF-SHA256, absent salt, L = 32, spelled out as two HMACs."""
    prk = hmac.new(bytes(32), shared, hashlib.sha256).digest()
    return hmac.new(prk, LABEL + sender + receiver + b"\x01", hashlib.sha256).digest()


# --- sections 6-8: the envelope ---------------------------------------------

SEALED = 0x01
PLAINTEXT = 0x02
WINDOW = 8192


def microsecond_clock() -> int:
    """Section 7's simple compliant counter start."""
    return time.time_ns() // 1000


class DocLink:
    """Everything about one (me, peer) pair: keys, counter, replay window."""

    def __init__(
        self,
        me: DocIdentity,
        peer_public: bytes,
        *,
        plaintext: bool = False,
        start_counter: int | None = None,
    ) -> None:
        if len(peer_public) != 32 or peer_public == me.public:
            raise ValueError("a peer id is another node's 32-byte public key")
        self.me = me
        self.peer = peer_public
        self.plaintext = plaintext
        shared = me.shared(peer_public)
        self.send_aead = ChaCha20Poly1305(direction_key(shared, me.public, peer_public))
        self.recv_aead = ChaCha20Poly1305(direction_key(shared, peer_public, me.public))
        self.counter = microsecond_clock() if start_counter is None else start_counter
        self.highest: int | None = None
        self.seen: set[int] = set()

    # sending
    def seal(self, payload: bytes, *, counter: int | None = None) -> bytes:
        """One datagram (plaintext if the link is; else sealed with the next counter)."""
        if self.plaintext:
            return bytes([PLAINTEXT]) + self.me.public + payload
        if counter is None:
            counter = self.counter
            self.counter += 1
        header = bytes([SEALED]) + self.me.public + counter.to_bytes(8, "big")
        nonce = bytes(4) + counter.to_bytes(8, "big")
        return header + self.send_aead.encrypt(nonce, payload, header)

    # receiving (6.2 / 6.3, in the document's order)
    def open(self, datagram: bytes) -> tuple[bytes, bytes]:
        """``(sender id, payload bytes)``; DocPeerError(reason) to drop."""
        if len(datagram) < 1:
            raise DocPeerError("truncated")
        kind = datagram[0]
        if kind == SEALED:
            if len(datagram) < 57:
                raise DocPeerError("truncated")
            if datagram[1:33] != self.peer:
                raise DocPeerError("unknown_peer")
            counter = int.from_bytes(datagram[33:41], "big")
            if not self._fresh(counter):
                raise DocPeerError("replay")
            try:
                payload = self.recv_aead.decrypt(
                    bytes(4) + datagram[33:41], datagram[41:], datagram[:41]
                )
            except InvalidTag:
                raise DocPeerError("auth_failed") from None
            self._accept(counter)
            return self.peer, payload
        if kind == PLAINTEXT:
            if len(datagram) < 33:
                raise DocPeerError("truncated")
            if datagram[1:33] != self.peer:
                raise DocPeerError("unknown_peer")
            if not self.plaintext:
                raise DocPeerError("plaintext_refused")
            return self.peer, datagram[33:]
        raise DocPeerError("bad_version")

    def _fresh(self, counter: int) -> bool:
        if self.highest is None or counter > self.highest:
            return True
        return self.highest - counter < WINDOW and counter not in self.seen

    def _accept(self, counter: int) -> None:
        self.seen.add(counter)
        if self.highest is None or counter > self.highest:
            self.highest = counter
        floor = self.highest - WINDOW
        if len(self.seen) > 2 * WINDOW:
            self.seen = {c for c in self.seen if c > floor}


# --- section 10: the Payload, by hand -----------------------------------------


@dataclass
class DocMessage:
    group_id: bytes
    timestamp: int
    body: bytes
    parents: list[bytes] = field(default_factory=list)
    ephemeral: bool = False
    has_metadata: bool = field(default=True, compare=False)
    """Whether the ``metadata`` field was on the wire (decoding sets it)."""

    @property
    def id(self) -> bytes:
        return message_id(self.group_id, self.timestamp, self.body)


@dataclass
class DocPayload:
    acks: list[bytes] = field(default_factory=list)
    offers: list[bytes] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)
    messages: list[DocMessage] = field(default_factory=list)


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 as its two's complement
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _bytes_field(key: int, data: bytes) -> bytes:
    return bytes([key]) + varint(len(data)) + data


def encode_message(message: DocMessage, *, always_metadata: bool = True) -> bytes:
    """Section 10.2: metadata is always written (``always_metadata=False``
    omits it when it holds only defaults, which is valid proto3 too)."""
    out = _bytes_field(0x0A, message.group_id)
    if message.timestamp:
        out += b"\x10" + varint(message.timestamp)
    if message.body:
        out += _bytes_field(0x1A, message.body)
    if always_metadata or message.parents or message.ephemeral:
        meta = b"".join(_bytes_field(0x0A, p) for p in message.parents)
        if message.ephemeral:
            meta += b"\x10\x01"
        out += _bytes_field(0x22, meta)
    return out


def encode_payload(payload: DocPayload, *, always_metadata: bool = True) -> bytes:
    out = bytearray()
    for key, ids in ((0x0A, payload.acks), (0x12, payload.offers), (0x1A, payload.requests)):
        for identifier in ids:
            out += _bytes_field(key, identifier)
    for message in payload.messages:
        out += _bytes_field(0x22, encode_message(message, always_metadata=always_metadata))
    return bytes(out)


class MalformedPayload(DocPeerError):
    def __init__(self, detail: str) -> None:
        super().__init__("malformed")
        self.detail = detail


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise MalformedPayload("bad varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value & ((1 << 64) - 1), pos


def _fields(data: bytes):
    """Yield (field number, wire type, value) for every field.

    Callers ignore numbers they do not know, and known numbers with an
    unexpected wire type (section 10.2: both are unknown fields).
    """
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise MalformedPayload("field number 0")
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise MalformedPayload(f"wire type {wire}")
        if pos > len(data):
            raise MalformedPayload("truncated field")
        yield number, wire, value


def _id(value) -> bytes:
    if len(value) != 32:
        raise MalformedPayload("an id is 32 bytes")
    return bytes(value)


def decode_message(data: bytes) -> DocMessage:
    group = None
    timestamp = 0
    body = b""
    parents: list[bytes] = []
    ephemeral = False
    has_metadata = False
    for number, wire, value in _fields(data):
        if number == 1 and wire == 2:
            group = bytes(value)
        elif number == 2 and wire == 0:
            timestamp = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 3 and wire == 2:
            body = bytes(value)
        elif number == 4 and wire == 2:  # repeated occurrences merge
            has_metadata = True
            for n, w, v in _fields(value):
                if n == 1 and w == 2:
                    parents.append(_id(v))
                elif n == 2 and w == 0:
                    ephemeral = bool(v)
    if group is None or len(group) != 32:
        raise MalformedPayload("a group id is 32 bytes")
    return DocMessage(group, timestamp, body, parents, ephemeral, has_metadata)


def decode_payload(data: bytes) -> DocPayload:
    payload = DocPayload()
    lists = {1: payload.acks, 2: payload.offers, 3: payload.requests}
    for number, wire, value in _fields(data):
        if number in lists and wire == 2:
            lists[number].append(_id(value))
        elif number == 4 and wire == 2:
            payload.messages.append(decode_message(value))
    return payload


# --- section 11: ids ------------------------------------------------------------------


def message_id(group: bytes, timestamp: int, body: bytes) -> bytes:
    return hashlib.sha256(b"MESSAGE_ID" + group + timestamp.to_bytes(8, "little", signed=True) + body).digest()


def group_id(name: str) -> bytes:
    return hashlib.sha256(b"MVDS_GROUP_NAME" + name.encode("utf-8")).digest()


# --- "Sessions": Noise_IKpsk2_25519_ChaChaPoly_SHA256 and envelopes 0x03-0x06 ---------

INITIATION, RESPONSE, COOKIE_REPLY, TRANSPORT = 0x03, 0x04, 0x05, 0x06
SESSION_TYPES = (INITIATION, RESPONSE, COOKIE_REPLY, TRANSPORT)
NOISE_NAME = b"Noise_IKpsk2_25519_ChaChaPoly_SHA256"
PROLOGUE = b"mvds session v1"
NO_PSK = bytes(32)


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def noise_hkdf(ck: bytes, ikm: bytes, outputs: int) -> list[bytes]:
    """Noise's HKDF as the document spells it: temp = HMAC(ck, ikm), out1 = HMAC(temp, 0x01), ..."""
    temp = _hmac(ck, ikm)
    out, previous = [], b""
    for i in range(1, outputs + 1):
        previous = _hmac(temp, previous + bytes([i]))
        out.append(previous)
    return out


def noise_nonce(n: int) -> bytes:
    return bytes(4) + n.to_bytes(8, "little")


def mac(key: bytes, data: bytes) -> bytes:
    return _hmac(key, data)[:16]


def mac1_key(public: bytes) -> bytes:
    return hashlib.sha256(b"mvds-mac1-v1" + public).digest()


def tai64n(unix_ns: int) -> bytes:
    seconds, nanos = divmod(unix_ns, 1_000_000_000)
    return ((1 << 62) + seconds).to_bytes(8, "big") + nanos.to_bytes(4, "big")


def _public(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    return private.exchange(X25519PublicKey.from_public_bytes(public))


class _Symmetric:
    """Noise's SymmetricState (h, ck, k, n)."""

    def __init__(self, responder_static: bytes) -> None:
        self.h = hashlib.sha256(NOISE_NAME).digest()  # the name is 36 bytes: hashed
        self.ck = self.h
        self.k: bytes | None = None
        self.n = 0
        self.mix_hash(PROLOGUE)
        self.mix_hash(responder_static)  # pre-message "<- s"

    def mix_hash(self, data: bytes) -> None:
        self.h = hashlib.sha256(self.h + data).digest()

    def mix_key(self, ikm: bytes) -> None:
        self.ck, self.k = noise_hkdf(self.ck, ikm, 2)
        self.n = 0

    def mix_key_and_hash(self, ikm: bytes) -> None:
        self.ck, temp_h, self.k = noise_hkdf(self.ck, ikm, 3)
        self.n = 0
        self.mix_hash(temp_h)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        assert self.k is not None
        out = ChaCha20Poly1305(self.k).encrypt(noise_nonce(self.n), plaintext, self.h)
        self.n += 1
        self.mix_hash(out)
        return out

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        assert self.k is not None
        try:
            out = ChaCha20Poly1305(self.k).decrypt(noise_nonce(self.n), ciphertext, self.h)
        except InvalidTag:
            raise DocPeerError("handshake_failed") from None
        self.n += 1
        self.mix_hash(ciphertext)
        return out

    def split(self) -> tuple[bytes, bytes]:
        first, second = noise_hkdf(self.ck, b"", 2)
        return first, second


class _Transport:
    """One session's keys, counter and replay window (in memory only)."""

    def __init__(self, local_index: int, remote_index: int, send_key: bytes, recv_key: bytes) -> None:
        self.local_index = local_index
        self.remote_index = remote_index
        self.send_aead = ChaCha20Poly1305(send_key)
        self.recv_aead = ChaCha20Poly1305(recv_key)
        self.counter = 0
        self.highest: int | None = None
        self.seen: set[int] = set()


class DocSession:
    """The "Sessions" layer for one (me, peer) pair, from the document alone.

    Same calls as :class:`DocLink` once established (``seal``, ``open``);
    :class:`DocPeer` drives the handshake (``initiation``, ``on_response``,
    ``on_initiation``).  No cookies are sent (docpeer is never "under
    load"); a cookie reply is stored and used as the mac2 key.
    """

    plaintext = False

    def __init__(self, me: DocIdentity, peer_public: bytes) -> None:
        self.me = me
        self.peer = peer_public
        self.current: _Transport | None = None
        self.previous: _Transport | None = None
        self.responder_next: _Transport | None = None
        self._pending: tuple[int, _Symmetric, X25519PrivateKey, bytes] | None = None
        self._last_timestamp = b""
        self._greatest_received = b""
        self.cookie: bytes | None = None

    @property
    def established(self) -> bool:
        return self.current is not None

    # -- handshake, initiator side -------------------------------------------
    def initiation(self, *, answer: bool = False, ephemeral: bytes | None = None,
                   timestamp: bytes | None = None, index: int | None = None) -> bytes:
        """A fresh initiation (the keyword arguments fix its randomness, for the vectors)."""
        if index is None:
            index = int.from_bytes(os.urandom(4), "little")
        state = _Symmetric(self.peer)
        e = X25519PrivateKey.generate() if ephemeral is None else X25519PrivateKey.from_private_bytes(ephemeral)
        e_pub = _public(e)
        state.mix_hash(e_pub)
        state.mix_key(e_pub)  # psk handshakes mix e into the key too
        state.mix_key(_dh(e, self.peer))  # es
        encrypted_static = state.encrypt_and_hash(self.me.public)  # s
        state.mix_key(self.me.shared(self.peer))  # ss
        if timestamp is None:
            timestamp = tai64n(time.time_ns())
        if timestamp <= self._last_timestamp:  # strictly increasing
            timestamp = (int.from_bytes(self._last_timestamp, "big") + 1).to_bytes(12, "big")
        self._last_timestamp = timestamp
        encrypted_payload = state.encrypt_and_hash(timestamp + bytes([0x01 if answer else 0x00]))
        body = bytes([INITIATION, 0, 0, 0]) + index.to_bytes(4, "little") + e_pub
        body += encrypted_static + encrypted_payload
        mac1 = mac(mac1_key(self.peer), body)
        mac2 = mac(self.cookie, body + mac1) if self.cookie else bytes(16)
        self._pending = (index, state, e, mac1)
        return body + mac1 + mac2

    def on_response(self, datagram: bytes) -> bool:
        """A response to our pending initiation; True if the session is now established."""
        if len(datagram) != 92 or self._pending is None:
            return False
        if mac(mac1_key(self.me.public), datagram[:60]) != datagram[60:76]:
            return False
        index, state, e, _ = self._pending
        if int.from_bytes(datagram[8:12], "little") != index:
            return False
        re = datagram[12:44]
        state.mix_hash(re)
        state.mix_key(re)
        state.mix_key(_dh(e, re))  # ee
        state.mix_key(self.me._key.exchange(X25519PublicKey.from_public_bytes(re)))  # se
        state.mix_key_and_hash(NO_PSK)  # psk
        try:
            state.decrypt_and_hash(datagram[44:60])
        except DocPeerError:
            return False
        send_key, recv_key = state.split()
        self._pending = None
        self.previous = self.current
        self.current = _Transport(index, int.from_bytes(datagram[4:8], "little"), send_key, recv_key)
        return True

    def on_cookie_reply(self, datagram: bytes) -> None:
        if len(datagram) != 52 or self._pending is None:
            return
        key = hashlib.sha256(b"mvds-cookie-v1" + self.peer).digest()
        try:
            self.cookie = ChaCha20Poly1305(key).decrypt(datagram[8:20], datagram[20:52], self._pending[3])
        except InvalidTag:
            pass

    # -- handshake, responder side ---------------------------------------------
    def on_initiation(self, datagram: bytes, *, ephemeral: bytes | None = None,
                      index: int | None = None) -> bytes | None:
        """An initiation from the peer: the response to send, or None (refused)."""
        if len(datagram) != 149:
            return None
        if mac(mac1_key(self.me.public), datagram[:117]) != datagram[117:133]:
            return None
        state = _Symmetric(self.me.public)
        re = datagram[8:40]
        state.mix_hash(re)
        state.mix_key(re)
        state.mix_key(self.me._key.exchange(X25519PublicKey.from_public_bytes(re)))  # es
        try:
            static = state.decrypt_and_hash(datagram[40:88])
        except DocPeerError:
            return None
        if static != self.peer:
            return None
        state.mix_key(self.me.shared(static))  # ss
        try:
            payload = state.decrypt_and_hash(datagram[88:117])
        except DocPeerError:
            return None
        timestamp, flags = payload[:12], payload[12]
        if timestamp <= self._greatest_received:
            return None  # handshake_replay
        if self._pending is not None and self.me.public < self.peer and not flags & 0x01:
            return None  # collision: ours wins
        self._greatest_received = timestamp
        self._pending = None
        sender_index = int.from_bytes(datagram[4:8], "little")
        if index is None:
            index = int.from_bytes(os.urandom(4), "little")
        e = X25519PrivateKey.generate() if ephemeral is None else X25519PrivateKey.from_private_bytes(ephemeral)
        e_pub = _public(e)
        state.mix_hash(e_pub)
        state.mix_key(e_pub)
        state.mix_key(_dh(e, re))  # ee
        state.mix_key(_dh(e, static))  # se
        state.mix_key_and_hash(NO_PSK)  # psk
        empty = state.encrypt_and_hash(b"")
        body = bytes([RESPONSE, 0, 0, 0]) + index.to_bytes(4, "little")
        body += sender_index.to_bytes(4, "little") + e_pub + empty
        body += mac(mac1_key(self.peer), body)
        first, second = state.split()  # first: initiator -> responder
        self.responder_next = _Transport(index, sender_index, second, first)
        return body + bytes(16)

    # -- transport ------------------------------------------------------------
    def _frame(self, frame: bytes) -> bytes:
        session = self.current
        if session is None:
            raise DocPeerError("no_session")
        header = bytes([TRANSPORT, 0, 0, 0]) + session.remote_index.to_bytes(4, "little")
        header += session.counter.to_bytes(8, "little")
        nonce = bytes(4) + session.counter.to_bytes(8, "little")
        session.counter += 1
        return header + session.send_aead.encrypt(nonce, frame, header)

    def seal(self, payload: bytes) -> bytes:
        """A transport datagram carrying ``payload`` (frame 0x00)."""
        return self._frame(b"\x00" + payload)

    def keepalive(self) -> bytes:
        return self._frame(b"")

    def open_frame(self, datagram: bytes) -> bytes:
        """The frame of a transport datagram; DocPeerError(reason) to drop."""
        if len(datagram) < 32:
            raise DocPeerError("truncated")
        index = int.from_bytes(datagram[4:8], "little")
        sessions = [s for s in (self.current, self.previous, self.responder_next) if s is not None]
        session = next((s for s in sessions if s.local_index == index), None)
        if session is None:
            raise DocPeerError("unknown_index")
        counter = int.from_bytes(datagram[8:16], "little")
        if not (session.highest is None or counter > session.highest
                or (session.highest - counter < WINDOW and counter not in session.seen)):
            raise DocPeerError("replay")
        try:
            frame = session.recv_aead.decrypt(bytes(4) + datagram[8:16], datagram[16:], datagram[:16])
        except InvalidTag:
            raise DocPeerError("auth_failed") from None
        session.seen.add(counter)
        if session.highest is None or counter > session.highest:
            session.highest = counter
        if session is self.responder_next:  # the initiator's confirmation
            self.responder_next = None
            self.previous, self.current = self.current, session
        return frame

    def open(self, datagram: bytes) -> tuple[bytes, bytes]:
        """``(sender id, payload bytes)`` of a data frame; DocPeerError otherwise."""
        if not datagram or datagram[0] != TRANSPORT:
            raise DocPeerError("bad_version")
        frame = self.open_frame(datagram)
        if not frame or frame[0] != 0x00:
            raise DocPeerError("not_data")
        return self.peer, frame[1:]


# --- section 3: one UDP socket --------------------------------------------------------


class DocPeer:
    """A real UDP socket speaking the envelope, for pointing at a daemon."""

    def __init__(self, me: DocIdentity, bind: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.me = me
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(bind)
        self.address = self.sock.getsockname()

    def send(self, link, address: tuple[str, int], payload: DocPayload | bytes) -> bytes:
        """Send ``payload`` over ``link`` (a :class:`DocLink` or :class:`DocSession`;
        a session without keys runs its handshake first)."""
        data = payload if isinstance(payload, bytes) else encode_payload(payload)
        if isinstance(link, DocSession) and not link.established:
            self.handshake(link, address)
        datagram = link.seal(data)
        self.sock.sendto(datagram, address)
        return datagram

    def handshake(self, link: "DocSession", address: tuple[str, int], timeout: float = 10.0) -> None:
        """Initiate until a response arrives (retrying every second, as the document says)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if link.responder_next is None:  # else: we answered the peer's; await its confirmation
                self.sock.sendto(link.initiation(), address)
            retry = time.monotonic() + 1.0
            while time.monotonic() < min(retry, deadline):
                self.sock.settimeout(max(0.01, min(retry, deadline) - time.monotonic()))
                try:
                    datagram, source = self.sock.recvfrom(65535)
                except socket.timeout:
                    break
                if datagram[:1] == bytes([RESPONSE]) and link.on_response(datagram):
                    return
                if datagram[:1] == bytes([COOKIE_REPLY]):
                    link.on_cookie_reply(datagram)
                    break
                self._session_datagram({link.peer: link}, datagram, source)
                if link.established:  # the peer's initiation won, and it confirmed
                    return
        raise TimeoutError("no handshake response in time")

    def _session_datagram(self, links: dict, datagram: bytes, source) -> tuple[bytes, bytes] | None:
        """Handle one session datagram; the (sender, payload bytes) of a data frame, else None."""
        sessions = [l for l in links.values() if isinstance(l, DocSession)]
        kind = datagram[:1]
        if kind == bytes([INITIATION]):
            for link in sessions:
                response = link.on_initiation(datagram)
                if response is not None:
                    self.sock.sendto(response, source)
                    return None
            return None
        if kind == bytes([TRANSPORT]):
            for link in sessions:
                try:
                    frame = link.open_frame(datagram)
                except DocPeerError:
                    continue
                if frame[:1] == b"\x00":
                    return link.peer, frame[1:]
                if frame[:1] == b"\x01" and len(frame) == 9 and link.current is not None:
                    self.sock.sendto(link._frame(b"\x02" + frame[1:]), source)  # PATH_RESPONSE
                return None  # keepalive or path frame
        return None

    def receive(self, links: dict, timeout: float = 5.0) -> tuple[bytes, DocPayload]:
        """Wait for the next Payload that opens; handshakes are answered on the
        way, everything else is skipped (dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no datagram opened in time")
            self.sock.settimeout(left)
            try:
                datagram, source = self.sock.recvfrom(65535)
            except socket.timeout:
                raise TimeoutError("no datagram opened in time") from None
            if datagram[:1] and datagram[0] in SESSION_TYPES:
                opened = self._session_datagram(links, datagram, source)
                if opened is not None:
                    try:
                        return opened[0], decode_payload(opened[1])
                    except DocPeerError:
                        continue
                continue
            link = links.get(datagram[1:33])
            if link is None or isinstance(link, DocSession):
                continue
            try:
                sender, data = link.open(datagram)
                return sender, decode_payload(data)
            except DocPeerError:
                continue

    def close(self) -> None:
        self.sock.close()


# --- a reference-behaviour peer (docs/PROTOCOL.md 12 and 15) ------------------------


@dataclass
class Quirks:
    """Behaviours of deployed reference peers (docs/PROTOCOL.md section 15),
    each a switch; all off is a peer that follows section 12 to the letter."""

    repeated_parents: int = 0
    """Name one DAG leaf this many times as the parents of each own message."""
    distinct_parents: int = 0
    """Name this many distinct held messages (the latest) as parents instead."""
    never_ack_duplicate: bool = False
    """ACK a MESSAGE only when first stored; never ACK a held one again
    (nor an OFFER of one)."""
    accept_any_group: bool = False
    """Store, ACK and deliver MESSAGEs of any group."""
    empty_replies: bool = False
    """Answer every payload with a payload, empty if nothing else is due."""
    always_metadata: bool = True
    """Write ``metadata`` on every message (section 10.2)."""
    needs_metadata: bool = False
    """Treat a MESSAGE without ``metadata`` as fatal (the reference's
    interactive mode crashes on it): counted in ``RefPeer.crashes``."""
    linear_backoff: bool = False
    """Resend after 2·n epochs (n = sends so far) instead of 1, 2, 4, … 16."""


class RefPeer:
    """A whole MVDS node on a DocPeer socket, talking to one daemon.

    Sections 12.1-12.2 with :class:`Quirks`: it appends, OFFERs or sends,
    retransmits until ACKed, ACKs, REQUESTs and answers REQUESTs.  It runs
    in the caller's thread (:meth:`step`), with its own seeded loss on both
    directions.
    """

    def __init__(
        self,
        me: DocIdentity,
        peer_id: bytes,
        address: tuple[str, int],
        groups: list[bytes],
        *,
        quirks: Quirks | None = None,
        interactive: bool = False,
        plaintext: bool = True,
        epoch: float = 0.05,
        loss: float = 0.0,
        seed: int = 0,
        max_datagram: int = 1100,
    ) -> None:
        import random

        self.peer = DocPeer(me)
        self.link = DocLink(me, peer_id, plaintext=plaintext)
        self.peer_id = peer_id
        self.address = address
        self.groups = set(groups)
        self.quirks = quirks or Quirks()
        self.interactive = interactive
        self.epoch = epoch
        self.loss = loss
        self.rng = random.Random(seed)
        self.max_datagram = max_datagram
        self.messages: dict[bytes, DocMessage] = {}
        self.order: list[bytes] = []
        self.leaves: dict[bytes, list[bytes]] = {}
        self.received: list[bytes] = []
        """Ids of messages received from the daemon, in first-arrival order."""
        self.records: dict[bytes, list] = {}
        """id -> [kind ("offer" | "message" | "request"), sends, due time]."""
        self.acks: list[bytes] = []
        self.crashes = 0
        self.dropped_foreign = 0
        self.sends = {"offer": 0, "message": 0, "request": 0}
        self.resends = 0
        self.lose_acks = False
        """Test hook: the network loses every ACK this peer sends."""
        self._reply = False

    # appending
    def append(self, group: bytes, body: bytes, timestamp: int) -> DocMessage:
        leaves = self.leaves.get(group, [])
        if self.quirks.distinct_parents:
            held = [i for i in self.order if self.messages[i].group_id == group]
            parents = held[-self.quirks.distinct_parents :]
        elif self.quirks.repeated_parents and leaves:
            parents = [leaves[-1]] * self.quirks.repeated_parents
        else:
            parents = list(leaves)
        message = DocMessage(group, timestamp, body, parents)
        self._store(message)
        self.records[message.id] = ["offer" if self.interactive else "message", 0, 0.0]
        return message

    def _store(self, message: DocMessage) -> None:
        self.messages[message.id] = message
        self.order.append(message.id)
        leaves = [p for p in self.leaves.get(message.group_id, []) if p not in message.parents]
        self.leaves[message.group_id] = leaves + [message.id]

    # receiving (12.1, in its order: acks, messages, offers, requests)
    def _handle(self, payload: DocPayload, now: float) -> None:
        quirks = self.quirks
        for identifier in payload.acks:
            record = self.records.get(identifier)
            if record is not None and record[0] != "request":
                del self.records[identifier]
        for message in payload.messages:
            if quirks.needs_metadata and not message.has_metadata:
                self.crashes += 1
                continue
            if message.group_id not in self.groups and not quirks.accept_any_group:
                self.dropped_foreign += 1
                continue
            identifier = message.id
            held = identifier in self.messages
            if not held:
                self._store(message)
                self.received.append(identifier)
            if not held or not quirks.never_ack_duplicate:
                self.acks.append(identifier)
            record = self.records.get(identifier)
            if record is not None:
                del self.records[identifier]
        for identifier in payload.offers:
            if identifier in self.messages:
                if not quirks.never_ack_duplicate:
                    self.acks.append(identifier)
            elif identifier not in self.records:
                self.records[identifier] = ["request", 0, now]
        for identifier in payload.requests:
            if identifier in self.messages:
                record = self.records.get(identifier)
                sends = record[1] if record else 0
                self.records[identifier] = ["message", sends, now]
        if quirks.empty_replies:
            self._reply = True

    # sending (12.2)
    def _delay(self, sends: int) -> float:
        if self.quirks.linear_backoff:
            return 2 * sends * self.epoch
        return min(2 ** (sends - 1), 16) * self.epoch

    def _flush(self, now: float) -> None:
        payload = DocPayload(acks=[] if self.lose_acks else self.acks)
        self.acks = []
        for identifier, record in self.records.items():
            kind, sends, due = record
            if due > now:
                continue
            if kind == "offer":
                payload.offers.append(identifier)
            elif kind == "request":
                payload.requests.append(identifier)
            else:
                payload.messages.append(self.messages[identifier])
            self.sends[kind] += 1
            if sends:
                self.resends += 1
            record[1] = sends + 1
            record[2] = now + self._delay(sends + 1)
        reply, self._reply = self._reply, False
        chunks = self._chunks(payload)
        if not chunks and reply:
            chunks = [b""]
        for chunk in chunks:
            if self.rng.random() >= self.loss:
                self.peer.sock.sendto(self.link.seal(chunk), self.address)

    def _chunks(self, payload: DocPayload) -> list[bytes]:
        fields = [_bytes_field(0x0A, i) for i in payload.acks]
        fields += [_bytes_field(0x12, i) for i in payload.offers]
        fields += [_bytes_field(0x1A, i) for i in payload.requests]
        fields += [
            _bytes_field(0x22, encode_message(m, always_metadata=self.quirks.always_metadata))
            for m in payload.messages
        ]
        chunks: list[bytes] = []
        current = b""
        for encoded in fields:
            if current and len(current) + len(encoded) > self.max_datagram:
                chunks.append(current)
                current = b""
            current += encoded
        if current:
            chunks.append(current)
        return chunks

    def hello(self) -> None:
        self.peer.sock.sendto(self.link.seal(b""), self.address)

    def step(self, duration: float) -> None:
        """Run for ``duration`` seconds: receive, and send at every epoch."""
        end = time.monotonic() + duration
        next_flush = time.monotonic()
        sock = self.peer.sock
        while True:
            now = time.monotonic()
            if now >= next_flush:
                self._flush(now)
                next_flush = now + self.epoch
            if now >= end:
                return
            sock.settimeout(max(0.0005, min(next_flush, end) - now))
            try:
                datagram, _ = sock.recvfrom(65535)
            except (socket.timeout, BlockingIOError):
                continue
            if self.rng.random() < self.loss:
                continue
            try:
                _, data = self.link.open(datagram)
                payload = decode_payload(data)
            except DocPeerError:
                continue
            self._handle(payload, time.monotonic())
            if self._reply or self.acks:
                self._flush(time.monotonic())

    def pending(self) -> int:
        """Own records not settled (REQUESTs for what arrived are settled)."""
        return sum(
            1 for i, r in self.records.items() if not (r[0] == "request" and i in self.messages)
        )

    def close(self) -> None:
        self.peer.close()
