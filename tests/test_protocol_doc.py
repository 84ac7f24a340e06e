"""docs/PROTOCOL.md cannot drift from the code: its vectors and numbers are checked here."""

from __future__ import annotations

import importlib.util
import pathlib
import re

import pytest

from interop.docvectors import DOC_PATH, doc_vectors
from mvds.engine import EngineConfig
from mvds.ids import group_id_for_name, message_id
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from mvds.secure import EnvelopeCodec, Identity
from mvds import limits
from mvds.secure.envelope import REASONS, TYPE_PLAINTEXT, TYPE_RETIRED_STATIC
from mvds.secure.keys import KDF_LABEL, direction_key
from mvds.secure.replay import DEFAULT_WINDOW_SIZE
from mvds.wire import decode_payload

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = DOC_PATH.read_text()


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "protocol_vectors", ROOT / "scripts" / "protocol_vectors.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _load_generator()


VECTORS = doc_vectors(DOC)


def test_every_vector_is_documented_and_matches_the_code():
    computed = GEN.vectors()
    assert list(VECTORS) == list(computed)
    for name, value in computed.items():
        assert VECTORS[name].hex() == value.hex(), name


def test_keys_and_ids_recomputed_from_the_primitives():
    alice = Identity.from_private_bytes(VECTORS["alice_private"])
    bob = Identity.from_private_bytes(VECTORS["bob_private"])
    assert alice.peer_id == VECTORS["alice_public"]
    assert bob.peer_id == VECTORS["bob_public"]
    assert alice.shared_secret(bob.peer_id) == VECTORS["shared_secret"]
    assert bob.shared_secret(alice.peer_id) == VECTORS["shared_secret"]
    assert message_id(bytes(range(32)), 1700000000, b"hello world") == VECTORS["message_id"]
    assert group_id_for_name("general") == VECTORS["group_id_general"]


def _open_retired(me: str, datagram: bytes) -> tuple[bytes, bytes]:
    """Open a historic type-0x01 vector by the document's steps (mvds no
    longer speaks 0x01; the vectors stay so old captures can be read)."""
    receiver = Identity.from_private_bytes(VECTORS[f"{me}_private"])
    sender = datagram[1:33]
    key = direction_key(receiver.shared_secret(sender), sender, receiver.peer_id)
    return sender, ChaCha20Poly1305(key).decrypt(bytes(4) + datagram[33:41], datagram[41:], datagram[:41])


def test_documented_datagrams_open_to_the_documented_payloads():
    sender, data = _open_retired("bob", VECTORS["sealed_alice_to_bob"])
    assert sender == VECTORS["alice_public"]
    assert data == VECTORS["payload"]
    assert decode_payload(data) == GEN.vector_payload()
    assert decode_payload(data).messages[0].id == VECTORS["message_id"]
    assert decode_payload(VECTORS["edge_payload"]) == GEN.edge_payload()
    assert _open_retired("alice", VECTORS["sealed_hello_bob_to_alice"]) == (VECTORS["bob_public"], b"")

    plain_bob = EnvelopeCodec(Identity.from_private_bytes(VECTORS["bob_private"]))
    plain_bob.add_peer(VECTORS["alice_public"], plaintext=True)
    assert plain_bob.open(VECTORS["plaintext_alice_to_bob"]) == (
        VECTORS["alice_public"],
        VECTORS["payload"],
    )


def test_prose_describing_the_vectors_is_accurate():
    sealed = VECTORS["sealed_alice_to_bob"]
    size = len(VECTORS["payload"])
    assert f"`payload` is {size} bytes" in DOC
    assert f"{size} bytes of ciphertext" in DOC
    assert len(sealed) == size + limits.SEALED_OVERHEAD
    assert sealed[33:41].hex() == "0102030405060708"
    assert int.from_bytes(VECTORS["sealed_hello_bob_to_alice"][33:41], "big") == 42


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_sizes_table_matches_the_code():
    table = dict(
        (label.strip(), _number(value))
        for label, value in re.findall(r"^\| ([^|]+?)\s*\| ([\d,]+)\s*\|$", DOC, re.M)
    )
    assert table["sealed envelope overhead (41 header + 16 tag)"] == limits.SEALED_OVERHEAD
    assert table["plaintext envelope overhead"] == limits.PLAINTEXT_OVERHEAD
    assert table["default maximum datagram size (envelope included)"] == limits.DEFAULT_DATAGRAM_SIZE
    assert table["largest datagram (IPv4 UDP payload)"] == limits.MAX_DATAGRAM_SIZE
    assert (
        table["largest Payload in a sealed datagram"]
        == limits.MAX_DATAGRAM_SIZE - limits.SEALED_OVERHEAD
    )
    assert table["most parents mvds puts on a message"] == EngineConfig().max_parents
    assert table["most distinct parents a receiver waits for"] == EngineConfig().max_parents
    assert table["largest message body"] == limits.MAX_BODY_SIZE


def test_constants_named_in_the_prose_match_the_code():
    assert f'"{KDF_LABEL.decode()}"' in DOC
    assert f"**W = {DEFAULT_WINDOW_SIZE}**" in DOC
    assert f"| `0x{TYPE_RETIRED_STATIC:02x}` | sealed" in DOC
    assert f"| `0x{TYPE_PLAINTEXT:02x}` | plaintext" in DOC
    documented = set(re.findall(r"^\| `([a-z_]+)`\s+\|", DOC, re.M))
    # replay and auth_failed: a session transport datagram's (section "Sessions").
    assert documented == set(REASONS) | {"malformed", "rate_limited", "replay", "auth_failed"}


def _fields(proto_text: str) -> list[str]:
    return re.findall(r"^\s*((?:repeated )?\w+ \w+ = \d+);", proto_text, re.M)


@pytest.mark.parametrize("name", ["Payload", "Message", "Metadata"])
def test_schema_in_the_document_is_the_committed_proto(name):
    proto = (ROOT / "proto" / "mvds.proto").read_text()
    doc_schema = re.search(r"```proto\n(.*?)```", DOC, re.S).group(1)

    def message_block(text):
        return re.search(rf"message {name} \{{(.*?)\}}", text, re.S).group(1)

    assert _fields(message_block(doc_schema)) == _fields(message_block(proto))
    assert _fields(message_block(doc_schema))


# --- section 16: the reconciliation extension ---------------------------------------


def _section(number: int) -> str:
    start = DOC.index(f"## {number}. ")
    end = DOC.find("\n## ", start + 1)
    return DOC[start:] if end < 0 else DOC[start:end]


@pytest.mark.parametrize("name", ["Reconcile", "Range", "StreamAck"])
def test_section_16_schema_is_the_committed_proto(name):
    proto = (ROOT / "proto" / "mvds.proto").read_text()
    blocks = re.findall(r"```proto\n(.*?)```", _section(16), re.S)

    def message_block(text):
        return re.search(rf"message {name} \{{(.*?)\}}", text, re.S).group(1)

    documented = next(b for b in blocks if f"message {name} " in b)
    assert _fields(message_block(documented)) == _fields(message_block(proto))


def test_section_16_extension_fields_and_key_bytes():
    from mvds.engine.reconcile import BUCKETS, IDLIST_THRESHOLD
    from mvds.engine.catchup import NEGOTIATE_TIMEOUT
    from mvds.wire import FEATURE_RECONCILE, FEATURE_SKETCH

    proto = (ROOT / "proto" / "mvds.proto").read_text()
    section = _section(16)
    for field in ("uint32 features = 10", "repeated Reconcile reconcile = 11"):
        assert field in proto and field in section
    assert FEATURE_RECONCILE == 1 and "bit 0 (value 1)" in section
    assert FEATURE_SKETCH == 2 and "bit 1 (value 2)" in section
    assert f"**{BUCKETS} sub-ranges**" in section and f"more than\n{IDLIST_THRESHOLD} items" in section
    assert f"says nothing within {NEGOTIATE_TIMEOUT:.0f} s" in section
    # Every key byte in the table is (field number << 3) | wire type.
    schema = "".join(re.findall(r"```proto\n(.*?)```", section, re.S))
    numbers = {}
    for message in ("Payload", "Reconcile", "Range", "StreamAck"):
        body = re.search(rf"message {message} \{{(.*?)\}}", schema, re.S).group(1)
        for kind, name, number in re.findall(r"^\s*(?:repeated )?(\w+) (\w+) = (\d+);", body, re.M):
            numbers[f"{message}.{name}"] = (kind, int(number))
    rows = re.findall(r"^\| (\w+\.\w+)\s+\| `0x([0-9a-f]{2})`", section, re.M)
    assert len(rows) == 20
    for field, key in rows:
        kind, number = numbers[field]
        wire_type = 0 if kind in ("uint32", "int64", "bool") else 2
        assert int(key, 16) == (number << 3) | wire_type, field


def test_section_16_vectors_decode_as_documented():
    from mvds.engine.reconcile import INFINITY, MIN_BOUND, fingerprint_of_ids
    from mvds.wire import Mode

    query = decode_payload(VECTORS["reconcile_query"])
    assert query.features == 1 and query.record_count() == 1
    (q,) = query.reconcile
    assert q.group_id == bytes(range(32)) and q.lower == MIN_BOUND and not q.reply
    (r,) = q.ranges
    assert (r.upper, r.mode, r.fingerprint) == (INFINITY, Mode.FINGERPRINT, VECTORS["fingerprint_one"])
    assert VECTORS["fingerprint_one"] == fingerprint_of_ids([VECTORS["message_id"]])
    (skip,) = decode_payload(VECTORS["reconcile_in_sync_reply"]).reconcile
    assert skip.reply and [x.mode for x in skip.ranges] == [Mode.SKIP]
    (empty,) = decode_payload(VECTORS["reconcile_empty_reply"]).reconcile
    assert [(x.mode, x.ids) for x in empty.ranges] == [(Mode.IDLIST, [])]
    (split,) = decode_payload(VECTORS["reconcile_split_reply"]).reconcile
    assert len(split.ranges) == 16 and split.ranges[-1].upper == INFINITY
    assert sum(len(x.ids) for x in split.ranges if x.mode is Mode.IDLIST) + sum(
        1 for x in split.ranges if x.mode is Mode.FINGERPRINT
    ) <= 20
    (answer,) = decode_payload(VECTORS["reconcile_idlist_reply"]).reconcile
    (a,) = answer.ranges
    assert (a.mode, a.ids, a.missing) == (Mode.IDLIST_REPLY, [b"\x33" * 32], b"\x02")


def test_section_16_9_sketch_vectors_recomputed_from_the_construction():
    """The item hash is BLAKE2b as the section says; the table of the
    twenty items minus the table of nineteen of them decodes to the one."""
    import hashlib

    from mvds.store import sketch
    from mvds.store.rangeindex import make_key

    section = _section(16)
    assert "digest_size = 24" in section and '"mvds-rbsr-sketch"' in section
    short = VECTORS["sketch_short_key"]
    assert short == make_key(1700000000, VECTORS["message_id"])[:16]
    assert VECTORS["sketch_item_hash"] == hashlib.blake2b(
        short, digest_size=24, person=b"mvds-rbsr-sketch"
    ).digest()
    keys = [
        make_key(1700000000 + i, hashlib.sha256(i.to_bytes(8, "little")).digest())[:16]
        for i in range(20)
    ]
    table = VECTORS["sketch_table_16"]
    assert len(table) == 3 * 16 * 21
    assert sketch.decode(table, sketch.table_of(keys[1:], 16)) == ([keys[0]], [])
    estimate = decode_payload(VECTORS["reconcile_estimate_query"])
    assert estimate.features == 3
    assert len(estimate.reconcile[0].ranges[0].sketch) == 12 * 64


def test_section_16_10_stream_ack_vector_and_constants():
    from mvds.engine import catchup
    from mvds.engine.reconcile import fingerprint_of_ids
    from mvds.wire import FEATURE_STREAM_ACK

    section = _section(16)
    assert FEATURE_STREAM_ACK == 4 and "bit 2 (value 4)" in section
    assert f"keeps the newest {catchup.SENT_LOG_LIMIT:,}" in section
    assert f"tries the first {catchup.SEARCH_LIMIT:,} starting" in section
    assert f"mvds matches at most {catchup.MAX_STREAM_ACKS}" in section
    payload = decode_payload(VECTORS["stream_ack"])
    assert payload.features == 7 and payload.record_count() == 1
    (ack,) = payload.stream_acks
    assert ack.count == 2 and ack.fingerprint == VECTORS["fingerprint_two"]
    assert ack.fingerprint == fingerprint_of_ids([VECTORS["message_id"], b"\x11" * 32])
