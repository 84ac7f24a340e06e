"""Why nothing flows: the evidence a running node collects, and the findings
`mvds doctor` and `mvds status` show (sans-IO).

Three kinds of evidence that no counter in the engine holds:

* :class:`UnknownSenders`: datagrams dropped because their envelope names a
  sender this node does not trust.  The claimed id is kept (bounded: a
  forger can claim any id) with where it came from, so a one-sided
  ``peer add`` shows up as "node 1a2b... at 10.0.0.5:7000 trusts you, you
  do not trust it".
* :class:`GroupMismatches`: messages a trusted peer sent in a group we do
  not share with it (a group name typo: ``Chat`` on one side, ``chat`` on
  the other), counted per (peer, group).
* The peer registry's resolve errors and the transport's receive buffer.

:func:`diagnose` turns a status object (``mvds status --json``) into a list
of findings, so a stopped node, a running one and `mvds doctor` all read
the same rules.  Finding texts say what is wrong, not which command fixes
it: the CLI adds its own hints (library errors never name CLI commands).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from mvds.ids import parse_group

MAX_UNKNOWN_SENDERS = 32
"""Distinct claimed sender ids remembered (the most recent ones)."""

CLOCK_SKEW_LIMIT_S = 60.0
"""A peer's clock this far (s) from ours is a finding.  Measured from the
timestamp in the peer's last handshake initiation to us (so only for peers
that initiated since we started), accurate to the network delay.  Sync does
not need agreeing clocks, but message timestamps (shown by tail, used by
reconciliation and the status's "oldest") are each node's own wall clock:
a minute off means a broken clock, not network delay."""

@dataclass
class UnknownSender:
    """One claimed sender id that is not a trusted peer."""

    datagrams: int
    source: str
    last_seen: float  # time.time()


class UnknownSenders:
    """The most recent :data:`MAX_UNKNOWN_SENDERS` untrusted claimed ids."""

    def __init__(self, limit: int = MAX_UNKNOWN_SENDERS) -> None:
        self.limit = limit
        self.senders: OrderedDict[bytes, UnknownSender] = OrderedDict()

    def seen(self, claimed: bytes, source: str, now: float) -> None:
        entry = self.senders.get(claimed)
        if entry is None:
            entry = self.senders[claimed] = UnknownSender(0, source, now)
            if len(self.senders) > self.limit:
                self.senders.popitem(last=False)
        else:
            self.senders.move_to_end(claimed)
        entry.datagrams += 1
        entry.source = source
        entry.last_seen = now

    def forget(self, peer_id: bytes) -> None:
        """``peer_id`` became a trusted peer."""
        self.senders.pop(peer_id, None)

    def to_json(self, now: float) -> list[dict[str, Any]]:
        return [
            {"claimed_id": claimed.hex(), "source": e.source, "datagrams": e.datagrams,
             "last_seen_s": round(now - e.last_seen, 1)}
            for claimed, e in reversed(self.senders.items())
        ]


class GroupMismatches:
    """Messages of groups not shared with the peer that sent them."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[bytes, bytes]] = Counter()

    def count(self, peer_id: bytes, group_id: bytes, n: int = 1) -> int:
        """Count ``n``; returns the new total for (peer, group)."""
        key = (peer_id, group_id)
        self.counts[key] += n
        return self.counts[key]

    def forget(self, peer_id: bytes, group_id: bytes) -> None:
        """The group is shared with the peer now."""
        self.counts.pop((peer_id, group_id), None)

    def for_peer(self, peer_id: bytes, names: dict[bytes, str]) -> list[dict[str, Any]]:
        return [
            {"group_id": group_id.hex(), "group": names.get(group_id), "messages": n}
            for (peer, group_id), n in sorted(self.counts.items())
            if peer == peer_id
        ]


class GroupCheck:
    """Counts the messages of groups not shared with their sender, per
    (peer, group): the engine refuses them (and logs it, rate-limited); a
    group name typo on one side looks like this, and mvds doctor names it.
    Held by the node; fed the config of each step."""

    def __init__(self) -> None:
        self.mismatches = GroupMismatches()
        self._accepted: tuple[Any, frozenset[tuple[bytes, bytes]]] | None = None

    def accepted(self, config: Any) -> frozenset[tuple[bytes, bytes]]:
        """(group id, peer id) pairs whose messages the engine takes."""
        from mvds.daemon.admin import sharing  # admin imports config; keep this module light

        cached = self._accepted
        if cached is None or cached[0] is not config:
            cached = self._accepted = (config, frozenset(sharing(config)))
        return cached[1]

    def check(
        self, config: Any, peer_id: bytes, messages: Iterable[Any], *,
        loose: bool, known: Mapping[bytes, str],
    ) -> None:
        """Count each message of ``peer_id`` whose group is not shared with
        it (with ``loose``, the engine's accept_unshared, any group we know
        is fine)."""
        accepted = self.accepted(config)
        for message in messages:
            group_id = message.group_id
            if (group_id, peer_id) in accepted or (loose and group_id in known):
                continue
            self.mismatches.count(peer_id, group_id)

    def config_changed(self, config: Any) -> None:
        """Forget the counts of groups the new config shares."""
        for group_id, peer_id in self.accepted(config):
            self.mismatches.forget(peer_id, group_id)

    def for_peer(self, peer_id: bytes, names: Mapping[bytes, str]) -> list[dict[str, Any]]:
        """A peer's mismatches for ``mvds status``, with a similar name of
        ours for a group we do not know."""
        out = self.mismatches.for_peer(peer_id, dict(names))
        for entry in out:
            if entry["group"] is None:
                entry["similar"] = similar_name(bytes.fromhex(entry["group_id"]), names.values())
        return out


def similar_name(group_id: bytes, names: Iterable[str]) -> str | None:
    """A spelling of one of ``names`` whose id is ``group_id``: the other
    side's typo (``Chat`` for ``chat``, a stray space) found by trying the
    usual variants, since an id cannot be turned back into its name."""
    for name in names:
        variants = {name.lower(), name.upper(), name.title(), name.capitalize(),
                    name.swapcase(), name.strip(), f" {name}", f"{name} ", name + "s",
                    name[:-1] if len(name) > 1 else name}
        for variant in variants:
            if variant and variant != name and parse_group(variant) == group_id:
                return variant
    return None


def _ago(seconds: float) -> str:
    return f"{human_duration(seconds)} ago"


def human_duration(seconds: float) -> str:
    """``42 s``, ``3 m``, ``2 h 5 m``, ``3 d``: for people, not for parsing."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} m"
    hours = int(minutes // 60)
    if hours < 48:
        rest = int(minutes - hours * 60)
        return f"{hours} h {rest} m" if rest else f"{hours} h"
    return f"{hours // 24} d"


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 message``, ``2 messages``."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def human_bytes(n: float) -> str:
    """``512 B``, ``1.5 KiB``, ``3.2 MiB``, ``1.0 GiB``."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def diagnose(status: dict[str, Any], now: float | None = None) -> list[dict[str, Any]]:
    """Findings from a status object: ``{"peer", "problem", "detail", ...}``,
    most fundamental first.  Empty when nothing stands in the way."""
    out: list[dict[str, Any]] = []
    if not status.get("running"):
        out.append({"peer": None, "problem": "not_running",
                    "detail": "the daemon is not running: nothing is sent or received"})
        return out
    if status.get("receive_buffer_small"):
        out.append({"peer": None, "problem": "small_receive_buffer",
                    "detail": f"the UDP receive buffer is {human_bytes(status['receive_buffer'])}: "
                              "bursts of datagrams are dropped by the kernel and resent"})
    uptime = status.get("uptime_s", 0.0)
    for peer in status.get("peers", []):
        name = peer["name"]
        waiting = sum(peer.get("pending", {}).values())
        if peer.get("unresolved"):
            out.append({
                "peer": name, "problem": "unresolved",
                "detail": f"{peer['address']} does not resolve ({peer['unresolved']}), for "
                          f"{human_duration(peer.get('unresolved_for_s') or 0)}: nothing can be sent "
                          f"to {name}; {plural(waiting, 'record')} waiting",
            })
        elif not peer.get("reachable") and (peer.get("last_heard_s") is None or waiting):
            # Heard before and nothing waiting: idle, not a problem (peers
            # stay silent when there is nothing to sync).
            heard = peer.get("last_heard_s")
            when = (f"never heard from it since this node started {_ago(uptime)}" if heard is None
                    else f"last heard {_ago(heard)}")
            sent = peer.get("datagrams_out", 0)
            detail = f"{name} ({peer['address']}) is not reachable: {when}"
            if sent:
                detail += (f"; {plural(sent, 'datagram')} sent to it without an answer: it is "
                           f"stopped, cannot be reached at that address, or does not trust "
                           f"this node")
            if waiting:
                detail += f"; {plural(waiting, 'record')} waiting"
            out.append({"peer": name, "problem": "unreachable", "detail": detail,
                        "last_heard_s": heard})
        skew = peer.get("clock_skew_s")
        if skew is not None and abs(skew) >= CLOCK_SKEW_LIMIT_S:
            side = "ahead of" if skew > 0 else "behind"
            out.append({
                "peer": name, "problem": "clock_skew", "clock_skew_s": skew,
                "detail": f"clock skew ~{abs(skew):.0f} s: {name}'s clock is {side} this node's "
                          "(from its last handshake); message times from the two nodes "
                          "disagree by that much",
            })
        for mismatch in peer.get("group_mismatches", []):
            label = mismatch["group"] or mismatch["group_id"][:16] + "..."
            detail = (f"{name} sent {plural(mismatch['messages'], 'message')} of group {label} "
                      f"that this node does not share with {name}: they were not stored")
            guess = mismatch.get("similar")
            if guess:
                detail += f" (its name is probably {guess!r}: a different group from yours)"
            out.append({"peer": name, "problem": "group_mismatch", "detail": detail,
                        "group_id": mismatch["group_id"], "group": mismatch["group"]})
    for sender in status.get("unknown_senders", []):
        out.append({
            "peer": None, "problem": "unknown_sender",
            "detail": f"{plural(sender['datagrams'], 'datagram')} from {sender['source']} claiming "
                      f"to be node {sender['claimed_id']} were dropped (last {_ago(sender['last_seen_s'])}):"
                      " that node trusts this one, but this node does not trust it",
            "claimed_id": sender["claimed_id"], "source": sender["source"],
        })
    return out

