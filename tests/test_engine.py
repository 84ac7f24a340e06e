"""Unit tests of the sans-IO engine, one rule of 2/MVDS + 4/MVDS-META each."""

import pytest

from harness import GROUP, GROUP2, Net, peer
from mvds.engine import (
    Delivery,
    Engine,
    EngineConfig,
    ExponentialBackoff,
    GaveUp,
    LinearBackoff,
    MessageAcknowledged,
    MessageReceived,
    MessageRefused,
    Mode,
    PeerReachable,
    QuadraticBackoff,
    RecordType,
    policy_by_name,
)
from mvds.store.memory import MemoryStore
from mvds.wire import Message, Payload

A, B, C = peer("A"), peer("B"), peer("C")
GROUP3 = b"I" * 32


def engine(**kwargs) -> Engine:
    kwargs.setdefault("epoch_length", 1.0)
    return Engine(MemoryStore(), EngineConfig(**kwargs), now=0.0)


def sent_to(engine: Engine, now: float) -> dict[bytes, Payload]:
    return dict(engine.payloads_to_send(now))


# -- batch and interactive flow ----------------------------------------------


def test_batch_mode_sends_message_then_forgets_it_on_ack():
    a, b = engine(), engine()
    a.share(GROUP, B, 0)
    b.share(GROUP, A, 0)
    m = a.append(GROUP, b"hello", 0.0)
    out = sent_to(a, 0.0)
    assert out[B].messages == [m] and not out[B].offers
    assert a.pending() == {(B, RecordType.MESSAGE): 1}

    b.receive(A, out[B], 0.01)
    (received,) = [e for e in b.events() if isinstance(e, MessageReceived)]
    assert received.message == m and received.seq == 1 and received.peer == A
    reply = sent_to(b, 0.01)
    assert reply[A].acks == [m.id]
    assert b.pending() == {}, "ACKs are never stored"

    a.receive(B, reply[A], 0.02)
    assert a.pending() == {}
    assert MessageAcknowledged(m.id, B) in a.events()


def test_interactive_mode_offers_requests_sends_and_acks():
    a, b = engine(mode=Mode.INTERACTIVE), engine(mode=Mode.INTERACTIVE)
    a.share(GROUP, B, 0)
    b.share(GROUP, A, 0)
    m = a.append(GROUP, b"hello", 0.0)

    offer = sent_to(a, 0.0)[B]
    assert offer.offers == [m.id] and not offer.messages
    assert a.pending() == {(B, RecordType.OFFER): 1}

    b.receive(A, offer, 0.01)
    request = sent_to(b, 0.01)[A]
    assert request.requests == [m.id]
    assert b.pending() == {(A, RecordType.REQUEST): 1}, "REQUESTs are sync state"

    a.receive(B, request, 0.02)
    assert a.pending() == {(B, RecordType.MESSAGE): 1}, "the OFFER became a MESSAGE"
    message = sent_to(a, 0.02)[B]
    assert message.messages == [m]

    b.receive(A, message, 0.03)
    assert b.pending() == {}, "the REQUEST is settled by the MESSAGE"
    ack = sent_to(b, 0.03)[A]
    assert ack.acks == [m.id]
    a.receive(B, ack, 0.04)
    assert a.pending() == {}


def test_answering_a_request_is_not_counted_as_a_retransmission():
    a = engine(mode=Mode.INTERACTIVE)
    a.share(GROUP, B, 0)
    m = a.append(GROUP, b"x", 0.0)
    a.payloads_to_send(0.0)
    a.receive(B, Payload(requests=[m.id]), 0.1)
    assert sent_to(a, 0.1)[B].messages == [m]
    assert a.stats["retransmissions"] == 0


def _backed_off(a):
    """A's record for B after 8 unanswered sends; returns (last send, next send)."""
    a.share(GROUP, B, 0)
    a.append(GROUP, b"x", 0.0)
    now = 0.0
    for _ in range(8):  # B is silent: backoff grows past 3
        now = a.next_timer()
        a.payloads_to_send(now)
    resend = a.next_timer()
    assert resend - now > 16
    return now, resend


def test_a_record_resent_while_its_peer_is_answering_waits_at_most_online_backoff():
    a = engine(policy=ExponentialBackoff(base=1, max_delay=64, jitter=0), online_backoff=3,
               reachability_backoff=100)
    now, resend = _backed_off(a)
    other = a.append(GROUP, b"y", resend - 0.6)
    a.payloads_to_send(resend - 0.6)
    a.receive(B, Payload(acks=[other.id]), resend - 0.5)  # B answers (ACKs y), not x
    a.payloads_to_send(resend)
    assert a.next_timer() - resend <= 3, "while B is answering, waits are capped"


def test_a_peer_that_talks_but_never_answers_gets_the_whole_backoff():
    """A reference peer replies to every payload (empty) and never re-ACKs a
    duplicate: talking alone must not shorten the schedule."""
    a = engine(policy=ExponentialBackoff(base=1, max_delay=64, jitter=0), online_backoff=3,
               reachability_backoff=100)
    now, resend = _backed_off(a)
    a.receive(B, Payload(), resend - 0.5)
    a.payloads_to_send(resend)
    assert a.next_timer() - resend >= 64


def test_mode_can_be_overridden_per_message():
    a = engine(mode=Mode.BATCH)
    a.share(GROUP, B, 0)
    m = a.append(GROUP, b"x", 0.0, mode=Mode.INTERACTIVE)
    assert sent_to(a, 0.0)[B].offers == [m.id]


def test_offer_of_a_message_we_hold_is_acked_not_requested():
    b = engine()
    b.share(GROUP, A, 0)
    m = b.append(GROUP, b"mine", 0.0)
    b.payloads_to_send(0.0)
    b.receive(A, Payload(offers=[m.id]), 0.1)
    reply = sent_to(b, 0.1)[A]
    assert reply.acks == [m.id] and not reply.requests
    # A offered it, so A holds it: our own MESSAGE record towards A is settled.
    assert b.pending() == {}



def test_offers_from_a_peer_outside_the_group_reveal_nothing_and_cost_nothing():
    b = engine()
    b.share(GROUP, A, 0)
    mine = b.append(GROUP, b"mine", 0.0)
    b.receive(A, Payload(acks=[mine.id]), 0.0)
    # C shares no group with b: offering a message b holds gets no ACK (that
    # would reveal b holds it), offering an unknown id no REQUEST.
    b.receive(C, Payload(offers=[mine.id, b"u" * 32]), 0.1)
    assert C not in sent_to(b, 0.1)
    assert b.pending() == {} and b.stats["offers_refused"] == 2
    # Sharing another group with C lets C offer unknown ids (for that
    # group), but still not learn about GROUP's messages.
    b.share(GROUP2, C, 0.2)
    b.receive(C, Payload(offers=[mine.id, b"u" * 32]), 0.3)
    reply = sent_to(b, 0.3)[C]
    assert reply.acks == [] and reply.requests == [b"u" * 32]

def test_duplicates_are_acked_again_but_delivered_once():
    net = Net()
    net.add("A"), net.add("B")
    net.share(GROUP, "A", "B")
    m = net.append("A", b"once")
    net.run(1.0)
    payload = Payload(messages=[m])
    for i in range(3):
        net.engines["B"].receive(peer("A"), payload, net.now)
        assert sent_to(net.engines["B"], net.now)[peer("A")].acks == [m.id]
    net._collect("B")
    assert net.received_ids("B") == [m.id]


# -- one payload per epoch, prompt new data -------------------------------------


def test_new_records_go_out_at_once_not_at_the_next_epoch():
    a = engine(epoch_length=10.0)
    a.share(GROUP, B, 0)
    a.payloads_to_send(0.0)
    a.append(GROUP, b"x", 3.3)
    assert a.next_timer() == 3.3
    assert B in sent_to(a, 3.3)


def test_flush_delay_coalesces_new_records():
    a = engine(flush_delay=0.005)
    a.share(GROUP, B, 0)
    a.payloads_to_send(0.5)
    a.append(GROUP, b"1", 1.0)
    a.append(GROUP, b"2", 1.002)
    assert a.next_timer() == pytest.approx(1.005)
    assert sent_to(a, 1.003) == {}
    assert len(sent_to(a, 1.005)[B].messages) == 2


def test_all_due_records_for_a_peer_go_in_one_payload_per_epoch():
    a = engine(policy=LinearBackoff(step=1))
    a.share(GROUP, B, 0)
    for i in range(5):
        a.append(GROUP, b"m%d" % i, 0.0)
    assert len(sent_to(a, 0.5)[B].messages) == 5  # lost
    # Sent mid-epoch 0 with a one-epoch wait: due at the start of epoch 2.
    assert sent_to(a, 1.0) == {}
    retry = a.payloads_to_send(2.0)
    assert len(retry) == 1 and len(retry[0][1].messages) == 5


# -- retransmission -------------------------------------------------------------


def send_times(a: Engine, until: float) -> list[float]:
    times = []
    now = 0.0
    while True:
        t = a.next_timer()
        if t is None or t > until:
            return times
        now = max(now, t)
        if a.payloads_to_send(now):
            times.append(now)


def test_retransmission_backs_off_exponentially_up_to_a_bound():
    a = engine(policy=ExponentialBackoff(base=1, factor=2, max_delay=8, jitter=0))
    a.share(GROUP, B, 0)
    a.append(GROUP, b"x", 0.0)
    times = send_times(a, 60)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[:5] == [1, 2, 4, 8, 8]
    assert set(gaps[3:]) == {8}


def test_jitter_is_bounded_and_seeded():
    policy = ExponentialBackoff(base=4, factor=2, max_delay=64, jitter=0.25)
    import random

    rng = random.Random(1)
    delays = [policy.delay(3, rng) for _ in range(200)]
    assert min(delays) >= 16 and max(delays) <= 20 and len(set(delays)) > 1
    again = [policy.delay(3, random.Random(1)) for _ in range(1)]
    assert again[0] == delays[0]


def test_reference_and_sketch_policies():
    import random

    rng = random.Random(0)
    assert [LinearBackoff().delay(n, rng) for n in (1, 2, 3)] == [2, 4, 6]
    assert [QuadraticBackoff().delay(n, rng) for n in (1, 2, 3)] == [2, 5, 10]
    assert policy_by_name("linear") == LinearBackoff()
    with pytest.raises(ValueError, match="unknown retransmission policy"):
        policy_by_name("nope")


def test_rtt_estimator_follows_rfc_6298():
    from mvds.engine.rtt import RttEstimator

    est = RttEstimator()
    assert est.timeout(10.0) is None, "no estimate before the first sample"
    est.sample(2.0)
    assert (est.srtt, est.rttvar) == (2.0, 1.0)
    assert est.timeout(10.0) == 6.0 and est.timeout(5.0) == 5.0
    est.sample(1.0)
    assert est.rttvar == pytest.approx(0.75 * 1.0 + 0.25 * 1.0)
    assert est.srtt == pytest.approx(7 / 8 * 2.0 + 1 / 8 * 1.0)
    before = (est.srtt, est.rttvar)
    est.sample(-1.0)
    assert (est.srtt, est.rttvar) == before, "a negative sample (clock step) is ignored"


def slow_peer_round(a: Engine, now: float, delay: float) -> list[float]:
    """Send what is due at ``now``; the peer ACKs each message ``delay`` later."""
    out = sent_to(a, now)
    if B not in out:
        return []
    a.receive(B, Payload(acks=[m.id for m in out[B].messages]), now + delay)
    return [now]


def test_a_slow_peer_is_not_sent_copies_before_it_can_answer():
    """Once a peer is seen to take 3 s to answer, a record is not resent
    after the 2-epoch (2 s) schedule; before any sample it is."""
    a = engine(policy=ExponentialBackoff(base=1, factor=2, max_delay=8, jitter=0))
    a.share(GROUP, B, 0)
    first = a.append(GROUP, b"first", 0.0)
    out = sent_to(a, 0.0)
    assert out[B].messages == [first]
    a.receive(B, Payload(acks=[first.id]), 3.0)  # one sample: srtt 3 s, rto 9 s
    assert a.rtt(B) == 3.0

    second = a.append(GROUP, b"second", 3.0)
    assert sent_to(a, 3.0)[B].messages == [second]
    resent = [t for t in (4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0)
              if B in sent_to(a, t)]
    assert resent and resent[0] >= 12.0, resent
    assert a.stats["retransmissions"] >= 1, "an unanswered record is still resent"


def test_the_timeout_has_a_ceiling():
    a = engine(max_rto=2.0, policy=ExponentialBackoff(base=1, factor=2, max_delay=8, jitter=0))
    a.share(GROUP, B, 0)
    first = a.append(GROUP, b"first", 0.0)
    sent_to(a, 0.0)
    a.receive(B, Payload(acks=[first.id]), 30.0)  # a 30 s answer, once
    a.append(GROUP, b"second", 30.0)
    sent_to(a, 30.0)
    resent = [t for t in (31.0, 32.0, 33.0, 34.0) if B in sent_to(a, t)]
    assert resent and resent[0] <= 33.0, "max_rto bounds the wait"


def test_only_records_sent_once_are_round_trip_samples():
    """Karn: an ACK after a retransmission may answer either copy."""
    a = engine(policy=LinearBackoff(step=1))
    a.share(GROUP, B, 0)
    m = a.append(GROUP, b"x", 0.0)
    sent_to(a, 0.0)
    assert B in sent_to(a, 2.0), "retransmitted"
    a.receive(B, Payload(acks=[m.id]), 2.5)
    assert a.rtt(B) is None


def test_a_request_answering_an_offer_is_a_sample():
    a = engine(mode=Mode.INTERACTIVE)
    a.share(GROUP, B, 0)
    m = a.append(GROUP, b"x", 0.0)
    assert sent_to(a, 0.0)[B].offers == [m.id]
    a.receive(B, Payload(requests=[m.id]), 0.25)
    assert a.rtt(B) == 0.25


def test_requests_are_retransmitted_too():
    b = engine(policy=LinearBackoff(step=1))
    b.share(GROUP, A, 0)
    mid = b"m" * 32
    b.receive(A, Payload(offers=[mid]), 0.0)
    requests = []
    for now in range(0, 6):
        out = sent_to(b, float(now))
        if A in out:
            requests.append(out[A].requests)
    assert len(requests) >= 3 and all(r == [mid] for r in requests)


def test_retransmission_limit_gives_up_with_an_event():
    a = engine(policy=LinearBackoff(step=1))
    a.share(GROUP, B, 0)
    m = a.append(GROUP, b"x", 0.0, max_sends=3)
    times = send_times(a, 30)
    assert len(times) == 3
    assert a.pending() == {}
    assert GaveUp(m.id, B, RecordType.MESSAGE, "max_sends") in a.events()


def test_expiry_gives_up_on_time():
    a = engine(policy=ExponentialBackoff(base=16, jitter=0))
    a.share(GROUP, B, 0)
    m = a.append(GROUP, b"x", 0.0, ttl=5.0)
    a.payloads_to_send(0.0)
    # The next send would be at epoch 16, but the engine wakes at expiry.
    assert a.next_timer() == 5.0
    assert sent_to(a, 5.0) == {}
    assert a.pending() == {}
    assert GaveUp(m.id, B, RecordType.MESSAGE, "expired") in a.events()


# -- reachability -----------------------------------------------------------------


def test_records_in_long_backoff_become_due_when_the_peer_is_heard():
    a = engine(policy=ExponentialBackoff(base=1, max_delay=64, jitter=0), reachability_backoff=4)
    a.share(GROUP, B, 0)
    a.append(GROUP, b"x", 0.0)
    now = 0.0
    for _ in range(7):  # B is offline: backoff grows to 64 epochs
        now = a.next_timer()
        a.payloads_to_send(now)
    assert a.next_timer() - now >= 32
    a.receive(B, Payload(), now + 1.5)  # B says hello
    assert PeerReachable(B) in a.events()
    assert a.next_timer() <= now + 1.5
    assert len(sent_to(a, now + 1.5)[B].messages) == 1


def test_announce_sends_an_empty_payload():
    a = engine()
    out = a.payloads_to_send(0.0)
    assert out == []
    a.announce(B, 0.0)
    assert sent_to(a, 0.0) == {B: Payload()}


def test_short_backoff_is_not_disturbed_by_traffic():
    a = engine(policy=ExponentialBackoff(base=1, jitter=0), reachability_backoff=4)
    a.share(GROUP, B, 0)
    a.append(GROUP, b"x", 0.0)
    a.payloads_to_send(0.0)
    a.receive(B, Payload(), 0.5)
    assert sent_to(a, 0.5) == {}, "a record sent a moment ago is not resent"


# -- in-flight window ----------------------------------------------------------------


def test_new_records_wait_for_room_in_the_window():
    a = engine(max_inflight=3)
    a.share(GROUP, B, 0)
    msgs = [a.append(GROUP, b"%d" % i, 0.0) for i in range(7)]
    first = sent_to(a, 0.5)[B].messages
    assert first == msgs[:3]
    assert a.next_timer() == 2.0, "window-blocked records set no timer of their own"
    a.receive(B, Payload(acks=[msgs[0].id, msgs[1].id]), 0.1)
    assert sent_to(a, 0.1)[B].messages == msgs[3:5]


# -- groups and sharing ----------------------------------------------------------------


def test_messages_go_only_to_peers_sharing_the_group():
    a = engine()
    a.share(GROUP, B, 0)
    a.share(GROUP2, C, 0)
    m1 = a.append(GROUP, b"g1", 0.0)
    m2 = a.append(GROUP2, b"g2", 0.0)
    out = sent_to(a, 0.0)
    assert out[B].messages == [m1] and out[C].messages == [m2]


def test_request_from_a_peer_not_sharing_the_group_is_refused():
    a = engine()
    a.share(GROUP, B, 0)
    m = a.append(GROUP, b"secret", 0.0)
    a.payloads_to_send(0.0)
    a.receive(C, Payload(requests=[m.id]), 0.1)
    assert C not in sent_to(a, 0.1)
    assert a.stats["requests_refused"] == 1


def test_message_for_a_group_not_shared_with_the_sender_is_acked_not_stored():
    """The ACK is the "stop" a reference peer understands; nothing is kept."""
    b = engine()
    b.share(GROUP, A, 0)
    b.join(GROUP2)  # a member or not: the answer is the same (it reveals nothing)
    intruders = [Message(GROUP2, 1, b"intruder"), Message(GROUP3, 1, b"stranger")]
    b.receive(A, Payload(messages=intruders), 0.0)
    assert b.store.message_count() == 0
    assert sent_to(b, 0.0)[A].acks == [m.id for m in intruders]
    assert b.stats["dropped_unshared_group"] == 2
    events = b.events()
    assert not [e for e in events if isinstance(e, MessageReceived)]
    # Reported, rate-limited: one event a minute per peer.
    b.receive(A, Payload(messages=[Message(GROUP2, 2, b"again")]), 30.0)
    b.receive(A, Payload(messages=[Message(GROUP2, 3, b"later")]), 61.0)
    refused = [e for e in events + b.events() if isinstance(e, MessageRefused)]
    assert [(e.reason, e.suppressed) for e in refused] == [("unshared_group", 0), ("unshared_group", 2)]
    assert len(sent_to(b, 61.0)[A].acks) == 2
    # An ephemeral message is never ACKed, unshared or not.
    b.receive(A, Payload(messages=[Message(GROUP2, 4, b"e", ephemeral=True)]), 62.0)
    assert A not in sent_to(b, 62.0)


def test_sharing_later_syncs_existing_messages_and_unsharing_stops():
    a = engine()
    a.share(GROUP, B, 0)
    old = [a.append(GROUP, b"%d" % i, 0.0) for i in range(3)]
    a.payloads_to_send(0.0)
    a.share(GROUP, C, 1.0)
    assert sent_to(a, 1.0)[C].messages == old
    a.unshare(GROUP, C, 1.5)
    assert (C, RecordType.MESSAGE) not in a.pending()
    assert C not in sent_to(a, 50.0)


def test_relay_forwards_to_other_peers_sharing_the_group():
    net = Net()
    for n in "ABC":
        net.add(n)
    net.share(GROUP, "A", "B")
    net.share(GROUP, "B", "C")
    m = net.append("A", b"via B")
    net.run(2.0)
    assert net.received_ids("C") == [m.id]
    assert net.delivered["C"][0].peer == peer("B")
    assert net.quiet()


# -- MVDS-META: parents, causal delivery, ephemeral ---------------------------


def test_parents_are_the_current_leaves_maintained_incrementally():
    a = engine()
    m1 = a.append(GROUP, b"1", 0.0)
    m2 = a.append(GROUP, b"2", 0.0)
    assert m1.parents == () and m2.parents == (m1.id,)
    # Two concurrent messages from peers: both become leaves.
    a.share(GROUP, B, 0)
    x = Message(GROUP, 5, b"x", [m2.id])
    y = Message(GROUP, 5, b"y", [m2.id])
    a.receive(B, Payload(messages=[x, y]), 1.0)
    assert sorted(a.store.leaves(GROUP)) == sorted([x.id, y.id])
    m3 = a.append(GROUP, b"3", 2.0)
    assert sorted(m3.parents) == sorted([x.id, y.id])
    assert a.store.leaves(GROUP) == [m3.id]


def test_parent_arriving_after_its_child_does_not_become_a_leaf():
    a = engine()
    a.share(GROUP, B, 0)
    p = Message(GROUP, 1, b"parent")
    c = Message(GROUP, 2, b"child", [p.id])
    a.receive(B, Payload(messages=[c]), 0.0)
    a.receive(B, Payload(messages=[p]), 0.1)
    assert a.store.leaves(GROUP) == [c.id]


def test_appending_does_not_scan_the_history():
    class CountingStore(MemoryStore):
        scans = 0

        def group_message_ids(self, group_id):
            CountingStore.scans += 1
            return super().group_message_ids(group_id)

    a = Engine(CountingStore(), EngineConfig(epoch_length=1.0), now=0.0)
    for i in range(200):
        a.append(GROUP, b"%d" % i, 0.0)
    assert CountingStore.scans == 0




def test_append_many_is_appending_one_by_one():
    one, many = engine(), engine()
    for e in (one, many):
        e.share(GROUP, B, 0.0)
        e.share(GROUP, C, 0.0)
        e.append(GROUP, b"first", 0.0)
    bodies = [b"a", b"b", b"a", b"c"]  # a repeat moves a second ahead
    singles = [one.append(GROUP, body, 3.0) for body in bodies]
    batch = many.append_many(GROUP, bodies, 3.0)
    assert [(m.id, m.parents, m.timestamp) for m in batch] == [
        (m.id, m.parents, m.timestamp) for m in singles
    ]
    assert many.pending() == one.pending()
    assert sent_to(many, 3.0) == sent_to(one, 3.0)

def test_repeating_a_body_stays_linear_and_keeps_every_message():
    """The id does not cover parents, so identical bodies appended in one
    second move a second ahead each; the N-th must not probe N-1 taken ids."""

    class CountingStore(MemoryStore):
        lookups = 0

        def has_message(self, message_id):
            CountingStore.lookups += 1
            return super().has_message(message_id)

    a = Engine(CountingStore(), EngineConfig(epoch_length=1.0), now=0.0)
    ids = {a.append(GROUP, b"ok", 5.0).id for _ in range(2000)}
    assert len(ids) == 2000 and a.store.message_count() == 2000
    assert CountingStore.lookups < 3 * 2000
    # A later second still finds a free timestamp, never a taken one.
    assert a.append(GROUP, b"ok", 6.0).id not in ids

def test_causal_delivery_holds_children_and_requests_parents_from_the_sender():
    b = engine(delivery=Delivery.CAUSAL)
    b.share(GROUP, A, 0)
    p1 = Message(GROUP, 1, b"p1")
    p2 = Message(GROUP, 2, b"p2", [p1.id])
    c = Message(GROUP, 3, b"c", [p2.id])
    b.receive(A, Payload(messages=[c]), 0.0)
    assert [e for e in b.events() if isinstance(e, MessageReceived)] == []
    out = sent_to(b, 0.0)[A]
    assert out.acks == [c.id], "held messages are stored, so they are ACKed"
    assert out.requests == [p2.id]
    b.receive(A, Payload(messages=[p2]), 0.1)
    assert sent_to(b, 0.1)[A].requests == [p1.id]
    b.receive(A, Payload(messages=[p1]), 0.2)
    got = [e.message for e in b.events() if isinstance(e, MessageReceived)]
    assert got == [p1, p2, c]
    assert [e.seq for e in b.events()] == []  # drained


def test_eventual_delivery_hands_over_at_once():
    b = engine(delivery=Delivery.EVENTUAL)
    b.share(GROUP, A, 0)
    p = Message(GROUP, 1, b"p")
    c = Message(GROUP, 2, b"c", [p.id])
    b.receive(A, Payload(messages=[c]), 0.0)
    assert [e.message for e in b.events() if isinstance(e, MessageReceived)] == [c]
    assert sent_to(b, 0.0)[A].requests == [p.id], "missing parents are still fetched"


def test_ephemeral_messages_are_not_stored_acked_retransmitted_or_offered_later():
    a = engine()
    b = engine()
    a.share(GROUP, B, 0)
    b.share(GROUP, A, 0)
    e = a.append(GROUP, b"typing...", 0.0, ephemeral=True)
    out = sent_to(a, 0.0)
    assert out[B].messages == [e]
    assert a.pending() == {} and a.store.message_count() == 0
    assert sent_to(a, 100.0) == {}, "never retransmitted"
    b.receive(A, out[B], 0.1)
    b.receive(A, out[B], 0.2)  # duplicate
    received = [ev for ev in b.events() if isinstance(ev, MessageReceived)]
    assert [ev.message for ev in received] == [e] and received[0].seq is None
    assert sent_to(b, 0.2) == {}, "no ACK for ephemeral messages"
    assert b.store.message_count() == 0
    a.share(GROUP, C, 1.0)
    assert C not in sent_to(a, 1.0), "not part of the history offered to later peers"
    # Ephemeral messages are never parents.
    n = a.append(GROUP, b"durable", 2.0)
    assert e.id not in n.parents


def test_self_referencing_parents_are_dropped():
    b = engine()
    b.share(GROUP, A, 0)
    from mvds.ids import message_id

    mid = message_id(GROUP, 1, b"loop")
    b.receive(A, Payload(messages=[Message(GROUP, 1, b"loop", [mid])]), 0.0)
    assert b.store.message_count() == 0
    assert b.stats["dropped_self_parent"] == 1


def _delivered(e: Engine) -> list[bytes]:
    return [ev.message.body for ev in e.events() if isinstance(ev, MessageReceived)]


def test_repeated_parents_count_once():
    """A reference peer repeats one leaf dozens of times (a loop-variable bug)."""
    b = engine(max_parents=2)
    b.share(GROUP, A, 0)
    parent = Message(GROUP, 1, b"parent")
    child = Message(GROUP, 2, b"child", [parent.id] * 36)
    b.receive(A, Payload(messages=[child]), 0.0)
    assert sent_to(b, 0.0)[A].acks == [child.id]
    assert b.store.get_message(child.id).parents == (parent.id,)
    assert b.stats["parents_repeated"] == 1 and _delivered(b) == []
    b.receive(A, Payload(messages=[parent]), 1.0)
    assert _delivered(b) == [b"parent", b"child"]


def test_more_distinct_parents_than_tracked_are_stored_acked_and_waited_for_in_part():
    """Stored and ACKed with its first ``max_parents`` distinct parents; the
    rest count as delivered (docs/PROTOCOL.md 12.1)."""
    b = engine(max_parents=2)
    b.share(GROUP, A, 0)
    first, second, third = (Message(GROUP, i, b"p%d" % i) for i in range(1, 4))
    child = Message(GROUP, 9, b"child", [first.id, first.id, second.id, third.id])
    b.receive(A, Payload(messages=[child]), 0.0)
    assert sent_to(b, 0.0)[A].acks == [child.id]
    assert b.store.get_message(child.id).parents == (first.id, second.id)
    assert b.stats["parents_beyond_limit"] == 1
    b.receive(A, Payload(messages=[first]), 1.0)
    assert _delivered(b) == [b"p1"]
    b.receive(A, Payload(messages=[second]), 2.0)  # the third is never waited for
    assert _delivered(b) == [b"p2", b"child"]


# -- appends -----------------------------------------------------------------------


def test_two_identical_appends_in_one_second_stay_two_messages():
    a = engine()
    m1 = a.append(GROUP, b"ok", 10.2)
    m2 = a.append(GROUP, b"ok", 10.7)
    assert m1.id != m2.id and m2.timestamp == 11


def test_append_with_explicit_timestamp_is_idempotent():
    a = engine()
    m1 = a.append(GROUP, b"ok", 10.0, timestamp=7)
    m2 = a.append(GROUP, b"ok", 11.0, timestamp=7)
    assert m1 == m2 and a.store.message_count() == 1


def test_append_validates_its_arguments():
    a = engine()
    with pytest.raises(ValueError):
        a.append(b"short", b"x", 0.0)
    with pytest.raises(ValueError):
        a.append(GROUP, b"x", 0.0, max_sends=0)
    with pytest.raises(ValueError):
        a.append(GROUP, b"x", 0.0, ttl=0)


# -- restart ---------------------------------------------------------------------


def test_a_new_engine_on_the_same_store_resumes_pending_records():
    store = MemoryStore()
    a = Engine(store, EngineConfig(epoch_length=1.0), now=0.0)
    a.share(GROUP, B, 0)
    m = a.append(GROUP, b"x", 0.0)
    # Crash before anything was sent: a new engine sends at once.
    a2 = Engine(store, EngineConfig(epoch_length=1.0), now=5.0)
    assert a2.next_timer() == 5.0
    assert a2.payloads_to_send(5.0)[0][1].messages == [m]


# -- interactive mode at scale ------------------------------------------------------


def test_interactive_mode_completes_thousands_of_messages():
    net = Net(record_sent=False)
    config = EngineConfig(epoch_length=1.0, mode=Mode.INTERACTIVE, max_inflight=512)
    net.add("A", config), net.add("B", config)
    net.share(GROUP, "A", "B")
    sent = [net.append("A", b"%d" % i) for i in range(5000)]
    net.run(200.0)
    assert set(net.received_ids("B")) == {m.id for m in sent}
    assert len(net.received_ids("B")) == 5000
    assert net.quiet()
