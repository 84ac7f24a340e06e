"""Stream ACKs (docs/PROTOCOL.md 16.10, mvds/engine/catchup.py): between
nodes that set ``features`` bit 2, the new messages of a step are
acknowledged by one StreamAck instead of an ACK each; the sender settles
them by matching the fingerprint against what it sent."""

from __future__ import annotations

import pytest
from harness import GROUP, Net, peer

from mvds.engine import Engine, EngineConfig
from mvds.engine.events import MessageAcknowledged
from mvds.engine.reconcile import fingerprint_of_ids
from mvds.store import MemoryStore
from mvds.wire import (
    FEATURE_RECONCILE,
    FEATURE_SKETCH,
    FEATURE_STREAM_ACK,
    Message,
    Payload,
    StreamAck,
    WireError,
    decode_payload,
    encode_payload,
)

ON = EngineConfig(epoch_length=1.0, reconcile=True, reconcile_interval=60.0, max_inflight=64)
OLDER = FEATURE_RECONCILE | FEATURE_SKETCH
"""What a node of the previous version of the extension announces."""


def _history(net: Net, name: str, count: int) -> list[bytes]:
    net.engines[name].join(GROUP)
    return [net.append(name, b"%s wrote %d" % (name.encode(), i)).id for i in range(count)]


def _wire_bytes(net: Net, src: str) -> int:
    return sum(len(encode_payload(s.payload)) for s in net.sent if s.src == src)


def test_a_join_is_acknowledged_by_stream_acks_not_an_ack_per_message():
    net = Net(seed=1)
    net.add("a", ON)
    net.add("b", ON)
    ids = _history(net, "a", 1000)
    net.share(GROUP, "a", "b")
    net.run(120)
    assert sorted(net.received_ids("b")) == sorted(ids)
    a, b = net.engines["a"].stats, net.engines["b"].stats
    assert b["acks_out"] == 0
    assert 0 < b["stream_acks_out"] < 100  # one per payload, not per message
    assert a["stream_acks_in"] == b["stream_acks_out"]
    assert a["stream_acks_unmatched"] == 0
    assert a["stream_acked"] == 1000
    assert a["reconcile_gives"] == 1000  # nothing resent: every give settled
    # b's traffic back to a: well under one 34-byte ACK per message.
    assert _wire_bytes(net, "b") < 1000 * 34 / 4
    assert net.quiet()


def test_live_messages_sent_as_records_are_settled_by_stream_acks_with_events():
    net = Net(seed=2)
    net.add("a", ON)
    net.add("b", ON)
    net.engines["a"].join(GROUP)
    net.share(GROUP, "a", "b")
    net.run(5)  # negotiated: both know the other takes stream ACKs
    sent = [net.append("a", b"live %d" % i).id for i in range(30)]
    net.run(30)
    assert sorted(net.received_ids("b")) == sorted(sent)
    acknowledged = {e.message_id for e in net.events["a"] if isinstance(e, MessageAcknowledged)}
    assert acknowledged == set(sent)
    assert net.engines["a"].store.record_count() == 0
    assert net.engines["b"].stats["acks_out"] == 0
    assert net.engines["a"].stats["stream_acked"] == 30


@pytest.mark.parametrize("seed", range(4))
def test_a_join_under_loss_duplication_and_reordering_still_settles(seed):
    net = Net(seed=seed, loss=0.2, duplicate=0.1, jitter=0.05)
    net.add("a", ON)
    net.add("b", ON)
    ids = _history(net, "a", 300)
    more = _history(net, "b", 20)
    net.share(GROUP, "a", "b")
    net.run(600)
    assert sorted(net.received_ids("b")) == sorted(ids)
    assert sorted(net.received_ids("a")) == sorted(more)
    assert net.engines["a"].store.record_count() == 0
    assert net.engines["b"].store.record_count() == 0
    assert net.quiet()


def _node() -> Engine:
    engine = Engine(MemoryStore(), ON, now=0.0)
    engine.join(GROUP)
    engine.share(GROUP, peer("x"), 0.0)
    return engine


def _messages(count: int) -> list[Message]:
    return [Message(GROUP, 1700000000, b"m%d" % i) for i in range(count)]


def test_an_older_peer_gets_an_ack_per_message_and_a_current_one_a_stream_ack():
    for features, stream in ((OLDER, False), (OLDER | FEATURE_STREAM_ACK, True)):
        engine = _node()
        messages = _messages(5)
        engine.receive(peer("x"), Payload(messages=messages, features=features), 1.0)
        ((_, out),) = engine.payloads_to_send(1.0)
        ids = [m.id for m in messages]
        if stream:
            assert out.acks == []
            assert out.stream_acks == [StreamAck(5, fingerprint_of_ids(ids))]
        else:
            assert sorted(out.acks) == sorted(ids) and out.stream_acks == []
        # A duplicate is ACKed one by one either way (its StreamAck may
        # have been lost or not matched).
        engine.receive(peer("x"), Payload(messages=messages[:1], features=features), 2.0)
        ((_, again),) = engine.payloads_to_send(2.0)
        assert again.acks == [ids[0]] and again.stream_acks == []


def test_a_stream_ack_settles_only_what_its_fingerprint_names():
    """Records sent to a peer that takes stream ACKs are settled by a
    matching one (the head of the sent log, one left out, or further on)
    and by nothing else."""
    engine = _node()
    engine.receive(peer("x"), Payload(features=OLDER | FEATURE_STREAM_ACK), 0.0)
    engine.payloads_to_send(0.0)
    sent = [engine.append(GROUP, b"n%d" % i, 1.0).id for i in range(8)]
    ((_, out),) = engine.payloads_to_send(1.0)
    assert [m.id for m in out.messages] == sent

    def ack(ids: list[bytes], now: float) -> set[bytes]:
        engine.receive(
            peer("x"),
            Payload(features=OLDER | FEATURE_STREAM_ACK,
                    stream_acks=[StreamAck(len(ids), fingerprint_of_ids(ids))]),
            now,
        )
        return {e.message_id for e in engine.events() if isinstance(e, MessageAcknowledged)}

    # A set it never sent (one id foreign) settles nothing.
    assert ack([sent[0], b"\x99" * 32], 1.1) == set()
    assert engine.stats["stream_acks_unmatched"] == 1
    # The head: the first two.
    assert ack(sent[:2], 1.2) == set(sent[:2])
    # One missing at the head (sent[2] lost or late): the next two after it.
    assert ack(sent[3:5], 1.3) == set(sent[3:5])
    # sent[2] arrives late: still in the log, at its head.
    assert ack([sent[2]], 1.4) == {sent[2]}
    # Further on (sent[5] lost): sent[6:8]; sent[5] is left to its resend.
    assert ack(sent[6:8], 1.5) == set(sent[6:8])
    assert engine.store.record_count() == 1
    assert engine.store.get_record(sent[5], peer("x")) is not None
    assert engine.stats["stream_acked"] == 7


@pytest.mark.parametrize(
    "data",
    [
        # count 0
        b"\x50\x07\x62\x12\x12\x10" + bytes(16),
        # a 15-byte fingerprint
        b"\x50\x07\x62\x13\x08\x02\x12\x0f" + bytes(15),
    ],
)
def test_malformed_stream_acks_are_rejected(data):
    with pytest.raises(WireError):
        decode_payload(data)


def test_only_the_first_few_stream_acks_of_a_payload_are_matched():
    """Matching costs hashes: a payload stuffed with StreamAcks buys work
    for at most ``MAX_STREAM_ACKS`` of them."""
    from mvds.engine.catchup import MAX_STREAM_ACKS

    engine = _node()
    engine.receive(peer("x"), Payload(features=OLDER | FEATURE_STREAM_ACK), 0.0)
    engine.payloads_to_send(0.0)
    sent = [engine.append(GROUP, b"n%d" % i, 1.0).id for i in range(10)]
    engine.payloads_to_send(1.0)
    acks = [StreamAck(1, fingerprint_of_ids([mid])) for mid in sent]
    engine.receive(peer("x"), Payload(features=OLDER | FEATURE_STREAM_ACK, stream_acks=acks), 1.1)
    assert engine.stats["stream_acked"] == MAX_STREAM_ACKS
    assert engine.stats["stream_acks_ignored"] == 10 - MAX_STREAM_ACKS
    assert engine.store.record_count() == 10 - MAX_STREAM_ACKS
