"""Measurements taken during a run, and their summary.

The simulator calls the ``on_*`` hooks of :class:`Recorder` as things happen;
:meth:`Recorder.summary` turns them into the numbers the report shows.
Everything here is a pure function of what was recorded, so identical runs
give identical summaries (floats are rounded only for presentation).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, NamedTuple

from mvds.wire import Message, Payload

RECORD_TYPES = ("ack", "offer", "request", "message")
ID_FIELD_BYTES = 34
"""An ACK/OFFER/REQUEST id on the wire: tag, length, 32 bytes."""


@dataclass
class MessageInfo:
    """Ground truth about one appended message."""

    index: int
    author: int
    group: str
    appended_at: float
    body: bytes
    parents: tuple[bytes, ...]


class Delivery(NamedTuple):
    """``node`` handed ``message`` to its application at ``time``, from ``via``."""

    time: float
    node: int
    message: bytes
    via: int


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def _round(value: float) -> float:
    return round(value, 6)


class Recorder:
    """Collects what happened in one run."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.messages: dict[bytes, MessageInfo] = {}
        self.author_of: dict[bytes, int] = {}
        self.deliveries: list[Delivery] = []
        self.expected: dict[bytes, frozenset[int]] = {}
        self.records = Counter({kind: 0 for kind in RECORD_TYPES})
        self.message_bytes = 0
        self._sent: tuple[set, set, set] = (set(), set(), set())
        """(sender, receiver, id) sent as OFFER, as REQUEST, as MESSAGE."""
        self.resent = Counter({kind: 0 for kind in ("offer", "request", "message")})
        self.datagrams_with = Counter({kind: 0 for kind in RECORD_TYPES})
        self.wire = Counter(
            {
                "payloads": 0,
                "datagrams": 0,
                "bytes": 0,
                "lost": 0,
                "duplicated": 0,
                "dropped_sender_offline": 0,
                "dropped_receiver_offline": 0,
                "dropped_acks": 0,
                "empty_payloads": 0,
            }
        )
        self.peak_sync_state = 0
        self.peak_sync_state_at = 0.0
        self.drained_at: float | None = None

    # -- hooks --------------------------------------------------------------
    def on_append(self, time: float, node: int, group: str, message: Message) -> None:
        mid = message.id
        self.messages[mid] = MessageInfo(
            len(self.messages), node, group, time, message.body, message.parents
        )
        self.author_of[mid] = node

    def on_delivery(self, time: float, node: int, message: bytes, via: int) -> None:
        self.deliveries.append(Delivery(time, node, message, via))

    def on_payload(self, payload: Payload, datagrams: int, size: int) -> None:
        """A payload of ``size`` encoded bytes left an online sender as
        ``datagrams`` datagrams.

        A payload's encoding is the concatenation of its records' fields, so
        the MESSAGE bytes are exactly what the fixed-size id fields leave.
        """
        records = self.records
        with_kind = self.datagrams_with
        wire = self.wire
        wire["payloads"] += 1
        wire["datagrams"] += datagrams
        wire["bytes"] += size
        ids = 0
        items = payload.acks
        if items:
            records["ack"] += len(items)
            with_kind["ack"] += 1
            ids += len(items)
        items = payload.offers
        if items:
            records["offer"] += len(items)
            with_kind["offer"] += 1
            ids += len(items)
        items = payload.requests
        if items:
            records["request"] += len(items)
            with_kind["request"] += 1
            ids += len(items)
        if payload.messages:
            records["message"] += len(payload.messages)
            with_kind["message"] += 1
        elif not ids:
            wire["empty_payloads"] += 1
        self.message_bytes += size - ID_FIELD_BYTES * ids

    def on_records_sent(self, src: int, dst: int, payload: Payload) -> None:
        """Count resends: an OFFER, REQUEST or MESSAGE for a message id that
        ``src`` already sent ``dst`` as the same record type.

        Counted here rather than taken from the engine's ``retransmissions``
        stat, which also counts the MESSAGE an interactive node sends in
        answer to a REQUEST (the REQUEST makes that record due at once).
        """
        offers, requests, messages = self._sent
        if payload.messages:
            self._count_resends("message", messages, src, dst, [m.id for m in payload.messages])
        if payload.offers:
            self._count_resends("offer", offers, src, dst, payload.offers)
        if payload.requests:
            self._count_resends("request", requests, src, dst, payload.requests)

    def _count_resends(
        self, kind: str, sent: set[tuple[int, int, bytes]], src: int, dst: int, ids: Iterable[bytes]
    ) -> None:
        resent = 0
        for mid in ids:
            key = (src, dst, mid)
            if key in sent:
                resent += 1
            else:
                sent.add(key)
        self.resent[kind] += resent

    def on_sync_state(self, time: float, total: int) -> None:
        if total > self.peak_sync_state:
            self.peak_sync_state = total
            self.peak_sync_state_at = time
        if total == 0:
            if self.drained_at is None:
                self.drained_at = time
        else:
            self.drained_at = None

    # -- results ------------------------------------------------------------
    def record_bytes(self) -> dict[str, int]:
        """Bytes on the wire per record type."""
        out = {kind: ID_FIELD_BYTES * self.records[kind] for kind in RECORD_TYPES}
        out["message"] = self.message_bytes
        return out

    def expected_total(self) -> int:
        return sum(len(receivers) for receivers in self.expected.values())

    def counted_deliveries(self) -> list[Delivery]:
        """Deliveries of appended messages to nodes expected to get them."""
        expected = self.expected
        return [d for d in self.deliveries if d.node in expected.get(d.message, ())]

    def latencies(self) -> list[float]:
        """Per (message, receiver) delivery latency in ticks, sorted."""
        messages = self.messages
        return sorted(d.time - messages[d.message].appended_at for d in self.counted_deliveries())

    def ratio_over_time(self, points: int = 200) -> list[list[float]]:
        """[time, delivered/expected] at each change, thinned to about ``points``."""
        total = self.expected_total()
        if not total:
            return []
        times = sorted(d.time for d in self.counted_deliveries())
        series = [[0.0, 0.0]]
        step = max(1, len(times) // points)
        for count, time in enumerate(times, start=1):
            if count % step == 0 or count == len(times):
                series.append([_round(time), _round(count / total)])
        return series

    def convergence_time(self) -> float | None:
        """When the last expected delivery happened, if all of them did."""
        counted = self.counted_deliveries()
        total = self.expected_total()
        if not total or len(counted) < total:
            return None
        return max(d.time for d in counted)

    def summary(self, end_time: float, engine_stats: Counter[str]) -> dict[str, object]:
        latencies = self.latencies()
        total = self.expected_total()
        delivered = len(latencies)
        latency: dict[str, object] = {"count": delivered}
        if latencies:
            latency.update(
                mean=_round(sum(latencies) / delivered),
                p50=_round(percentile(latencies, 50)),
                p90=_round(percentile(latencies, 90)),
                p99=_round(percentile(latencies, 99)),
                max=_round(latencies[-1]),
            )
        convergence = self.convergence_time()
        wire_bytes = self.wire["bytes"]
        return {
            "messages": len(self.messages),
            "expected_deliveries": total,
            "delivered": delivered,
            "delivery_ratio": _round(delivered / total) if total else None,
            "convergence_time": _round(convergence) if convergence is not None else None,
            "sync_state_drained_at": _round(self.drained_at) if self.drained_at is not None else None,
            "end_time": _round(end_time),
            "latency": latency,
            "wire": {
                **dict(sorted(self.wire.items())),
                "records": dict(self.records),
                "record_bytes": self.record_bytes(),
                "datagrams_with": dict(self.datagrams_with),
                "bytes_per_delivered": _round(wire_bytes / delivered) if delivered else None,
            },
            "retransmissions": sum(self.resent.values()),
            "retransmissions_by_type": dict(self.resent),
            "received": engine_stats["stored_in"],
            "peak_sync_state": self.peak_sync_state,
            "peak_sync_state_at": _round(self.peak_sync_state_at),
            "engine": dict(sorted(engine_stats.items())),
        }
