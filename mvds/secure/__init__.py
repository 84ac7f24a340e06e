"""Security by default: identities and the authenticated, encrypted envelope.

Sans-IO (no sockets, no trio): the daemon's UDP transport wraps every
outgoing encoded Payload with :meth:`EnvelopeCodec.seal` and passes every
incoming datagram through :meth:`EnvelopeCodec.open` before anything parses
it.  docs/PROTOCOL.md specifies the bytes exactly.
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
from mvds.secure.nonces import NonceCounter, NonceCounterError
from mvds.secure.replay import ReplayWindow

__all__ = [
    "DEFAULT_DATAGRAM_SIZE",
    "EnvelopeCodec",
    "EnvelopeError",
    "Identity",
    "IdentityError",
    "MAX_BODY_SIZE",
    "MAX_DATAGRAM_SIZE",
    "NonceCounter",
    "NonceCounterError",
    "PLAINTEXT_OVERHEAD",
    "REASONS",
    "ReplayWindow",
    "SEALED_OVERHEAD",
]
