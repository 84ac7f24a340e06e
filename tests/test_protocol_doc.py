"""docs/PROTOCOL.md cannot drift from the code: its vectors and numbers are checked here."""

from __future__ import annotations

import importlib.util
import pathlib
import re

import pytest

from interop.docvectors import DOC_PATH, doc_vectors
from mvds.engine import EngineConfig
from mvds.ids import group_id_for_name, message_id
from mvds.secure import EnvelopeCodec, Identity, NonceCounter
from mvds import limits
from mvds.secure.envelope import REASONS, TYPE_PLAINTEXT, TYPE_SEALED
from mvds.secure.keys import KDF_LABEL
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


def _codec(tmp_path, me, peer, plaintext=False):
    codec = EnvelopeCodec(
        Identity.from_private_bytes(VECTORS[f"{me}_private"]), NonceCounter(tmp_path / me)
    )
    codec.add_peer(VECTORS[f"{peer}_public"], plaintext=plaintext)
    return codec


def test_documented_datagrams_open_to_the_documented_payloads(tmp_path):
    bob = _codec(tmp_path, "bob", "alice")
    sender, data = bob.open(VECTORS["sealed_alice_to_bob"])
    assert sender == VECTORS["alice_public"]
    assert data == VECTORS["payload"]
    assert decode_payload(data) == GEN.vector_payload()
    assert decode_payload(data).messages[0].id == VECTORS["message_id"]
    assert decode_payload(VECTORS["edge_payload"]) == GEN.edge_payload()

    alice = _codec(tmp_path, "alice", "bob")
    assert alice.open(VECTORS["sealed_hello_bob_to_alice"]) == (VECTORS["bob_public"], b"")

    (tmp_path / "plain").mkdir()
    plain_bob = _codec(tmp_path / "plain", "bob", "alice", plaintext=True)
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
    assert f"| `0x{TYPE_SEALED:02x}` | sealed" in DOC
    assert f"| `0x{TYPE_PLAINTEXT:02x}` | plaintext" in DOC
    documented = set(re.findall(r"^\| `([a-z_]+)`\s+\|", DOC, re.M))
    assert documented == set(REASONS) | {"malformed", "rate_limited"}


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
