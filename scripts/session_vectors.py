"""Print the session test vectors of docs/PROTOCOL.md ("Sessions"), computed by mvds itself.

    python scripts/session_vectors.py

Paste the output into the "Session test vectors" block when the session
wire format changes (tests/test_session_doc.py fails until the document and
the code agree).  Every input is fixed: static keys are RFC 7748's Alice
and Bob, ephemeral keys, indices, timestamp, cookie secret and nonce are
given below, so the output is deterministic.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from protocol_vectors import ALICE_PRIVATE, BOB_PRIVATE, format_vectors  # noqa: E402

from mvds.secure import sessionwire as sw  # noqa: E402
from mvds.secure.cookie import address_bytes  # noqa: E402
from mvds.secure.noise import HandshakeState, KeyPair  # noqa: E402

ALICE_EPHEMERAL = bytes.fromhex("893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a")
BOB_EPHEMERAL = bytes.fromhex("bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b")
ALICE_INDEX = 0x11223344
BOB_INDEX = 0x55667788
WALL_SECONDS = 1700000000.25  # 2023-11-14T22:13:20.25Z
COOKIE_SECRET = bytes(range(0x40, 0x60))
COOKIE_NONCE = bytes(range(0x60, 0x6C))
ALICE_ADDRESS = ("192.0.2.1", 4242)
TRANSPORT_PAYLOAD = b"hello"  # not a valid Payload: the frame carries any bytes


def vectors() -> dict[str, bytes]:
    alice = KeyPair.from_private_bytes(ALICE_PRIVATE)
    bob = KeyPair.from_private_bytes(BOB_PRIVATE)
    init = HandshakeState(
        sw.PROTOCOL_PATTERN, True, sw.PROLOGUE, alice, remote_static=bob.public,
        ephemeral=KeyPair.from_private_bytes(ALICE_EPHEMERAL), psk=sw.NO_PSK,
    )
    resp = HandshakeState(
        sw.PROTOCOL_PATTERN, False, sw.PROLOGUE, bob,
        ephemeral=KeyPair.from_private_bytes(BOB_EPHEMERAL), psk=sw.NO_PSK,
    )
    timestamp = sw.timestamp_bytes(sw.timestamp_value(WALL_SECONDS))
    payload = timestamp + bytes((0,))
    body = sw.initiation_head(ALICE_INDEX) + init.write_message(payload)
    initiation, mac1 = sw.add_macs(body, sw.mac1_key(bob.public), None)
    resp.read_message(sw.parse_initiation(initiation)[1])
    rbody = sw.response_head(BOB_INDEX, ALICE_INDEX) + resp.write_message(b"")
    response, _ = sw.add_macs(rbody, sw.mac1_key(alice.public), None)
    init.read_message(sw.parse_response(response)[2])
    handshake_hash = init.handshake_hash
    a_send, a_recv = init.split()
    b_send, b_recv = resp.split()
    assert a_send.key == b_recv.key and a_recv.key == b_send.key

    def transport(key: bytes, receiver: int, counter: int, plaintext: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        head = sw.transport_head(receiver, counter)
        return head + ChaCha20Poly1305(key).encrypt(sw.transport_nonce(counter), plaintext, head)

    cookie = sw.mac(COOKIE_SECRET, address_bytes(ALICE_ADDRESS))
    cookie_reply = sw.seal_cookie_reply(ALICE_INDEX, cookie, bob.public, mac1, COOKIE_NONCE)
    initiation_with_cookie, _ = sw.add_macs(body, sw.mac1_key(bob.public), cookie)
    return {
        "alice_ephemeral_private": ALICE_EPHEMERAL,
        "bob_ephemeral_private": BOB_EPHEMERAL,
        "timestamp": timestamp,
        "mac1_key_bob": sw.mac1_key(bob.public),
        "initiation_alice_to_bob": initiation,
        "response_bob_to_alice": response,
        "handshake_hash": handshake_hash,
        "transport_key_alice_to_bob": a_send.key,
        "transport_key_bob_to_alice": b_send.key,
        "transport_alice_to_bob": transport(a_send.key, BOB_INDEX, 0, bytes((sw.FRAME_DATA,)) + TRANSPORT_PAYLOAD),
        "keepalive_bob_to_alice": transport(b_send.key, ALICE_INDEX, 0, b""),
        "cookie": cookie,
        "cookie_reply_bob_to_alice": cookie_reply,
        "initiation_with_cookie": initiation_with_cookie,
    }


if __name__ == "__main__":
    sys.stdout.write(format_vectors(vectors()) + "\n")
