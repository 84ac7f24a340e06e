"""What ``mvds status`` shows, built in one place for a running node and a
stopped one.

A stopped node's status comes from its config and its store alone; a
running node adds what only it knows (reachability, round-trip times,
traffic and drop counters) through the ``live`` arguments.  Both go
through :func:`build_status`, so the two cannot drift apart.  No I/O: the
caller reads the store and hands the numbers in.
"""

from __future__ import annotations

from typing import Any, Mapping

from mvds.daemon.config import NodeConfig
from mvds.daemon.diagnose import diagnose
from mvds.engine import RecordType


def build_status(
    config: NodeConfig,
    peer_id_hex: str,
    *,
    pending: Mapping[tuple[bytes, RecordType], int],
    messages_stored: int,
    last_seq: int,
    peers_live: Mapping[bytes, dict[str, Any]] | None = None,
    live: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The status object (``mvds status --json``).

    ``pending`` is the store's ``record_stats()``; ``peers_live`` maps a
    peer id to what a running node adds for it; ``live`` is what a running
    node adds at the top level (None: the node is stopped).  ``findings``
    is :func:`mvds.daemon.diagnose.diagnose` of the rest: why nothing flows.

    ``last_seq`` is the head of the node's one delivery sequence: received
    messages and (since 0.2) the node's own appends each take a seq.
    """
    peers = []
    for entry in sorted(config.peers, key=lambda p: p.name):
        peer_id = entry.peer_id
        peer: dict[str, Any] = {
            "name": entry.name,
            "id": peer_id.hex(),
            "address": entry.address,
            "plaintext": entry.plaintext,
            "groups": list(entry.groups),
            "reachable": False,
            "last_heard_s": None,
            "rtt_ms": None,
            "pending": {kind.name.lower(): pending.get((peer_id, kind), 0) for kind in RecordType},
        }
        if peers_live is not None:
            peer.update(peers_live.get(peer_id, {}))
        peers.append(peer)
    status: dict[str, Any] = {
        "peer_id": peer_id_hex,
        "listen": config.listen,
        "running": live is not None,
        "mode": config.mode,
        "messages_stored": messages_stored,
        "last_seq": last_seq,
        "groups": sorted(config.all_groups()),
        "peers": peers,
    }
    if live is not None:
        status.update(live)
    status["findings"] = diagnose(status)
    return status
