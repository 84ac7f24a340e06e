"""What ``mvds status`` shows, built in one place for a running node and a
stopped one.

A stopped node's status comes from its config and its store alone; a
running node adds what only it knows (reachability, round-trip times,
traffic and drop counters) through the ``live`` arguments.  Both go
through :func:`build_status`, so the two cannot drift apart; the running
node's numbers are gathered by :func:`live_peer` and :func:`live_top`.
No I/O: the caller reads the store and hands the parts in.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Container, Mapping

from mvds.daemon.config import NodeConfig, format_address
from mvds.daemon.diagnose import diagnose
from mvds.engine import RecordType

if TYPE_CHECKING:  # the CLI builds a stopped node's status without loading these
    from mvds.daemon.acks import AckBook
    from mvds.daemon.gate import DatagramGate
    from mvds.daemon.peers import PeerState
    from mvds.daemon.transport import UdpTransport
    from mvds.engine import Engine
    from mvds.secure.session import SessionManager



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


def rounded(value: float | None) -> float | None:
    """Seconds to the millisecond for the status JSON (None stays None)."""
    return None if value is None else round(value, 3)


def address_text(addr: Any) -> str | None:
    """A socket address as ``HOST:PORT`` (None stays None)."""
    return None if addr is None else format_address(*addr[:2])


def session_json(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A session peer's ``session`` block from
    :meth:`mvds.secure.session.SessionManager.status`."""
    return {
        "established": raw["established"],
        "age_s": rounded(raw["session_age_s"]),
        "last_handshake_s": rounded(raw["last_handshake_s"]),
        "rekeys": raw["rekeys"],
        "handshake_pending": raw["handshake_pending"],
        "keepalive": raw["keepalive"],
        "path": {
            "address": address_text(raw["path"]["address"]),
            "state": raw["path"]["state"],
        },
        "candidates": [
            {"address": address_text(c["address"]), "state": c["state"],
             "allowance_bytes": c["allowance_bytes"]}
            for c in raw["candidates"]
        ],
    }


def live_peer(
    state: PeerState,
    *,
    engine: Engine,
    sessions: SessionManager,
    offline_after: float,
    acks: AckBook,
    group_mismatches: list[dict[str, Any]],
    now: float,
    clock: float,
) -> dict[str, Any]:
    """What a running node adds for one peer (``now`` engine time, ``clock``
    monotonic): a plaintext peer's reachability from the engine, a session
    peer's from its session, traffic, retransmissions, ACKs."""
    peer_id = state.peer_id
    rtt = engine.rtt(peer_id)
    engine_counts = engine.peer_stats.get(peer_id, Counter())
    counters = state.counters
    session: dict[str, Any] | None = None
    skew = None
    if state.config.plaintext:
        heard = engine.last_heard(peer_id)
        reachable = heard is not None and now - heard < offline_after
        heard_s = None if heard is None else now - heard
    else:
        raw = sessions.status(peer_id, clock)
        reachable, heard_s = raw["reachable"], raw["last_heard_s"]
        session = session_json(raw)
        skew = raw["clock_skew_s"]
    return {
        "resolved": format_address(*state.address[:2]) if state.address else None,
        "reachable": reachable,
        "last_heard_s": rounded(heard_s),
        "session": session,
        "rtt_ms": None if rtt is None else round(rtt * 1000, 2),
        "datagrams_in": counters["datagrams_in"],
        "datagrams_out": counters["datagrams_out"],
        "bytes_in": counters["bytes_in"],
        "bytes_out": counters["bytes_out"],
        "retransmissions": engine_counts["retransmissions"],
        "payloads_in": engine_counts["payloads_in"],
        "payloads_out": engine_counts["payloads_out"],
        "requests_capped": engine_counts["requests_capped"],
        "rate_limited": counters["rate_limited"],
        "unresolved": state.resolve_error,
        "unresolved_for_s": None if state.resolve_failed_since is None
        else round(now - state.resolve_failed_since, 1),
        "group_mismatches": group_mismatches,
        "acknowledged": acks.acked[peer_id],
        "last_ack_s": acks.last_ack_s(peer_id, now),
        "pending_oldest_s": oldest_pending_s(engine.store, peer_id, now),
        "clock_skew_s": None if skew is None else round(skew, 1),
    }


def oldest_pending_s(store: Any, peer_id: bytes, now: float) -> float | None:
    """Age (s, by its timestamp) of the oldest message sent to ``peer_id``
    and not acknowledged yet, None if nothing is in flight.

    Reads only the in-flight records (memory in both stores, at most the
    window per group) and their messages (one batch read), never the
    never-sent backlog: a status call does not scan the store.  A message
    stamped in the future (another node's clock) counts as 0 s old."""
    ids = store.inflight_messages(peer_id)
    if not ids:
        return None
    stamps = [message.timestamp for message in store.get_messages(ids).values()]
    return round(max(0.0, now - min(stamps)), 1) if stamps else None


def live_top(
    config: NodeConfig,
    *,
    transport: UdpTransport | None,
    engine: Engine,
    sessions: SessionManager,
    gate: DatagramGate,
    known_peers: Container[bytes],
    counters: Mapping[str, int],
    uptime_s: float,
    now: float,
) -> dict[str, Any]:
    """What a running node adds at the top level: its socket, traffic,
    drops by reason, engine and node counters, untrusted senders."""
    from mvds.daemon.transport import SMALL_BUFFER  # trio: not for a stopped node's status

    drops = Counter(gate.drops.counts)
    if transport is not None:
        drops.update(transport.drops)
    traffic = transport.stats if transport is not None else Counter()
    return {
        "listen": format_address(*transport.address) if transport else config.listen,
        "online": transport is not None and transport.online,
        "delivery": config.delivery,
        "epoch_ms": config.epoch_ms,
        "uptime_s": round(uptime_s, 3),
        "keepalive_s": config.keepalive_s,
        "sessions": dict(sorted(sessions.counters.items())),
        "datagrams_in": traffic["datagrams_in"],
        "datagrams_out": traffic["datagrams_out"],
        "bytes_in": traffic["bytes_in"],
        "bytes_out": traffic["bytes_out"],
        "drops": dict(sorted(drops.items())),
        "engine": dict(sorted(engine.stats.items())),
        "node": dict(sorted(counters.items())),
        "receive_buffer": transport.receive_buffer if transport else None,
        "receive_buffer_small": bool(transport and transport.receive_buffer < SMALL_BUFFER),
        "unknown_senders": [
            sender for sender in gate.unknown.to_json(now)
            if bytes.fromhex(sender["claimed_id"]) not in known_peers
        ],
    }
