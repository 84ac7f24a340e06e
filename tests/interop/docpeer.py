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


# --- section 3: one UDP socket --------------------------------------------------------


class DocPeer:
    """A real UDP socket speaking the envelope, for pointing at a daemon."""

    def __init__(self, me: DocIdentity, bind: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.me = me
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(bind)
        self.address = self.sock.getsockname()

    def send(self, link: DocLink, address: tuple[str, int], payload: DocPayload | bytes) -> bytes:
        data = payload if isinstance(payload, bytes) else encode_payload(payload)
        datagram = link.seal(data)
        self.sock.sendto(datagram, address)
        return datagram

    def receive(
        self, links: dict[bytes, DocLink], timeout: float = 5.0
    ) -> tuple[bytes, DocPayload]:
        """Wait for the next datagram that opens; others are skipped (dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no datagram opened in time")
            self.sock.settimeout(left)
            try:
                datagram, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                raise TimeoutError("no datagram opened in time") from None
            link = links.get(datagram[1:33])
            if link is None:
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
