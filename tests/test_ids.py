"""Message ids (the test vector of the product brief, also in docs/PROTOCOL.md) and group/peer id parsing."""

import hashlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mvds
from mvds.ids import group_id_for_name, parse_group, parse_peer_id


def test_message_id_matches_the_reference_test_vector():
    group = bytes(range(32))
    got = mvds.message_id(group, 1700000000, b"hello world")
    assert got.hex() == "cf11ffaad8f74577654b61d1b0cc70d2d8a22311b929a03e7d5ed25c43f9fe7f"


@given(
    st.binary(min_size=32, max_size=32),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.binary(max_size=300),
)
def test_message_id_is_sha256_of_domain_group_le_timestamp_body(group, timestamp, body):
    expected = hashlib.sha256(
        b"MESSAGE_ID" + group + struct.pack("<q", timestamp) + body
    ).digest()
    assert mvds.message_id(group, timestamp, body) == expected


def test_negative_timestamps_hash_as_twos_complement():
    group = bytes(32)
    expected = hashlib.sha256(b"MESSAGE_ID" + group + b"\xff" * 8 + b"x").digest()
    assert mvds.message_id(group, -1, b"x") == expected


def test_group_names_map_to_the_same_id_everywhere():
    assert group_id_for_name("chat") == hashlib.sha256(b"MVDS_GROUP_NAMEchat").digest()
    assert parse_group("chat") == group_id_for_name("chat")
    assert parse_group("ab" * 32) == bytes.fromhex("ab" * 32)
    with pytest.raises(ValueError):
        group_id_for_name("")


def test_peer_ids_are_64_hex_characters():
    assert parse_peer_id("AB" * 32) == bytes.fromhex("ab" * 32)
    with pytest.raises(ValueError, match="64 hex"):
        parse_peer_id("abc")
    with pytest.raises(ValueError, match="hexadecimal"):
        parse_peer_id("zz" * 32)
