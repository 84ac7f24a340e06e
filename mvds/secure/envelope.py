"""The plaintext envelope (type 0x02, interop testing only) and the retired 0x01.

Every datagram starts with a type byte.  0x03-0x06 belong to the session
layer (:mod:`mvds.secure.session`, docs/PROTOCOL.md "Sessions"); this codec
handles the one other type that is still spoken::

    | 0x02 | sender id (32) | Payload bytes |

Plaintext is accepted only from peers configured ``plaintext = true``: it
is how the reference implementation's wire format is tested, and proves
nothing about who sent it.

Type 0x01, the old static-key envelope (a key derived once from the two
identities, a durable 64-bit counter as nonce, a replay window persisted
in the store), is retired: a restored backup or a reverted snapshot reused
its counters.  A 0x01 datagram is dropped as ``bad_version``.

:meth:`EnvelopeCodec.open` never parses the Payload (that is
:func:`mvds.wire.decode_payload`'s job, for the caller).  Every rejection
raises :class:`EnvelopeError` with a short stable ``reason`` the daemon
uses as a counter name.
"""

from __future__ import annotations

from mvds.limits import MAX_DATAGRAM_SIZE, PLAINTEXT_OVERHEAD
from mvds.secure.identity import PEER_ID_SIZE, Identity

__all__ = [
    "EnvelopeCodec",
    "EnvelopeError",
    "REASONS",
    "TYPE_PLAINTEXT",
    "TYPE_RETIRED_STATIC",
]

TYPE_RETIRED_STATIC = 0x01
TYPE_PLAINTEXT = 0x02

_ID_END = 1 + PEER_ID_SIZE  # 33: where the sender id ends

TRUNCATED = "truncated"
BAD_VERSION = "bad_version"
UNKNOWN_PEER = "unknown_peer"
PLAINTEXT_REFUSED = "plaintext_refused"

REASONS = (TRUNCATED, BAD_VERSION, UNKNOWN_PEER, PLAINTEXT_REFUSED)
"""Every ``EnvelopeError.reason`` :meth:`EnvelopeCodec.open` can give."""


class EnvelopeError(ValueError):
    """A datagram that must be dropped; ``reason`` is one of :data:`REASONS`.

    ``seal`` also raises it, with reason ``unknown_peer``, for a peer that
    was never added as a plaintext peer (or was removed).
    """

    def __init__(self, reason: str, detail: str, claimed: bytes | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.claimed = claimed
        """For ``unknown_peer`` on open: the sender id the datagram claims
        (unauthenticated: for diagnostics, never for trust)."""


class EnvelopeCodec:
    """Plaintext envelopes for the peers configured that way (sans-IO).

    Peers added with ``plaintext=False`` are known (so a plaintext datagram
    from them is refused as ``plaintext_refused``, not ``unknown_peer``)
    but never sealed here: they talk through sessions.
    """

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self._plaintext: dict[bytes, bool] = {}
        self._prefix = bytes((TYPE_PLAINTEXT,)) + identity.peer_id

    # -- peers ------------------------------------------------------------
    def add_peer(self, peer_id: bytes, *, plaintext: bool = False) -> None:
        """Know ``peer_id``; ``plaintext`` peers get and may send plaintext envelopes.

        Raises ValueError for our own id or a peer id that is not a usable
        X25519 public key.
        """
        peer_id = bytes(peer_id)
        if peer_id == self.identity.peer_id:
            raise ValueError("a node cannot add itself as a peer")
        self.identity.shared_secret(peer_id)  # ValueError for an unusable key
        self._plaintext[peer_id] = bool(plaintext)

    def remove_peer(self, peer_id: bytes) -> None:
        self._plaintext.pop(bytes(peer_id), None)

    def peers(self) -> list[bytes]:
        return list(self._plaintext)

    def is_plaintext(self, peer_id: bytes) -> bool:
        return self._plaintext.get(peer_id, False)

    def overhead(self, peer_id: bytes) -> int:
        """Bytes the envelope adds to a payload sent to ``peer_id``."""
        self._check(peer_id)
        return PLAINTEXT_OVERHEAD

    def _check(self, peer_id: bytes) -> None:
        if not self._plaintext.get(peer_id, False):
            raise EnvelopeError(
                UNKNOWN_PEER, f"peer {bytes(peer_id).hex()[:16]}... is not a plaintext peer"
            )

    # -- datagrams -------------------------------------------------------------
    def seal(self, peer_id: bytes, payload: bytes) -> bytes:
        """One plaintext datagram carrying ``payload`` to ``peer_id``."""
        self._check(peer_id)
        datagram = self._prefix + payload
        if len(datagram) > MAX_DATAGRAM_SIZE:
            raise ValueError(
                f"a {len(payload)}-byte payload makes a {len(datagram)}-byte datagram; "
                f"UDP carries at most {MAX_DATAGRAM_SIZE}"
            )
        return datagram

    def open(self, datagram: bytes) -> tuple[bytes, bytes]:
        """``(sender peer id, payload)`` of one plaintext datagram.

        Raises :class:`EnvelopeError` for anything that must be dropped.
        """
        if type(datagram) is not bytes:
            datagram = bytes(datagram)  # bytearray/memoryview from recv_into
        size = len(datagram)
        if not size:
            raise EnvelopeError(TRUNCATED, "empty datagram")
        kind = datagram[0]
        if kind != TYPE_PLAINTEXT:
            if kind == TYPE_RETIRED_STATIC:
                raise EnvelopeError(
                    BAD_VERSION, "type 0x01 (static-key envelope) is retired; peers speak sessions"
                )
            raise EnvelopeError(BAD_VERSION, f"unknown envelope type 0x{kind:02x}")
        if size < PLAINTEXT_OVERHEAD:
            raise EnvelopeError(
                TRUNCATED, f"{size} bytes; a plaintext envelope has at least {PLAINTEXT_OVERHEAD}"
            )
        sender = datagram[1:_ID_END]
        known = self._plaintext.get(sender)
        if known is None:
            raise EnvelopeError(
                UNKNOWN_PEER, f"from unknown sender {sender[:8].hex()}...", claimed=sender
            )
        if not known:
            raise EnvelopeError(
                PLAINTEXT_REFUSED, f"peer {sender[:8].hex()}... is not configured for plaintext"
            )
        return sender, datagram[_ID_END:]
