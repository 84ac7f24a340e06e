"""Invite codes: round trip, checksum, the documented vector (docs/PROTOCOL.md "Pairing")."""

from __future__ import annotations

import hashlib
import hmac
import pathlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mvds.daemon.pairing import (
    CODE_PREFIX, InviteBook, InviteCode, PairingError, decode_code, encode_code, invite_psk,
)

DOC = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md").read_text()

names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    peer_id=st.binary(min_size=32, max_size=32), secret=st.binary(min_size=16, max_size=16),
    slot=st.integers(1, 127), expires=st.integers(0, 2**32 - 1),
    addresses=st.lists(names, max_size=4), groups=st.lists(names, max_size=8),
)
def test_round_trip(peer_id, secret, slot, expires, addresses, groups):
    code = InviteCode(peer_id, secret, slot, expires, tuple(addresses), tuple(groups))
    text = encode_code(code)
    assert text.startswith(CODE_PREFIX) and text == text.lower()
    assert decode_code(text) == code
    # Case, spaces, line breaks and dashes do not matter.
    spaced = text[:6] + "-".join(text[6 + i : 6 + i + 8] for i in range(0, len(text) - 6, 8))
    assert decode_code("  " + spaced.upper() + "\n") == code


@pytest.mark.parametrize("group", ["c", "ch", "cha", "chat", "chats"])  # every length mod 5
def test_every_single_character_change_is_caught(group):
    """Including the last character's unused bits, which a lax base32
    decoder ignores."""
    code = encode_code(InviteCode(bytes(32), bytes(16), 3, 1, ("127.0.0.1:7400",), (group,)))
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    for i in range(len(CODE_PREFIX), len(code)):
        for other in alphabet:
            if other == code[i]:
                continue
            with pytest.raises(PairingError, match="mistyped|malformed"):
                decode_code(code[:i] + other + code[i + 1 :])
    with pytest.raises(PairingError, match="incomplete|mistyped"):
        decode_code(code[:-5])
    with pytest.raises(PairingError, match="not an invite code"):
        decode_code("mvds2-" + code[6:])


def test_the_documented_vector():
    code = re.search(r"^code = (mvds1-\S+)$", DOC, re.M).group(1)
    psk = re.search(r"^psk  = ([0-9a-f]{64})$", DOC, re.M).group(1)
    fields = decode_code(code)
    assert fields == InviteCode(bytes(range(0x20, 0x40)), bytes(range(16)), 5, 1700000600,
                                ("10.0.0.1:7400",), ("chat",))
    assert encode_code(fields) == code
    assert fields.psk.hex() == psk
    # HKDF-SHA256 by RFC 5869's two steps, independently of cryptography's HKDF.
    prk = hmac.digest(fields.peer_id, fields.secret, "sha256")
    okm = hmac.digest(prk, b"mvds invite psk v1" + b"\x01", "sha256")
    assert invite_psk(fields.secret, fields.peer_id) == okm


def test_the_book_bounds_invites_and_uses_each_once(tmp_path):
    book = InviteBook.load(tmp_path / "invites.json")
    invites = [book.create(["chat"], 60, None, 1000.0) for _ in range(16)]
    assert len({i.slot for i in invites}) == 16
    with pytest.raises(PairingError, match="pending already"):
        book.create([], 60, None, 1000.0)
    again = InviteBook.load(tmp_path / "invites.json")  # persisted
    assert [i.slot for i in again.pending(1000.0)] == [i.slot for i in invites]
    again.use(invites[0].slot, b"\x01" * 32, 1001.0)
    with pytest.raises(PairingError, match="used"):
        InviteBook.load(tmp_path / "invites.json").use(invites[0].slot, b"\x02" * 32, 1002.0)
    with pytest.raises(PairingError, match="expired"):
        again.use(invites[1].slot, b"\x02" * 32, 1061.0)
    assert (tmp_path / "invites.json").stat().st_mode & 0o777 == 0o600


def test_reachable_addresses():
    from mvds.daemon.pairing import reachable_addresses

    assert reachable_addresses("10.1.2.3", 7400) == ["10.1.2.3:7400"]
    assert reachable_addresses("::1", 7400) == ["[::1]:7400"]
    wildcard = reachable_addresses("0.0.0.0", 7400)
    assert wildcard and all(a.endswith(":7400") for a in wildcard) and len(wildcard) <= 4
    assert not any(a.startswith("127.") for a in wildcard[:-1])  # loopback, if there, last
