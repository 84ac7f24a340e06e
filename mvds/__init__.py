"""mvds: Minimum Viable Data Synchronization (Vac 2/MVDS + 4/MVDS-META).

The stable public names: :func:`message_id`, :mod:`mvds.wire`
(``encode_payload`` / ``decode_payload``), the sans-IO :class:`Engine`, and
the stores in :mod:`mvds.store`.
"""

from mvds.engine import Delivery, Engine, EngineConfig, Mode
from mvds.ids import group_id_for_name, message_id, parse_group
from mvds.wire import Message, Payload, WireError

__version__ = "0.1.0"

__all__ = [
    "Delivery",
    "Engine",
    "EngineConfig",
    "Message",
    "Mode",
    "Payload",
    "WireError",
    "__version__",
    "group_id_for_name",
    "message_id",
    "parse_group",
]


def __getattr__(name: str):
    """The embedding API, imported on first use (it pulls in trio and the daemon)."""
    if name in ("Node", "open_node", "ReceivedMessage", "NodeError"):
        from mvds.daemon import node

        return getattr(node, name)
    raise AttributeError(f"module 'mvds' has no attribute {name!r}")
