"""Print the test vectors of docs/PROTOCOL.md, computed by mvds itself.

    python scripts/protocol_vectors.py

Paste the output into the "Test vectors" section when the envelope changes
(tests/test_protocol_doc.py fails until the document and the code agree).
"""

from __future__ import annotations

import sys

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from mvds.ids import group_id_for_name, message_id
from mvds.secure import EnvelopeCodec, Identity
from mvds.secure.envelope import TYPE_RETIRED_STATIC
from mvds.secure.keys import direction_key
from mvds.engine.reconcile import INFINITY, MIN_BOUND, Session, fingerprint_of_ids, respond
from mvds.store.rangeindex import RangeIndex, make_key
from mvds.wire import (
    FEATURE_RECONCILE,
    FEATURE_SKETCH,
    Message,
    Mode,
    Payload,
    Range,
    ReconcileMessage,
    encode_payload,
)

# RFC 7748 section 6.1: implementers can check their X25519 against the RFC too.
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
BOB_PRIVATE = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
SEALED_COUNTER = 0x0102030405060708
HELLO_COUNTER = 42
GROUP = bytes(range(32))
GROUP_NAME = "general"


def vector_payload() -> Payload:
    """One of every record, and a message with metadata."""
    return Payload(
        acks=[bytes([0x11]) * 32],
        offers=[bytes([0x22]) * 32],
        requests=[bytes([0x33]) * 32],
        messages=[Message(GROUP, 1700000000, b"hello world", [bytes(range(32, 64))])],
    )


def edge_payload() -> Payload:
    """Defaults omitted (timestamp 0, empty body), an ephemeral flag, a negative timestamp."""
    return Payload(
        messages=[
            Message(GROUP, 0, b"", (), ephemeral=True),
            Message(GROUP, -1, b"x"),
        ]
    )


def reconcile_vectors() -> dict[str, Payload]:
    """Section 15: payloads of a reconciliation of GROUP.

    The initiator holds one item: the ``message_id`` vector's message
    (timestamp 1700000000).  ``reconcile_split_reply`` comes from a responder
    holding 20 items ``(1700000000 + i, SHA-256(u64le(i)))``, i = 0..19, that
    was asked with the fingerprint of an empty set; ``reconcile_idlist_*``
    from a responder holding the vector message and ``(1700000001, 0x33 x 32)``.
    """
    import hashlib

    vector_id = message_id(GROUP, 1700000000, b"hello world")
    one = RangeIndex([make_key(1700000000, vector_id)])
    query = Session(GROUP, one).start()
    twenty = RangeIndex(
        [make_key(1700000000 + i, hashlib.sha256(i.to_bytes(8, "little")).digest()) for i in range(20)]
    )
    empty_query = Session(GROUP, RangeIndex()).start()
    listed = ReconcileMessage(
        GROUP, MIN_BOUND, [Range(INFINITY, Mode.IDLIST, ids=[vector_id, bytes([0x22]) * 32])]
    )
    holder = RangeIndex([make_key(1700000000, vector_id), make_key(1700000001, bytes([0x33]) * 32)])

    def payload(messages: list[ReconcileMessage]) -> Payload:
        return Payload(features=FEATURE_RECONCILE, reconcile=messages)

    return {
        "reconcile_query": payload(query),
        "reconcile_in_sync_reply": payload(respond(one, query[0])),
        "reconcile_empty_reply": payload(respond(RangeIndex(), query[0])),
        "reconcile_split_reply": payload(respond(twenty, empty_query[0])),
        "reconcile_idlist_query": payload([listed]),
        "reconcile_idlist_reply": payload(respond(holder, listed)),
    }


def sketch_vectors() -> dict[str, bytes]:
    """Section 16.9: the per-item hash of the ``message_id`` vector's item,
    the ESTIMATE query of a holder of the twenty items of
    ``reconcile_split_reply``, and their table at sub-table size 16."""
    import hashlib

    from mvds.store import sketch

    vector_key = make_key(1700000000, message_id(GROUP, 1700000000, b"hello world"))
    twenty = RangeIndex(
        [make_key(1700000000 + i, hashlib.sha256(i.to_bytes(8, "little")).digest()) for i in range(20)]
    )
    estimate = ReconcileMessage(
        GROUP,
        MIN_BOUND,
        [Range(INFINITY, Mode.ESTIMATE, sketch=bytes(twenty.sketch().estimator))],
    )
    return {
        "sketch_short_key": vector_key[:16],
        "sketch_item_hash": sketch.item_hash(vector_key[:16]),
        "reconcile_estimate_query": encode_payload(
            Payload(features=FEATURE_RECONCILE | FEATURE_SKETCH, reconcile=[estimate])
        ),
        "sketch_table_16": twenty.sketch().table(16),
    }


def stream_ack_payload() -> Payload:
    """Section 16.10: the stream ACK of a node that got two new messages,
    the ``message_id`` vector's and the one of id 32 x 0x11 (their
    fingerprint is ``fingerprint_two``), from a peer that takes them."""
    from mvds.wire import FEATURE_STREAM_ACK, StreamAck

    ids = [message_id(GROUP, 1700000000, b"hello world"), bytes([0x11]) * 32]
    return Payload(
        features=FEATURE_RECONCILE | FEATURE_SKETCH | FEATURE_STREAM_ACK,
        stream_acks=[StreamAck(2, fingerprint_of_ids(ids))],
    )


def _seal_at(sender: Identity, receiver: Identity, counter: int, payload: bytes) -> bytes:
    """The retired static-key envelope (type 0x01), kept only to reproduce
    the document's historic vectors: mvds no longer seals or opens it."""
    key = direction_key(sender.shared_secret(receiver.peer_id), sender.peer_id, receiver.peer_id)
    counter_bytes = counter.to_bytes(8, "big")
    header = bytes((TYPE_RETIRED_STATIC,)) + sender.peer_id + counter_bytes
    return header + ChaCha20Poly1305(key).encrypt(bytes(4) + counter_bytes, payload, header)


def _plaintext(sender: Identity, receiver: Identity, payload: bytes) -> bytes:
    codec = EnvelopeCodec(sender)
    codec.add_peer(receiver.peer_id, plaintext=True)
    return codec.seal(receiver.peer_id, payload)


def vectors() -> dict[str, bytes]:
    """Every vector by name, in document order."""
    alice = Identity.from_private_bytes(ALICE_PRIVATE)
    bob = Identity.from_private_bytes(BOB_PRIVATE)
    shared = alice.shared_secret(bob.peer_id)
    payload = encode_payload(vector_payload())
    return {
        "alice_private": ALICE_PRIVATE,
        "alice_public": alice.peer_id,
        "bob_private": BOB_PRIVATE,
        "bob_public": bob.peer_id,
        "shared_secret": shared,
        "key_alice_to_bob": direction_key(shared, alice.peer_id, bob.peer_id),
        "key_bob_to_alice": direction_key(shared, bob.peer_id, alice.peer_id),
        "message_id": message_id(GROUP, 1700000000, b"hello world"),
        "group_id_general": group_id_for_name(GROUP_NAME),
        "payload": payload,
        "edge_payload": encode_payload(edge_payload()),
        "sealed_alice_to_bob": _seal_at(alice, bob, SEALED_COUNTER, payload),
        "sealed_hello_bob_to_alice": _seal_at(bob, alice, HELLO_COUNTER, b""),
        "plaintext_alice_to_bob": _plaintext(alice, bob, payload),
        "fingerprint_one": fingerprint_of_ids([message_id(GROUP, 1700000000, b"hello world")]),
        "fingerprint_two": fingerprint_of_ids(
            [message_id(GROUP, 1700000000, b"hello world"), bytes([0x11]) * 32]
        ),
        **{name: encode_payload(p) for name, p in reconcile_vectors().items()},
        **sketch_vectors(),
        "stream_ack": encode_payload(stream_ack_payload()),
    }


def format_vectors(values: dict[str, bytes], width: int = 64) -> str:
    """``name = hex``, long values continued on indented lines of ``width`` hex digits."""
    lines = []
    for name, value in values.items():
        text = value.hex()
        if len(text) <= width:
            lines.append(f"{name} = {text}")
        else:
            lines.append(f"{name} =")
            lines.extend(f"    {text[i:i + width]}" for i in range(0, len(text), width))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(format_vectors(vectors()) + "\n")
