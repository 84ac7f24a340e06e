"""The MVDS wire format: Payload and Message, byte-compatible with vacp2p/mvds.

Field numbers follow the reference Go implementation (see proto/mvds.proto),
not the RFC's 5001+ numbers.

Encoding is written by hand rather than through the generated protobuf
classes because it is on the hot path: messages are immutable, so each one is
encoded once and its bytes are reused for every payload that carries it, and a
Payload's encoding is just the concatenation of its records' field encodings,
which is what lets :func:`split_payload` pack records into datagrams without
re-encoding anything.  The output is exactly what protobuf itself produces
for a message whose ``metadata`` field is set, which the reference Go
implementation always does (tests/test_wire.py checks this against the
generated module with hypothesis).

Decoding uses the generated module (protobuf's C parser) and then validates
what protobuf cannot: ids and group ids are 32 bytes.  Any problem raises
:class:`WireError`, never anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Iterable, Sequence

from google.protobuf.message import DecodeError

from mvds._pb import mvds_pb2 as _pb
from mvds.ids import ID_SIZE, INT64_MAX, INT64_MIN, message_id
from mvds.ids import _ID_DOMAIN, _pack_timestamp, _sha256

__all__ = [
    "FEATURE_RECONCILE",
    "FEATURE_SKETCH",
    "FEATURE_STREAM_ACK",
    "StreamAck",
    "Message",
    "Mode",
    "Payload",
    "Range",
    "ReconcileMessage",
    "WireError",
    "decode_payload",
    "decode_reconcile",
    "encode_message",
    "encode_payload",
    "encode_reconcile",
    "split_payload",
]


class WireError(ValueError):
    """Bytes that are not a valid MVDS payload (the only error decoding raises)."""


class Message:
    """An immutable MVDS message with its locally computed id.

    ``parents`` and ``ephemeral`` are the 4/MVDS-META metadata; they travel
    with the message but are not part of its id.
    """

    __slots__ = ("group_id", "timestamp", "body", "parents", "ephemeral", "id", "_encoded")

    group_id: bytes
    timestamp: int
    body: bytes
    parents: tuple[bytes, ...]
    ephemeral: bool
    id: bytes

    def __init__(
        self,
        group_id: bytes,
        timestamp: int,
        body: bytes,
        parents: Sequence[bytes] = (),
        ephemeral: bool = False,
    ) -> None:
        if len(group_id) != ID_SIZE:
            raise ValueError(f"group id must be {ID_SIZE} bytes, got {len(group_id)}")
        if not INT64_MIN <= timestamp <= INT64_MAX:
            raise ValueError(f"timestamp {timestamp} does not fit in int64")
        for parent in parents:
            if len(parent) != ID_SIZE:
                raise ValueError(f"parent id must be {ID_SIZE} bytes, got {len(parent)}")
        if type(group_id) is not bytes:
            group_id = bytes(group_id)
        if type(body) is not bytes:
            body = bytes(body)
        self.group_id = group_id
        self.timestamp = int(timestamp)
        self.body = body
        self.parents = tuple(p if type(p) is bytes else bytes(p) for p in parents)
        self.ephemeral = bool(ephemeral)
        self.id = message_id(group_id, self.timestamp, body)
        self._encoded: bytes | None = None

    @classmethod
    def _from_wire(
        cls,
        group_id: bytes,
        timestamp: int,
        body: bytes,
        parents: tuple[bytes, ...],
        ephemeral: bool,
        encoded: bytes | None,
        known_id: bytes | None = None,
    ) -> "Message":
        """Build from fields the decoder has already validated (hot path).

        ``known_id`` is for messages read back from this node's own store,
        whose id was computed here when they were stored; bytes from the
        network never pass it, so their id is always computed locally.
        """
        self = cls.__new__(cls)
        self.group_id = group_id
        self.timestamp = timestamp
        self.body = body
        self.parents = parents
        self.ephemeral = ephemeral
        if known_id is None:
            known_id = _sha256(_ID_DOMAIN + group_id + _pack_timestamp(timestamp) + body).digest()
        self.id = known_id
        self._encoded = encoded
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.id == other.id
            and self.parents == other.parents
            and self.ephemeral == other.ephemeral
        )

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return (
            f"Message(id={self.id[:4].hex()}, group={self.group_id[:4].hex()}, "
            f"timestamp={self.timestamp}, body={len(self.body)}B, "
            f"parents={len(self.parents)}, ephemeral={self.ephemeral})"
        )


# --- the reconciliation extension (docs/PROTOCOL.md section 16) -------------

FEATURE_RECONCILE = 1
"""Bit of ``Payload.features``: the sender answers and sends Reconcile."""

FEATURE_SKETCH = 2
"""Bit of ``Payload.features``: the sender also answers ESTIMATE ranges with
SKETCH ranges (docs/PROTOCOL.md section 16.9)."""

FEATURE_STREAM_ACK = 4
"""Bit of ``Payload.features``: the sender settles what it sends by
``StreamAck`` and acknowledges what it receives with them
(docs/PROTOCOL.md section 16.10)."""

ESTIMATOR_BYTES = 768
SKETCH_CELL_BYTES = 21
SKETCH_MAX_CELLS = 3 * 2520

RECONCILE_INFINITY = b"\xff" * 41
"""The bound key above every item (see :mod:`mvds.store.rangeindex`)."""

_BIAS = 1 << 63


class Mode(IntEnum):
    """What a reconcile range carries."""

    SKIP = 0
    FINGERPRINT = 1
    IDLIST = 2
    IDLIST_REPLY = 3
    ESTIMATE = 4
    SKETCH = 5


@dataclass(slots=True)
class Range:
    """One range of a reconcile message; its lower bound is the previous
    range's upper bound (or the message's ``lower``)."""

    upper: bytes
    """Bound key: 8-byte biased big-endian timestamp || id prefix
    (:func:`mvds.store.rangeindex.make_key`), or ``RECONCILE_INFINITY``."""
    mode: Mode
    fingerprint: bytes = b""
    ids: list[bytes] = field(default_factory=list)
    """IDLIST: the sender's ids in the range, in item order.  IDLIST_REPLY:
    the replier's ids in the range that the list did not name."""
    missing: bytes = b""
    """IDLIST_REPLY: bit ``i`` (byte ``i // 8``, bit ``i % 8``, least
    significant first) set when the replier lacks the list's ``i``-th id."""
    sketch: bytes = b""
    """ESTIMATE: the sender's strata estimator; SKETCH: cells of a table."""
    cells: int = 0
    """ESTIMATE: the smallest sub-table size wanted (0: the responder's
    choice); SKETCH: the table's sub-table size."""
    offset: int = 0
    """SKETCH: index of the first cell in ``sketch``."""


@dataclass(slots=True)
class ReconcileMessage:
    """A reconcile message about one group: contiguous ranges from ``lower``."""

    group_id: bytes
    lower: bytes
    ranges: list[Range]
    reply: bool = False
    """An answer from the responder (True) or a query from the initiator."""

    @property
    def upper(self) -> bytes:
        return self.ranges[-1].upper if self.ranges else self.lower


@dataclass(slots=True)
class StreamAck:
    """One acknowledgement for the ``count`` new messages the sender got
    from the peer since its previous one (docs/PROTOCOL.md 16.10):
    ``fingerprint`` is the fingerprint (16.3) of their ids."""

    count: int
    fingerprint: bytes


@dataclass(slots=True)
class Payload:
    """One MVDS payload: ACK, OFFER and REQUEST ids and whole MESSAGEs, and
    mvds's extension fields (ignored by the reference implementation)."""

    acks: list[bytes] = field(default_factory=list)
    offers: list[bytes] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    features: int = 0
    """Extensions the sender speaks (``FEATURE_RECONCILE``); not a record."""
    reconcile: list[ReconcileMessage] = field(default_factory=list)
    stream_acks: list[StreamAck] = field(default_factory=list)
    """Acknowledgements of runs of messages (``FEATURE_STREAM_ACK``)."""

    def is_empty(self) -> bool:
        return not (
            self.acks
            or self.offers
            or self.requests
            or self.messages
            or self.reconcile
            or self.stream_acks
        )

    def record_count(self) -> int:
        return (
            len(self.acks)
            + len(self.offers)
            + len(self.requests)
            + len(self.messages)
            + len(self.reconcile)
            + len(self.stream_acks)
        )


# --- encoding -------------------------------------------------------------

_U64 = (1 << 64) - 1


def _varint(value: int) -> bytes:
    """Protobuf base-128 varint; negative int64 values as 10-byte two's complement."""
    value &= _U64
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_GROUP_TAG = b"\x0a" + bytes((ID_SIZE,))  # group_id: field 1, 32 bytes
_PARENT_TAG = b"\x0a" + bytes((ID_SIZE,))  # Metadata.parents: field 1, 32 bytes
_last_timestamp: tuple[int, bytes] = (0, b"")


def _length(n: int) -> bytes:
    """The varint of a length: one or two bytes for anything below 16 KiB."""
    if n < 0x80:
        return bytes((n,))
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    return _varint(n)


def _length_delimited(tag: bytes, data: bytes) -> bytes:
    return tag + _length(len(data)) + data


_TAG_ACK = b"\x0a"
_TAG_OFFER = b"\x12"
_TAG_REQUEST = b"\x1a"
_TAG_MESSAGE = b"\x22"
_ID_PREFIX = {tag: tag + bytes((ID_SIZE,)) for tag in (_TAG_ACK, _TAG_OFFER, _TAG_REQUEST)}


def encode_message(message: Message) -> bytes:
    """Encode a Message (protobuf ``Message``); cached on the object.

    Group ids and parents are always 32 bytes (``Message`` checks), so their
    tags and lengths are constants; consecutive messages usually share a
    timestamp (Unix seconds), so its varint is reused.
    """
    global _last_timestamp
    encoded = message._encoded
    if encoded is not None:
        return encoded
    parts = [_GROUP_TAG, message.group_id]
    timestamp = message.timestamp
    if timestamp:
        last, varint = _last_timestamp
        if timestamp != last:
            varint = _varint(timestamp)
            _last_timestamp = (timestamp, varint)
        parts += (b"\x10", varint)
    body = message.body
    if body:
        parts += (b"\x1a", _length(len(body)), body)
    # ``metadata`` is always written, even empty (``22 00``), as the
    # reference implementation does: its interactive mode dereferences the
    # field without a nil check and crashes on a message that lacks it.
    parents = message.parents
    if parents:
        meta = b"".join([_PARENT_TAG + parent for parent in parents])
        if message.ephemeral:
            meta += b"\x10\x01"
        parts += (b"\x22", _length(len(meta)), meta)
    elif message.ephemeral:
        parts.append(b"\x22\x02\x10\x01")
    else:
        parts.append(b"\x22\x00")
    encoded = b"".join(parts)
    message._encoded = encoded
    return encoded


def _id_field(tag: bytes, identifier: bytes) -> bytes:
    if len(identifier) == ID_SIZE:
        return _ID_PREFIX[tag] + identifier
    return _length_delimited(tag, identifier)


def _message_field(message: Message) -> bytes:
    return _length_delimited(_TAG_MESSAGE, encode_message(message))


def _bound_fields(key: bytes, ts_tag: bytes, id_tag: bytes, infinite_tag: bytes | None) -> bytes:
    if key == RECONCILE_INFINITY:
        assert infinite_tag is not None
        return infinite_tag + b"\x01"
    timestamp = int.from_bytes(key[:8], "big") - _BIAS
    out = ts_tag + _varint(timestamp) if timestamp else b""
    prefix = key[8:]
    if prefix:
        out += _length_delimited(id_tag, prefix)
    return out


def _range_encoding(r: Range) -> bytes:
    parts = [_bound_fields(r.upper, b"\x08", b"\x12", b"\x18")]
    if r.mode:
        parts.append(b"\x20" + _varint(int(r.mode)))
    if r.fingerprint:
        parts.append(_length_delimited(b"\x2a", r.fingerprint))
    for identifier in r.ids:
        parts.append(_length_delimited(b"\x32", identifier))
    if r.missing:
        parts.append(_length_delimited(b"\x3a", r.missing))
    if r.sketch:
        parts.append(_length_delimited(b"\x42", r.sketch))
    if r.cells:
        parts.append(b"\x48" + _varint(r.cells))
    if r.offset:
        parts.append(b"\x50" + _varint(r.offset))
    return b"".join(parts)


def encode_reconcile(message: ReconcileMessage) -> bytes:
    """Encode a ``Reconcile`` (docs/PROTOCOL.md section 16), as protobuf would."""
    parts = [
        _length_delimited(b"\x0a", message.group_id),
        _bound_fields(message.lower, b"\x10", b"\x1a", None),
    ]
    for r in message.ranges:
        parts.append(_length_delimited(b"\x22", _range_encoding(r)))
    if message.reply:
        parts.append(b"\x28\x01")
    return b"".join(parts)


def encode_stream_ack(ack: StreamAck) -> bytes:
    """Encode a ``StreamAck`` (docs/PROTOCOL.md section 16.10), as protobuf would."""
    return b"\x08" + _varint(ack.count) + _length_delimited(b"\x12", ack.fingerprint)


_TAG_FEATURES = b"\x50"  # field 10, varint
_TAG_RECONCILE = b"\x5a"  # field 11, length-delimited
_TAG_STREAM_ACK = b"\x62"  # field 12, length-delimited


def _fields(payload: Payload, features: bool = True) -> Iterable[bytes]:
    """Each record's field encoding, in protobuf's canonical (field number) order."""
    for identifier in payload.acks:
        yield _id_field(_TAG_ACK, identifier)
    for identifier in payload.offers:
        yield _id_field(_TAG_OFFER, identifier)
    for identifier in payload.requests:
        yield _id_field(_TAG_REQUEST, identifier)
    for message in payload.messages:
        yield _message_field(message)
    if payload.features and features:
        yield _TAG_FEATURES + _varint(payload.features)
    for reconcile in payload.reconcile:
        yield _length_delimited(_TAG_RECONCILE, encode_reconcile(reconcile))
    for ack in payload.stream_acks:
        yield _length_delimited(_TAG_STREAM_ACK, encode_stream_ack(ack))


def encode_payload(payload: Payload) -> bytes:
    """Encode a Payload exactly as protobuf would serialize it."""
    return b"".join(_fields(payload))


def split_payload(payload: Payload, max_size: int) -> list[bytes]:
    """Encode ``payload`` as one or more payloads of at most ``max_size`` bytes.

    Every chunk is a complete, valid Payload on its own (a receiver needs no
    reassembly; a lost chunk loses only its records, which the sync state
    retransmits).  Records are packed greedily in their order; a single
    message whose encoding exceeds ``max_size`` travels alone in a chunk of
    its own, larger than ``max_size``.  An empty payload gives one empty
    chunk, which still tells the peer we are here.  ``features`` goes
    into every chunk.
    """
    if max_size < 64:
        raise ValueError("max_size below 64 bytes cannot carry a single record")
    # ``features`` describes the sender, not a record: every chunk has it,
    # so a receiver learns it from any datagram (docs/PROTOCOL.md 16.1).
    head = _TAG_FEATURES + _varint(payload.features) if payload.features else b""
    chunks: list[bytes] = []
    current: list[bytes] = [head]
    size = len(head)
    for encoded in _fields(payload, features=False):
        if size + len(encoded) > max_size and len(current) > 1:
            chunks.append(b"".join(current))
            current = [head]
            size = len(head)
        current.append(encoded)
        size += len(encoded)
    if len(current) > 1 or not chunks:
        chunks.append(b"".join(current))
    return chunks


# --- decoding -------------------------------------------------------------


def _check_ids(kind: str, ids: Iterable[bytes]) -> list[bytes]:
    out = list(ids)
    if out:
        lengths = set(map(len, out))  # one C-level pass over the ids
        if lengths != {ID_SIZE}:
            for index, identifier in enumerate(out):
                if len(identifier) != ID_SIZE:
                    raise WireError(
                        f"{kind} {index} is {len(identifier)} bytes; ids are {ID_SIZE} bytes"
                    )
    return out


def decode_payload(data: bytes) -> Payload:
    """Parse a Payload; raises :class:`WireError` for anything malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError(f"a payload is bytes, not {type(data).__name__}")
    parsed = _pb.Payload()
    try:
        parsed.ParseFromString(bytes(data))
    except DecodeError as exc:
        raise WireError(f"malformed payload: {exc}") from None
    except Exception as exc:  # protobuf may raise other errors on hostile input
        raise WireError(f"malformed payload: {type(exc).__name__}: {exc}") from None
    messages = []
    from_wire = Message._from_wire
    for index, pm in enumerate(parsed.messages):
        group_id = pm.group_id
        if len(group_id) != ID_SIZE:
            raise WireError(
                f"message {index} has a {len(group_id)}-byte group id; "
                f"group ids are {ID_SIZE} bytes"
            )
        if pm.HasField("metadata"):
            meta = pm.metadata
            parents = tuple(_check_ids(f"message {index} parent", meta.parents))
            ephemeral = meta.ephemeral
        else:
            parents = ()
            ephemeral = False
        messages.append(from_wire(group_id, pm.timestamp, pm.body, parents, ephemeral, None))
    return Payload(
        acks=_check_ids("ack", parsed.acks),
        offers=_check_ids("offer", parsed.offers),
        requests=_check_ids("request", parsed.requests),
        messages=messages,
        features=parsed.features,
        reconcile=[_reconcile_from(index, pr) for index, pr in enumerate(parsed.reconcile)],
        stream_acks=[_stream_ack_from(index, pa) for index, pa in enumerate(parsed.stream_acks)],
    )


def _stream_ack_from(index: int, pa: "_pb.StreamAck") -> StreamAck:
    if pa.count < 1:
        raise WireError(f"stream ack {index} acknowledges nothing")
    if len(pa.fingerprint) != 16:
        raise WireError(f"stream ack {index}: a fingerprint is 16 bytes")
    return StreamAck(pa.count, pa.fingerprint)


def _bound_key(where: str, timestamp: int, prefix: bytes) -> bytes:
    if len(prefix) > ID_SIZE:
        raise WireError(f"{where}: an id prefix is at most {ID_SIZE} bytes")
    # Trailing zero bytes name the same bound: drop them (one canonical form).
    return (timestamp + _BIAS).to_bytes(8, "big") + prefix.rstrip(b"\x00")


def _reconcile_from(index: int, pr: "_pb.Reconcile") -> ReconcileMessage:
    where = f"reconcile {index}"
    if len(pr.group_id) != ID_SIZE:
        raise WireError(f"{where} has a {len(pr.group_id)}-byte group id")
    lower = _bound_key(where, pr.lower_timestamp, pr.lower_id)
    ranges = []
    previous = lower
    for n, prange in enumerate(pr.ranges):
        at = f"{where} range {n}"
        if previous == RECONCILE_INFINITY:
            raise WireError(f"{at} follows the infinite bound")
        if prange.infinite:
            upper = RECONCILE_INFINITY
        else:
            upper = _bound_key(at, prange.timestamp, prange.id)
        if upper <= previous:
            raise WireError(f"{at}: bounds must increase")
        if prange.mode > Mode.SKETCH:
            raise WireError(f"{at}: unknown mode {prange.mode}")
        mode = Mode(prange.mode)
        if mode is Mode.FINGERPRINT and len(prange.fingerprint) != 16:
            raise WireError(f"{at}: a fingerprint is 16 bytes")
        if mode is Mode.ESTIMATE and len(prange.sketch) != ESTIMATOR_BYTES:
            raise WireError(f"{at}: an estimator is {ESTIMATOR_BYTES} bytes")
        if mode is Mode.SKETCH and (
            not prange.sketch
            or len(prange.sketch) % SKETCH_CELL_BYTES
            or 3 * prange.cells > SKETCH_MAX_CELLS
            or prange.offset + len(prange.sketch) // SKETCH_CELL_BYTES > 3 * prange.cells
        ):
            raise WireError(f"{at}: a sketch slice must be whole cells within its table")
        ranges.append(
            Range(
                upper,
                mode,
                prange.fingerprint,
                _check_ids(f"{at} id", prange.ids),
                prange.missing,
                prange.sketch,
                prange.cells,
                prange.offset,
            )
        )
        previous = upper
    return ReconcileMessage(pr.group_id, lower, ranges, pr.reply)


def decode_reconcile(data: bytes) -> ReconcileMessage:
    """Parse one ``Reconcile`` encoding (tests and tools; payloads carry them)."""
    parsed = _pb.Reconcile()
    try:
        parsed.ParseFromString(bytes(data))
    except Exception as exc:
        raise WireError(f"malformed reconcile: {exc}") from None
    return _reconcile_from(0, parsed)
