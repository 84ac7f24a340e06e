"""docs/PROTOCOL.md "Sessions" cannot drift from the code: vectors, sizes, labels, constants."""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import pathlib
import re

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from interop.docvectors import session_vectors
from mvds.secure import Identity
from mvds.secure import cookie as cookie_module
from mvds.secure import session as session_module
from mvds.secure import sessionwire as sw
from mvds.secure.session import SessionManager

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "PROTOCOL.md").read_text()
SECTION = DOC[DOC.index("## Sessions (envelope types 0x03–0x06)") :]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _load("session_vectors")
BASE = _load("protocol_vectors")




V = session_vectors(DOC)


def test_documented_vectors_are_what_the_code_computes():
    computed = GEN.vectors()
    assert list(V) == list(computed)
    for name, value in computed.items():
        assert V[name].hex() == value.hex(), name


def test_sizes_and_types_in_the_document_match_the_code():
    assert f"| `0x{sw.TYPE_INITIATION:02x}` | handshake initiation   | {sw.INITIATION_SIZE} bytes" in SECTION
    assert f"| `0x{sw.TYPE_RESPONSE:02x}` | handshake response     | {sw.RESPONSE_SIZE} bytes" in SECTION
    assert f"| `0x{sw.TYPE_COOKIE_REPLY:02x}` | cookie reply           | {sw.COOKIE_REPLY_SIZE} bytes" in SECTION
    assert f"| `0x{sw.TYPE_TRANSPORT:02x}` | transport data         | 32 + n bytes" in SECTION
    assert len(V["initiation_alice_to_bob"]) == sw.INITIATION_SIZE
    assert len(V["response_bob_to_alice"]) == sw.RESPONSE_SIZE
    assert len(V["cookie_reply_bob_to_alice"]) == sw.COOKIE_REPLY_SIZE
    assert len(V["keepalive_bob_to_alice"]) == sw.TRANSPORT_HEADER_SIZE + 16
    assert f"{sw.TRANSPORT_OVERHEAD} bytes (16 header, 16 tag, 1 frame byte)" in SECTION


def test_labels_and_names_in_the_document_match_the_code():
    assert f'`"{sw.PROLOGUE.decode()}"`' in SECTION and f"the {len(sw.PROLOGUE)} ASCII bytes" in SECTION
    assert f"`Noise_{sw.PROTOCOL_PATTERN}_25519_ChaChaPoly_SHA256`" in SECTION
    assert f'"{sw.LABEL_MAC1.decode()}"' in SECTION
    assert f'"{sw.LABEL_COOKIE.decode()}"' in SECTION


def test_constants_table_matches_the_code():
    s = session_module
    assert f"| `REKEY_AFTER_S`                  | {s.REKEY_AFTER_S:.0f} s" in SECTION
    assert f"| `RESPONDER_REKEY_DELAY_S`        | {s.RESPONDER_REKEY_DELAY_S:.0f} s" in SECTION
    assert s.REKEY_AFTER_MESSAGES == 2**60 and "| 2^60 datagrams" in SECTION
    assert f"| `REJECT_AFTER_S`                 | {s.REJECT_AFTER_S:.0f} s" in SECTION
    assert s.REJECT_AFTER_MESSAGES == 2**64 - 2**13 - 1
    assert f"| `KEEP_PREVIOUS_S`                | {s.KEEP_PREVIOUS_S:.0f} s" in SECTION
    assert f"| `REKEY_TIMEOUT_S`                | {s.REKEY_TIMEOUT_S:g} s, {s.STEADY_RETRIES} times, then doubling to {s.MAX_RETRY_S:.0f} s, + up to {s.JITTER_FRACTION:.0%} jitter" in SECTION
    assert f"| `REKEY_ATTEMPT_S`                | {s.REKEY_ATTEMPT_S:.0f} s" in SECTION
    assert f"(at most every {s.COLLISION_RESEND_S:g} s)" in SECTION
    assert s.REPLAY_ANSWER_S == 1.0 and "(at most once per second;" in SECTION
    assert f"(default\n  {s.DEFAULT_KEEPALIVE_S:.0f} s; 0 = off)" in SECTION
    assert f"**{s.REACHABLE_MULTIPLE} × keepalive_s**" in SECTION
    assert f"at most {s.QUEUE_MAX} per peer" in SECTION
    c = cookie_module
    assert f"more than {c.UNDER_LOAD_HPS:.0f} initiations a second\n  (burst {c.UNDER_LOAD_HPS:.0f}" in SECTION
    assert f"at most {c.PER_SOURCE_HPS:.0f} initiations a second per source IP (burst\n  {c.PER_SOURCE_BURST:.0f})" in SECTION
    assert f"replaced every {c.COOKIE_SECRET_S:.0f} s" in SECTION
    assert f"next\n{s.COOKIE_VALID_S:.0f} s" in SECTION


def test_documented_messages_check_out_from_the_primitives_alone():
    """What an independent implementation would do with only hashlib, hmac and an AEAD."""
    alice = Identity.from_private_bytes(BASE.ALICE_PRIVATE)
    bob = Identity.from_private_bytes(BASE.BOB_PRIVATE)
    mac = lambda key, data: hmac.new(key, data, hashlib.sha256).digest()[:16]
    mac1_key = hashlib.sha256(b"mvds-mac1-v1" + bob.peer_id).digest()
    assert mac1_key == V["mac1_key_bob"]
    init = V["initiation_alice_to_bob"]
    assert init[0] == 3 and init[4:8] == (0x11223344).to_bytes(4, "little")
    assert mac(mac1_key, init[:117]) == init[117:133] and init[133:] == bytes(16)
    resp = V["response_bob_to_alice"]
    assert resp[4:8] == (0x55667788).to_bytes(4, "little") and resp[8:12] == init[4:8]
    alice_mac1 = hashlib.sha256(b"mvds-mac1-v1" + alice.peer_id).digest()
    assert mac(alice_mac1, resp[:60]) == resp[60:76]
    data = V["transport_alice_to_bob"]
    nonce = bytes(4) + data[8:16]
    assert ChaCha20Poly1305(V["transport_key_alice_to_bob"]).decrypt(nonce, data[16:], data[:16]) == b"\x00hello"
    ka = V["keepalive_bob_to_alice"]
    assert ChaCha20Poly1305(V["transport_key_bob_to_alice"]).decrypt(bytes(12), ka[16:], ka[:16]) == b""
    reply = V["cookie_reply_bob_to_alice"]
    key = hashlib.sha256(b"mvds-cookie-v1" + bob.peer_id).digest()
    assert ChaCha20Poly1305(key).decrypt(reply[8:20], reply[20:], init[117:133]) == V["cookie"]
    assert V["cookie"] == mac(bytes(range(0x40, 0x60)), b"192.0.2.1|4242")
    with_cookie = V["initiation_with_cookie"]
    assert with_cookie[:133] == init[:133] and mac(V["cookie"], with_cookie[:133]) == with_cookie[133:]
    ts = V["timestamp"]
    assert int.from_bytes(ts[:8], "big") == 2**62 + 1700000000 and int.from_bytes(ts[8:], "big") == 250_000_000


def test_a_session_manager_accepts_the_documented_initiation():
    bob = SessionManager(Identity.from_private_bytes(BASE.BOB_PRIVATE))
    alice_id = Identity.from_private_bytes(BASE.ALICE_PRIVATE).peer_id
    bob.add_peer(alice_id, ("192.0.2.1", 4242))
    bob.datagram_received(("192.0.2.1", 4242), V["initiation_alice_to_bob"], 0.0)
    (addr, response), = bob.datagrams_to_send()
    assert bob.counters["handshake_responded"] == 1
    assert len(response) == sw.RESPONSE_SIZE and response[8:12] == (0x11223344).to_bytes(4, "little")


def test_every_refusal_and_drop_reason_of_the_code_is_documented():
    source = (ROOT / "mvds" / "secure" / "session.py").read_text()
    reasons = set(re.findall(r'_(?:refuse|drop)\("([a-z_]+)"', source))
    reasons |= {"cookie_sent", "amplification_limited", "no_address"}
    paragraph = SECTION[SECTION.index("each is counted by reason") : SECTION.index("### Replayed initiations")]
    documented = set(re.findall(r"`([a-z_]+)`", paragraph))
    assert reasons == documented
