"""The datagram envelope: every UDP datagram is one envelope around one Payload.

Sealed (type 0x01)::

    0      1                    33          41                        n-16    n
    +------+--------------------+-----------+--------------------------+------+
    | 0x01 | sender id (32)     | counter   | ChaCha20-Poly1305        | tag  |
    |      | X25519 public key  | u64 BE    | ciphertext of the Payload| (16) |
    +------+--------------------+-----------+--------------------------+------+
    \\______________ header: AAD __________/

    key   = direction key (sender -> receiver), see mvds.secure.keys
    nonce = 4 zero bytes || counter (the same 8 bytes as in the header)

Plaintext (type 0x02, interop testing only)::

    | 0x02 | sender id (32) | Payload bytes |

:meth:`EnvelopeCodec.open` checks everything it can before spending any
work on cryptography: the length, the type byte, that the sender is a
configured peer, and that the counter is not a replay.  It never parses the
Payload (that is :func:`mvds.wire.decode_payload`'s job, for the caller,
only on what authenticated).  Every rejection raises :class:`EnvelopeError`
with a short stable ``reason`` the daemon uses as a counter name.
"""

from __future__ import annotations

from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from mvds.secure.identity import PEER_ID_SIZE, Identity
from mvds.secure.keys import direction_key
from mvds.limits import MAX_DATAGRAM_SIZE, PLAINTEXT_OVERHEAD, SEALED_OVERHEAD
from mvds.secure.replay import DEFAULT_WINDOW_SIZE, ReplayWindow

__all__ = [
    "EnvelopeCodec",
    "EnvelopeError",
    "REASONS",
    "TYPE_PLAINTEXT",
    "TYPE_SEALED",
]

TYPE_SEALED = 0x01
TYPE_PLAINTEXT = 0x02

_ID_END = 1 + PEER_ID_SIZE  # 33: where the sender id ends
_HEADER_END = _ID_END + 8  # 41: where the ciphertext starts
_TAG_SIZE = 16
_NONCE_PAD = bytes(4)

TRUNCATED = "truncated"
BAD_VERSION = "bad_version"
UNKNOWN_PEER = "unknown_peer"
REPLAY = "replay"
AUTH_FAILED = "auth_failed"
PLAINTEXT_REFUSED = "plaintext_refused"

REASONS = (TRUNCATED, BAD_VERSION, UNKNOWN_PEER, REPLAY, AUTH_FAILED, PLAINTEXT_REFUSED)
"""Every ``EnvelopeError.reason`` :meth:`EnvelopeCodec.open` can give."""


class EnvelopeError(ValueError):
    """A datagram that must be dropped; ``reason`` is one of :data:`REASONS`.

    ``seal`` also raises it, with reason ``unknown_peer``, for a peer that
    was never added (or was removed).
    """

    def __init__(self, reason: str, detail: str, claimed: bytes | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.claimed = claimed
        """For ``unknown_peer`` on open: the sender id the datagram claims
        (unauthenticated: for diagnostics, never for trust)."""


class CounterSource(Protocol):
    """Where sealing takes its nonce counters (a :class:`NonceCounter`)."""

    def next(self) -> int: ...


class _Peer:
    """Per-peer state: the two AEAD objects (built once) and the mode."""

    __slots__ = ("peer_id", "plaintext", "seal_aead", "open_aead", "window")

    def __init__(
        self,
        peer_id: bytes,
        plaintext: bool,
        seal_aead: ChaCha20Poly1305,
        open_aead: ChaCha20Poly1305,
        window: ReplayWindow,
    ) -> None:
        self.peer_id = peer_id
        self.plaintext = plaintext
        self.seal_aead = seal_aead
        self.open_aead = open_aead
        self.window = window


class EnvelopeCodec:
    """Seals payloads for, and opens datagrams from, a set of configured peers.

    Sans-IO: bytes in, bytes out.  A peer is sealed by default; a peer added
    with ``plaintext=True`` gets (and may send) plaintext envelopes.  Sealed
    envelopes are accepted from every configured peer, since they prove
    who sent them; plaintext ones only from plaintext peers.

    Replay windows outlive :meth:`remove_peer`, so removing and re-adding a
    peer does not reopen the door to replays of its old datagrams.
    """

    def __init__(
        self,
        identity: Identity,
        nonces: CounterSource,
        *,
        window_size: int = DEFAULT_WINDOW_SIZE,
    ) -> None:
        ReplayWindow(window_size)  # ValueError now, not at the first add_peer
        self.identity = identity
        self._nonces = nonces
        self._window_size = window_size
        self._peers: dict[bytes, _Peer] = {}
        self._windows: dict[bytes, ReplayWindow] = {}
        self._changed: set[bytes] = set()
        self._sealed_prefix = bytes((TYPE_SEALED,)) + identity.peer_id
        self._plaintext_prefix = bytes((TYPE_PLAINTEXT,)) + identity.peer_id

    # -- peers ------------------------------------------------------------
    def add_peer(self, peer_id: bytes, *, plaintext: bool = False) -> None:
        """Trust ``peer_id`` and derive both direction keys (idempotent).

        Raises ValueError for our own id or a peer id that is not a usable
        X25519 public key.
        """
        peer_id = bytes(peer_id)
        me = self.identity.peer_id
        if peer_id == me:
            raise ValueError("a node cannot add itself as a peer")
        shared = self.identity.shared_secret(peer_id)
        window = self._windows.get(peer_id)
        if window is None:
            window = self._windows[peer_id] = ReplayWindow(self._window_size)
        self._peers[peer_id] = _Peer(
            peer_id,
            bool(plaintext),
            ChaCha20Poly1305(direction_key(shared, me, peer_id)),
            ChaCha20Poly1305(direction_key(shared, peer_id, me)),
            window,
        )

    def remove_peer(self, peer_id: bytes) -> None:
        """Stop trusting ``peer_id`` (its replay window is kept)."""
        self._peers.pop(bytes(peer_id), None)

    def peers(self) -> list[bytes]:
        return list(self._peers)

    def _peer(self, peer_id: bytes) -> _Peer:
        try:
            return self._peers[peer_id]
        except KeyError:
            raise EnvelopeError(
                UNKNOWN_PEER, f"peer {bytes(peer_id).hex()[:16]}... is not configured"
            ) from None

    def overhead(self, peer_id: bytes) -> int:
        """Bytes the envelope adds to a payload sent to ``peer_id``."""
        return PLAINTEXT_OVERHEAD if self._peer(peer_id).plaintext else SEALED_OVERHEAD

    # -- datagrams -------------------------------------------------------------
    def seal(self, peer_id: bytes, payload: bytes) -> bytes:
        """One datagram carrying ``payload`` (an encoded MVDS Payload) to ``peer_id``."""
        peer = self._peer(peer_id)
        if peer.plaintext:
            datagram = self._plaintext_prefix + payload
        else:
            counter = self._nonces.next().to_bytes(8, "big")
            header = self._sealed_prefix + counter
            datagram = header + peer.seal_aead.encrypt(_NONCE_PAD + counter, payload, header)
        if len(datagram) > MAX_DATAGRAM_SIZE:
            raise ValueError(
                f"a {len(payload)}-byte payload makes a {len(datagram)}-byte datagram; "
                f"UDP carries at most {MAX_DATAGRAM_SIZE}"
            )
        return datagram

    def open(self, datagram: bytes) -> tuple[bytes, bytes]:
        """Authenticate and decrypt one datagram: ``(sender peer id, payload)``.

        Raises :class:`EnvelopeError` for anything that must be dropped.
        """
        if type(datagram) is not bytes:
            datagram = bytes(datagram)  # bytearray/memoryview from recv_into
        size = len(datagram)
        if not size:
            raise EnvelopeError(TRUNCATED, "empty datagram")
        # Plain bytes slices: measured faster than memoryviews here, both
        # for slicing and for the AEAD call.
        kind = datagram[0]
        if kind == TYPE_SEALED:
            if size < SEALED_OVERHEAD:
                raise EnvelopeError(
                    TRUNCATED, f"{size} bytes; a sealed envelope has at least {SEALED_OVERHEAD}"
                )
            peer = self._peers.get(datagram[1:_ID_END])
            if peer is None:
                raise EnvelopeError(
                    UNKNOWN_PEER, f"from unknown sender {datagram[1:9].hex()}...",
                    claimed=datagram[1:_ID_END],
                )
            counter_bytes = datagram[_ID_END:_HEADER_END]
            counter = int.from_bytes(counter_bytes, "big")
            window = peer.window
            if not window.check(counter):
                raise EnvelopeError(REPLAY, f"counter {counter} was seen or is too old")
            try:
                payload = peer.open_aead.decrypt(
                    _NONCE_PAD + counter_bytes, datagram[_HEADER_END:], datagram[:_HEADER_END]
                )
            except InvalidTag:
                raise EnvelopeError(AUTH_FAILED, "the tag does not verify") from None
            window.accept(counter)
            self._changed.add(peer.peer_id)
            return peer.peer_id, payload
        if kind == TYPE_PLAINTEXT:
            if size < PLAINTEXT_OVERHEAD:
                raise EnvelopeError(
                    TRUNCATED,
                    f"{size} bytes; a plaintext envelope has at least {PLAINTEXT_OVERHEAD}",
                )
            peer = self._peers.get(datagram[1:_ID_END])
            if peer is None:
                raise EnvelopeError(
                    UNKNOWN_PEER, f"from unknown sender {datagram[1:9].hex()}...",
                    claimed=datagram[1:_ID_END],
                )
            if not peer.plaintext:
                raise EnvelopeError(
                    PLAINTEXT_REFUSED,
                    f"peer {datagram[1:9].hex()}... is not configured for plaintext",
                )
            return peer.peer_id, datagram[_ID_END:]
        raise EnvelopeError(BAD_VERSION, f"unknown envelope type 0x{kind:02x}")

    # -- replay state ------------------------------------------------------------
    def export_replay_state(self, *, changed_only: bool = False) -> dict[bytes, bytes]:
        """Peer id -> serialized replay window, for the daemon to commit.

        With ``changed_only``, only the windows that accepted a datagram since
        the previous ``changed_only`` export (cheap to call once per batch).
        """
        if changed_only:
            names = self._changed
            self._changed = set()
        else:
            names = self._windows.keys()
        return {peer_id: self._windows[peer_id].to_bytes() for peer_id in names}

    def import_replay_state(self, state: dict[bytes, bytes]) -> None:
        """Restore windows saved by :meth:`export_replay_state` (at start-up).

        ValueError, naming the peer, if a saved window is malformed.
        """
        restored = {}
        for peer_id, data in state.items():
            try:
                restored[bytes(peer_id)] = ReplayWindow.from_bytes(data)
            except ValueError as exc:
                raise ValueError(
                    f"saved replay window for peer {bytes(peer_id).hex()} is unusable: {exc}"
                ) from None
        for peer_id, window in restored.items():
            self._windows[peer_id] = window
            peer = self._peers.get(peer_id)
            if peer is not None:
                peer.window = window
