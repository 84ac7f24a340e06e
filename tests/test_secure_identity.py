"""Identities: key files on disk, their permissions, and what they refuse."""

import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mvds.secure import Identity, IdentityError


def test_created_key_file_is_private_even_with_a_permissive_umask(tmp_path):
    path = tmp_path / "identity.key"
    old = os.umask(0)
    try:
        identity = Identity.load_or_create(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert len(identity.peer_id) == 32
    assert identity.peer_id_hex == identity.peer_id.hex()
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_load_or_create_returns_the_same_identity_the_second_time(tmp_path):
    path = tmp_path / "identity.key"
    first = Identity.load_or_create(path)
    again = Identity.load_or_create(path)
    loaded = Identity.load(path)
    assert first.peer_id == again.peer_id == loaded.peer_id


def test_two_paths_give_two_identities(tmp_path):
    a = Identity.load_or_create(tmp_path / "a.key")
    b = Identity.load_or_create(tmp_path / "b.key")
    assert a.peer_id != b.peer_id


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_file_readable_by_others_is_refused(tmp_path, mode):
    path = tmp_path / "identity.key"
    Identity.load_or_create(path)
    path.chmod(mode)
    for load in (Identity.load, Identity.load_or_create):
        with pytest.raises(IdentityError, match="accessible by other users") as info:
            load(path)
        assert f"{mode:04o}" in str(info.value)
        assert "chmod 600" in str(info.value)


def test_missing_key_file_is_a_clear_error(tmp_path):
    with pytest.raises(IdentityError, match="does not exist"):
        Identity.load(tmp_path / "nope.key")


@pytest.mark.parametrize(
    "content",
    [b"", b"hello", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", bytes(range(256))],
)
def test_malformed_key_file_is_refused(tmp_path, content):
    path = tmp_path / "identity.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(IdentityError, match="not a valid"):
        Identity.load_or_create(path)


def test_key_of_another_type_is_refused(tmp_path):
    path = tmp_path / "identity.key"
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    with pytest.raises(IdentityError, match="not an X25519 private key"):
        Identity.load(path)


def test_directory_instead_of_a_file_is_refused(tmp_path):
    (tmp_path / "identity.key").mkdir(mode=0o700)
    with pytest.raises(IdentityError, match="not a regular file|cannot open"):
        Identity.load_or_create(tmp_path / "identity.key")


def test_symlinked_key_file_is_refused(tmp_path):
    real = tmp_path / "real.key"
    Identity.load_or_create(real)
    link = tmp_path / "identity.key"
    link.symlink_to(real)
    with pytest.raises(IdentityError, match="cannot open"):
        Identity.load_or_create(link)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(IdentityError, match="cannot create identity key file"):
        Identity.load_or_create(tmp_path / "absent" / "identity.key")


def test_private_key_never_shows_in_repr_or_str(tmp_path):
    path = tmp_path / "identity.key"
    identity = Identity.load_or_create(path)
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    private = load_pem_private_key(path.read_bytes(), None).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    for text in (repr(identity), str(identity)):
        assert identity.peer_id_hex in text
        assert private.hex() not in text
    assert not hasattr(identity, "__dict__")


def test_from_private_bytes_matches_rfc7748_public_key():
    # RFC 7748 section 6.1, Alice.
    identity = Identity.from_private_bytes(
        bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    )
    assert identity.peer_id_hex == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"


@pytest.mark.parametrize("bad", [bytes(32), b"\x01" + bytes(31), b"short"])
def test_unusable_peer_public_key_is_refused(bad):
    with pytest.raises(ValueError, match="peer id"):
        Identity.generate().shared_secret(bad)
