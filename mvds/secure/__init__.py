"""Security by default: identities, sessions and the plaintext interop envelope.

Sans-IO (no sockets, no trio): the daemon's datagram gate hands session
datagrams (types 0x03-0x06) to :class:`~mvds.secure.session.SessionManager`
(Noise IK handshakes, transport sessions with in-memory nonces and replay
windows, validated paths, keepalives) and plaintext ones (0x02, interop
testing only) to :class:`EnvelopeCodec`.  docs/PROTOCOL.md specifies the
bytes exactly.
"""

from mvds.secure.envelope import REASONS, EnvelopeCodec, EnvelopeError
from mvds.secure.identity import Identity, IdentityError
from mvds.limits import (
    DEFAULT_DATAGRAM_SIZE,
    MAX_BODY_SIZE,
    MAX_DATAGRAM_SIZE,
    PLAINTEXT_OVERHEAD,
    SEALED_OVERHEAD,
)
from mvds.secure.replay import ReplayWindow

__all__ = [
    "DEFAULT_DATAGRAM_SIZE",
    "EnvelopeCodec",
    "EnvelopeError",
    "Identity",
    "IdentityError",
    "MAX_BODY_SIZE",
    "MAX_DATAGRAM_SIZE",
    "PLAINTEXT_OVERHEAD",
    "REASONS",
    "ReplayWindow",
    "SEALED_OVERHEAD",
]
