"""Wire format: byte-identical to protobuf, strict decoding, datagram splitting."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mvds._pb import mvds_pb2
from mvds.wire import (
    Message,
    Payload,
    WireError,
    decode_payload,
    encode_message,
    encode_payload,
    split_payload,
)

ids = st.binary(min_size=32, max_size=32)
messages = st.builds(
    Message,
    ids,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.binary(max_size=2000),
    st.lists(ids, max_size=4),
    st.booleans(),
)
payloads = st.builds(
    Payload,
    st.lists(ids, max_size=6),
    st.lists(ids, max_size=6),
    st.lists(ids, max_size=6),
    st.lists(messages, max_size=6),
)


def to_protobuf(payload: Payload) -> mvds_pb2.Payload:
    pb = mvds_pb2.Payload(acks=payload.acks, offers=payload.offers, requests=payload.requests)
    for m in payload.messages:
        pm = pb.messages.add(group_id=m.group_id, timestamp=m.timestamp, body=m.body)
        # As the reference Go implementation: metadata always set, even empty.
        pm.metadata.SetInParent()
        pm.metadata.parents.extend(m.parents)
        pm.metadata.ephemeral = m.ephemeral
    return pb


@given(payloads)
def test_encoding_is_byte_identical_to_protobuf(payload):
    assert encode_payload(payload) == to_protobuf(payload).SerializeToString(deterministic=True)


@given(payloads)
def test_decode_inverts_encode(payload):
    decoded = decode_payload(encode_payload(payload))
    assert decoded == payload
    for got, sent in zip(decoded.messages, payload.messages):
        assert got.id == sent.id
        assert got.body == sent.body and got.timestamp == sent.timestamp


def test_message_id_is_recomputed_not_taken_from_the_wire():
    m = Message(bytes(32), 5, b"body")
    pb = mvds_pb2.Payload()
    pb.messages.add(group_id=bytes(32), timestamp=5, body=b"tampered")
    decoded = decode_payload(pb.SerializeToString())
    assert decoded.messages[0].id != m.id
    assert decoded.messages[0].id == Message(bytes(32), 5, b"tampered").id


def test_metadata_is_always_encoded_as_the_reference_does():
    """A reference peer in interactive mode crashes on a message without it."""
    for message in (Message(bytes(32), 1, b"x"), Message(bytes(32), 1, b"x", ephemeral=True)):
        (pm,) = mvds_pb2.Payload.FromString(encode_payload(Payload(messages=[message]))).messages
        assert pm.HasField("metadata")
    assert encode_message(Message(bytes(32), 1, b"x")).endswith(b"\x22\x00")


def test_reference_payloads_round_trip_byte_for_byte():
    """What a Go peer sends (metadata always present) re-encodes identically."""
    pb = mvds_pb2.Payload(acks=[b"\x01" * 32])
    for i, parents in enumerate(([], [b"\x02" * 32] * 3, [b"\x03" * 32, b"\x04" * 32])):
        pm = pb.messages.add(group_id=bytes(32), timestamp=1700000000 + i, body=b"m%d" % i)
        pm.metadata.SetInParent()
        pm.metadata.parents.extend(parents)
    data = pb.SerializeToString()
    assert encode_payload(decode_payload(data)) == data


def test_go_style_empty_metadata_is_accepted():
    pb = mvds_pb2.Payload()
    pm = pb.messages.add(group_id=bytes(32), timestamp=1, body=b"x")
    pm.metadata.SetInParent()  # Go always sets the field: 0x22 0x00
    data = pb.SerializeToString()
    assert b"\x22\x00" in data
    (m,) = decode_payload(data).messages
    assert m.parents == () and not m.ephemeral


@given(st.binary(max_size=400))
@settings(max_examples=2000)
def test_random_bytes_raise_only_wire_error(data):
    try:
        decode_payload(data)
    except WireError:
        pass


@pytest.mark.parametrize(
    "build, fragment",
    [
        (lambda pb: pb.acks.append(b"x" * 31), "ack 0 is 31 bytes"),
        (lambda pb: pb.offers.append(b"x" * 33), "offer 0 is 33 bytes"),
        (lambda pb: pb.requests.append(b""), "request 0 is 0 bytes"),
        (lambda pb: pb.messages.add(group_id=b"g", body=b"x"), "1-byte group id"),
        (
            lambda pb: pb.messages.add(group_id=bytes(32)).metadata.parents.append(b"p"),
            "parent 0 is 1 bytes",
        ),
    ],
)
def test_wrong_id_sizes_are_rejected_clearly(build, fragment):
    pb = mvds_pb2.Payload()
    build(pb)
    with pytest.raises(WireError, match=fragment):
        decode_payload(pb.SerializeToString())


def test_truncated_and_garbage_input_raise_wire_error():
    data = encode_payload(Payload(messages=[Message(bytes(32), 1, b"hello")]))
    for cut in range(1, len(data)):
        with pytest.raises(WireError):
            decode_payload(data[:cut])
    with pytest.raises(WireError):
        decode_payload("not bytes")  # type: ignore[arg-type]


def test_unknown_fields_from_newer_peers_are_ignored():
    data = encode_payload(Payload(acks=[bytes(32)]))
    extended = data + b"\xa8\x1f\x01"  # field 500, varint 1
    assert decode_payload(extended).acks == [bytes(32)]


@given(payloads, st.integers(min_value=64, max_value=3000))
def test_split_chunks_are_valid_payloads_that_fit(payload, max_size):
    chunks = split_payload(payload, max_size)
    merged = Payload()
    for chunk in chunks:
        part = decode_payload(chunk)
        if len(chunk) > max_size:
            # Only a lone oversized message may exceed the limit.
            assert part.record_count() == 1 and len(part.messages) == 1
        merged.acks += part.acks
        merged.offers += part.offers
        merged.requests += part.requests
        merged.messages += part.messages
    assert merged == payload


def test_empty_payload_splits_into_one_empty_chunk():
    assert split_payload(Payload(), 1200) == [b""]


def test_encode_message_is_cached():
    m = Message(bytes(32), 1, b"x" * 10)
    assert encode_message(m) is encode_message(m)


def test_invalid_messages_cannot_be_built():
    with pytest.raises(ValueError):
        Message(b"short", 1, b"")
    with pytest.raises(ValueError):
        Message(bytes(32), 2**63, b"")
    with pytest.raises(ValueError):
        Message(bytes(32), 1, b"", parents=[b"p"])
