"""The Noise core against the published cacophony test vectors (IK and IKpsk2).

The fixture holds two entries copied verbatim from the cacophony project's
vectors file (its source is named inside it).  Each vector's messages
alternate initiator -> responder -> initiator ...; the first two are the
handshake, the rest are transport messages under the split keys.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from mvds.secure.noise import HandshakeState, KeyPair, NoiseError

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "noise_cacophony_ik.json"
DOC = json.loads(FIXTURE.read_text())
VECTORS = {v["name"]: v for v in DOC["vectors"]}


def _pattern(name: str) -> str:
    return name.split("_")[1]


def _states(v, *, corrupt_psk=False):
    h = bytes.fromhex
    psk = h(v["init_psk"]) if "init_psk" in v else None
    rpsk = h(v["resp_psk"]) if "resp_psk" in v else None
    if corrupt_psk:
        rpsk = bytes(32)
    pattern = _pattern(v["name"])
    init = HandshakeState(
        pattern, True, h(v["init_prologue"]), KeyPair.from_private_bytes(h(v["init_static"])),
        remote_static=h(v["init_remote_static"]),
        ephemeral=KeyPair.from_private_bytes(h(v["init_ephemeral"])), psk=psk,
    )
    resp = HandshakeState(
        pattern, False, h(v["resp_prologue"]), KeyPair.from_private_bytes(h(v["resp_static"])),
        ephemeral=KeyPair.from_private_bytes(h(v["resp_ephemeral"])), psk=rpsk,
    )
    return init, resp


def test_fixture_names_its_source():
    assert "cacophony" in DOC["source"] and "36c1e5c3" in DOC["source"]
    assert set(VECTORS) == {"Noise_IK_25519_ChaChaPoly_SHA256", "Noise_IKpsk2_25519_ChaChaPoly_SHA256"}


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_byte_for_byte(name):
    v = VECTORS[name]
    init, resp = _states(v)
    messages = v["messages"]
    # Handshake: two messages.
    m0 = init.write_message(bytes.fromhex(messages[0]["payload"]))
    assert m0.hex() == messages[0]["ciphertext"]
    assert resp.read_message(m0) == bytes.fromhex(messages[0]["payload"])
    m1 = resp.write_message(bytes.fromhex(messages[1]["payload"]))
    assert m1.hex() == messages[1]["ciphertext"]
    assert init.read_message(m1) == bytes.fromhex(messages[1]["payload"])
    assert init.finished and resp.finished
    assert init.handshake_hash == resp.handshake_hash
    i_send, i_recv = init.split()
    r_send, r_recv = resp.split()
    # Transport: alternating, starting with the initiator.
    for index, message in enumerate(messages[2:]):
        send, recv = (i_send, r_recv) if index % 2 == 0 else (r_send, i_recv)
        ct = send.encrypt_with_ad(b"", bytes.fromhex(message["payload"]))
        assert ct.hex() == message["ciphertext"], (name, index)
        assert recv.decrypt_with_ad(b"", ct) == bytes.fromhex(message["payload"])


def test_a_wrong_psk_fails_at_the_initiator():
    init, resp = _states(VECTORS["Noise_IKpsk2_25519_ChaChaPoly_SHA256"], corrupt_psk=True)
    resp.read_message(init.write_message(b"x"))  # psk2: the first message does not use it
    with pytest.raises(NoiseError):
        init.read_message(resp.write_message(b""))


def test_a_modified_first_message_is_refused():
    init, resp = _states(VECTORS["Noise_IK_25519_ChaChaPoly_SHA256"])
    m0 = bytearray(init.write_message(b"hello"))
    m0[40] ^= 1  # inside the encrypted static key
    with pytest.raises(NoiseError):
        resp.read_message(bytes(m0))
