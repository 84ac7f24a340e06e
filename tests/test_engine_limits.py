"""Per-peer bounds in the engine: what a hostile peer can make a node hold or send.

Sans-IO and fast; tests/daemon/test_adversarial.py checks the same bounds
against a real daemon over UDP.  Both stores run, since the SQLite store
keeps REQUEST records partly on disk ("cold") and must count those too.
"""

from __future__ import annotations

import pytest

from mvds.engine import Engine, EngineConfig, Mode
from mvds.engine.records import RecordType
from mvds.ids import group_id_for_name
from mvds.store.memory import MemoryStore
from mvds.store.sqlite import SQLiteStore
from mvds.wire import Message, Payload

PEER = b"P" * 32
GROUP = group_id_for_name("chat")


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        yield MemoryStore()
    else:
        s = SQLiteStore(tmp_path / "store.db")
        yield s
        s.close()


def _engine(store, **settings) -> Engine:
    engine = Engine(store, EngineConfig(**settings), now=0.0)
    with store.transaction():
        engine.share(GROUP, PEER, 0.0)
    return engine


def _step(store, engine, payload: Payload, now: float) -> list[Payload]:
    with store.transaction():
        engine.receive(PEER, payload, now)
        return [p for peer, p in engine.payloads_to_send(now) if peer == PEER]


def _ids(n: int, seed: int) -> list[bytes]:
    """``n`` distinct ids no message has (deterministic)."""
    return [(seed * 1_000_003 + i).to_bytes(32, "big") for i in range(n)]


def test_an_offer_flood_holds_at_most_max_requests(store):
    engine = _engine(store, max_requests=100, mode=Mode.INTERACTIVE)
    requested: set[bytes] = set()
    offered = _ids(3000, seed=1)
    for start in range(0, len(offered), 30):  # datagram-sized payloads
        for payload in _step(store, engine, Payload(offers=offered[start : start + 30]), 1.0):
            requested.update(payload.requests)
    assert store.request_count(PEER) == 100
    assert store.record_stats()[(PEER, RecordType.REQUEST)] == 100
    assert engine.stats["requests_capped"] == 2900
    assert engine.peer_stats[PEER]["requests_capped"] == 2900
    # What goes back to the flooder is bounded by the cap too (no amplification).
    assert len(requested) == 100


def test_the_cap_frees_up_as_requests_settle(store):
    """An honest peer's offers beyond the cap are requested once earlier REQUESTs settle."""
    engine = _engine(store, max_requests=10)
    messages = [Message(GROUP, 1000 + i, b"m%d" % i) for i in range(25)]
    _step(store, engine, Payload(offers=[m.id for m in messages]), 1.0)
    assert store.request_count(PEER) == 10
    first = [m for m in messages if store.get_record(m.id, PEER) is not None]
    assert len(first) == 10
    _step(store, engine, Payload(messages=first), 2.0)  # they arrive: REQUESTs settle
    assert store.request_count(PEER) == 0
    _step(store, engine, Payload(offers=[m.id for m in messages]), 3.0)  # the peer re-offers
    assert store.request_count(PEER) == 10
    assert all(store.has_message(m.id) for m in first)


def test_missing_parents_count_towards_the_cap(store):
    engine = _engine(store, max_requests=5)
    parents = _ids(20, seed=2)
    held = [Message(GROUP, 5000 + i, b"child", parents[i * 4 : i * 4 + 4]) for i in range(5)]
    _step(store, engine, Payload(messages=held), 1.0)
    assert store.request_count(PEER) == 5
    assert engine.stats["requests_capped"] == 15


def test_request_count_survives_commit_and_reopen(tmp_path):
    """The SQLite store counts REQUEST records that are on disk only."""
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    engine = _engine(store, max_requests=50)
    _step(store, engine, Payload(offers=_ids(80, seed=3)), 1.0)
    assert store.request_count(PEER) == 50
    store.close()
    store = SQLiteStore(path)
    try:
        assert store.request_count(PEER) == 50
        engine = Engine(store, EngineConfig(max_requests=50), now=2.0)
        _step(store, engine, Payload(offers=_ids(80, seed=4)), 2.0)
        assert store.request_count(PEER) == 50
    finally:
        store.close()


def test_a_request_flood_is_not_amplified(store):
    engine = _engine(store)
    with store.transaction():
        message = engine.append(GROUP, b"x" * 1000, 0.0)
        engine.payloads_to_send(0.0)
    # The peer ACKs it, then asks for it 3,000 times within one second.
    _step(store, engine, Payload(acks=[message.id]), 0.1)
    sent = 0
    for i in range(100):
        for payload in _step(store, engine, Payload(requests=[message.id] * 30), 0.2 + i * 0.005):
            sent += sum(1 for m in payload.messages if m.id == message.id)
    assert sent == 1, sent
    assert engine.stats["requests_in"] == 3000


def test_requests_for_unknown_or_unshared_messages_send_nothing(store):
    engine = _engine(store)
    other = group_id_for_name("secret")
    with store.transaction():
        engine.join(other)
        secret = engine.append(other, b"not for P", 0.0)
    out = _step(store, engine, Payload(requests=[secret.id, *_ids(20, seed=5)]), 1.0)
    assert all(not p.messages for p in out)
    assert engine.stats["requests_refused"] == 1
    assert engine.stats["requests_unknown"] == 20


def test_offers_of_unshared_messages_are_not_acknowledged(store):
    """An ACK would tell the peer this node holds a message it may not see."""
    engine = _engine(store)
    other = group_id_for_name("secret")
    with store.transaction():
        engine.join(other)
        secret = engine.append(other, b"not for P", 0.0)
        shared = engine.append(GROUP, b"for P", 0.0)
        engine.payloads_to_send(0.0)
    out = _step(store, engine, Payload(offers=[secret.id, shared.id]), 1.0)
    acked = {i for p in out for i in p.acks}
    assert secret.id not in acked and shared.id in acked
    assert engine.stats["offers_refused"] == 1


def test_an_oversized_body_is_dropped_without_ack(store):
    engine = _engine(store, max_body=1000)
    big = Message(GROUP, 1, b"b" * 1001)
    fits = Message(GROUP, 2, b"b" * 1000)
    out = _step(store, engine, Payload(messages=[big, fits]), 1.0)
    acked = {i for p in out for i in p.acks}
    assert acked == {fits.id}
    assert not store.has_message(big.id) and store.has_message(fits.id)
    assert engine.stats["dropped_oversized_body"] == 1


class CountingStore(MemoryStore):
    """Counts has_message lookups: the cost of finding a free timestamp."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    def has_message(self, message_id: bytes) -> bool:
        self.lookups += 1
        return super().has_message(message_id)


def test_identical_appends_cost_linear_time():
    """The same body appended again in the same second takes the next free
    second; finding it must not rescan every second taken before (the
    control API fuzzer slowed to a crawl on this: O(N^2) lookups)."""

    store = CountingStore()
    engine = Engine(store, EngineConfig(), now=0.0)
    ids = {engine.append(GROUP, b"ping", 100.0).id for _ in range(3000)}
    assert len(ids) == 3000  # each a distinct message
    assert store.lookups < 4 * 3000, store.lookups  # was about 4.5 million
    stamps = sorted(store.get_message(i).timestamp for i in ids)
    assert stamps == list(range(100, 3100))


def test_identical_appends_stay_linear_as_the_clock_moves():
    """A heartbeat appending the same body ten times a second runs ahead of
    the clock; each new second must not rescan every timestamp taken so far
    (keyed by the natural id, each second started a fresh scan: ~450,000
    lookups here)."""

    store = CountingStore()
    engine = Engine(store, EngineConfig(), now=0.0)
    ids = {engine.append(GROUP, b"beat", 100.0 + i / 10).id for i in range(3000)}
    assert len(ids) == 3000
    assert store.lookups < 4 * 3000, store.lookups


def test_default_max_body_is_the_protocol_limit():
    from mvds.limits import MAX_BODY_SIZE

    assert EngineConfig().max_body == MAX_BODY_SIZE
