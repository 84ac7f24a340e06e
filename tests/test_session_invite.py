"""Pairing in the session layer: an invite's psk proved inside IKpsk2 (sans-IO)."""

from __future__ import annotations

import os

from mvds.secure import sessionwire as sw
from mvds.secure.session import MAX_INVITES, InviteAccepted, InviteAnswered, SessionEstablished
from sessionnet import Net

import pytest

A, B, C = ("127.0.0.1", 1001), ("127.0.0.1", 1002), ("127.0.0.1", 1003)


def strangers():
    """Two managers that do not know each other."""
    net = Net()
    inviter = net.add(A, seed=1)
    acceptor = net.add(B, seed=2)
    return net, inviter, acceptor


def test_the_right_psk_pairs_both_ways_and_later_handshakes_use_no_psk():
    net, inviter, acceptor = strangers()
    psk = os.urandom(32)
    inviter.offer_invite(5, psk)
    acceptor.add_peer(inviter.public, A)
    acceptor.accept_invite(inviter.public, psk, 5)
    acceptor.send(inviter.public, b"hello", 0.0)
    net.flush(0.0)
    assert [e for e in net.events[B] if isinstance(e, InviteAnswered)] == [InviteAnswered(inviter.public, A)]
    accepted = [e for e in net.events[A] if isinstance(e, InviteAccepted)]
    assert accepted == [InviteAccepted(acceptor.public, 5, B)]
    # The payload arrived (the caller decides to trust; the session layer knows it now).
    assert [r.payload for r in net.received[A]] == [b"hello"]
    inviter.send(acceptor.public, b"back", 0.1)
    net.flush(0.1)
    assert [r.payload for r in net.received[B]] == [b"back"]
    # Single use: the slot is gone.
    assert 5 not in inviter._invites
    # A rekey later uses the normal (zero) psk on both sides and still works.
    acceptor._initiate(acceptor._peers[inviter.public], 1.0)
    net.flush(1.0)
    established = [e for e in net.events[B] if isinstance(e, SessionEstablished) and e.rekey]
    assert established


def test_a_wrong_psk_is_refused_and_nothing_is_trusted():
    net, inviter, acceptor = strangers()
    inviter.offer_invite(5, os.urandom(32))
    acceptor.add_peer(inviter.public, A)
    acceptor.accept_invite(inviter.public, os.urandom(32), 5)
    acceptor.send(inviter.public, b"hello", 0.0)
    net.flush(0.0)
    assert not any(isinstance(e, InviteAccepted) for e in net.events[A])
    assert not any(isinstance(e, InviteAnswered) for e in net.events[B])
    assert acceptor.counters["handshake_failed"] >= 1
    assert net.received[A] == []
    assert acceptor.public not in inviter._peers
    assert 5 in inviter._invites  # still offered: the real holder may come


def test_a_wrong_slot_or_no_invites_is_an_unknown_peer():
    net, inviter, acceptor = strangers()
    psk = os.urandom(32)
    acceptor.add_peer(inviter.public, A)
    acceptor.accept_invite(inviter.public, psk, 5)
    acceptor.send(inviter.public, b"x", 0.0)
    net.flush(0.0)
    assert inviter.counters["unknown_peer"] >= 1
    inviter.offer_invite(6, psk)
    acceptor.send(inviter.public, b"x", 5.0)
    acceptor.tick(5.0)
    net.flush(5.0)
    assert inviter.counters["unknown_peer"] >= 2
    assert not any(isinstance(e, InviteAccepted) for e in net.events[A])


def test_an_invite_is_used_once():
    net = Net()
    inviter = net.add(A, seed=1)
    first = net.add(B, seed=2)
    second = net.add(C, seed=3)
    psk = os.urandom(32)
    inviter.offer_invite(9, psk)
    for node in (first, second):
        node.add_peer(inviter.public, A)
        node.accept_invite(inviter.public, psk, 9)
    first.send(inviter.public, b"1", 0.0)
    net.flush(0.0)
    second.send(inviter.public, b"2", 0.1)
    net.flush(0.1)
    accepted = [e for e in net.events[A] if isinstance(e, InviteAccepted)]
    assert [e.peer_id for e in accepted] == [first.public]
    assert not any(isinstance(e, InviteAnswered) for e in net.events[C])


def test_an_unconfirmed_invite_handshake_holds_one_peer_per_slot():
    net, inviter, acceptor = strangers()
    psk = os.urandom(32)
    inviter.offer_invite(3, psk)
    # Strangers who know the slot but not the psk: each replaces the last.
    for seed in range(10):
        stranger = net.add(("127.0.0.1", 2000 + seed), seed=100 + seed)
        stranger.add_peer(inviter.public, A)
        stranger.accept_invite(inviter.public, os.urandom(32), 3)
        stranger.send(inviter.public, b"x", 0.0)
        net.flush(0.0)
    assert len(inviter._invitees) == 1
    assert inviter.state_size()["sessions"] == 1
    inviter.withdraw_invite(3)
    assert inviter.state_size()["sessions"] == 0 and not inviter._invitees


def test_the_acceptor_tries_every_address_of_the_code():
    net, inviter, acceptor = strangers()
    psk = os.urandom(32)
    inviter.offer_invite(4, psk)
    nowhere = ("127.0.0.1", 9)
    acceptor.add_peer(inviter.public, nowhere)
    acceptor.accept_invite(inviter.public, psk, 4, [nowhere, A])
    acceptor.send(inviter.public, b"hi", 0.0)
    net.flush(0.0)
    assert [e for e in net.events[B] if isinstance(e, InviteAnswered)] == [InviteAnswered(inviter.public, A)]


def test_invites_are_bounded():
    net, inviter, _ = strangers()
    for slot in range(1, MAX_INVITES + 1):
        inviter.offer_invite(slot, bytes(32))
    with pytest.raises(ValueError):
        inviter.offer_invite(100, bytes(32))
    with pytest.raises(ValueError):
        inviter.offer_invite(0, bytes(32))
