"""mvds: Minimum Viable Data Synchronization (Vac 2/MVDS + 4/MVDS-META).

The stable public names: :func:`message_id`, :mod:`mvds.wire`
(``encode_payload`` / ``decode_payload``), the sans-IO :class:`Engine`, the
stores in :mod:`mvds.store`, and the trio embedding API :func:`open_node`
(:func:`init_node` creates a node directory).

Names are imported on first use (PEP 562), so ``import mvds`` and the
command line start fast; ``from mvds import Engine`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Delivery": "mvds.engine",
    "Engine": "mvds.engine",
    "EngineConfig": "mvds.engine",
    "Mode": "mvds.engine",
    "group_id_for_name": "mvds.ids",
    "message_id": "mvds.ids",
    "parse_group": "mvds.ids",
    "Message": "mvds.wire",
    "Payload": "mvds.wire",
    "WireError": "mvds.wire",
    "Node": "mvds.daemon.node",
    "NodeError": "mvds.daemon.node",
    "DeliveredMessage": "mvds.daemon.delivered",
    "ReceivedMessage": "mvds.daemon.delivered",
    "open_node": "mvds.daemon.node",
    "init_node": "mvds.daemon.setup",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mvds' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
