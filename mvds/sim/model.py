"""What a simulation is made of: nodes, links, sharing and appends.

A scenario builds a :class:`Setup` from its parameters; the simulator
(:mod:`mvds.sim.network`) runs it.  Everything is plain data so a setup can
be validated up front and described in the report.

Units: times are in ticks (one tick is one engine epoch, see
:data:`EPOCH_LENGTH`); probabilities are fractions in ``[0, 1]``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mvds.engine import Delivery, EngineConfig, Mode, policy_by_name
from mvds.ids import group_id_for_name
from mvds.sim.schedules import ALWAYS_ON, Schedule

EPOCH_LENGTH = 1.0
"""Engine seconds per tick: one tick is exactly one epoch, so retransmission
waits (counted in epochs by the policies) read directly as ticks."""

RULES = ("auto", "engine", "spec")
"""How a node's retransmission policy is applied (:attr:`NodeSpec.rules`):

``engine``
    the engine's defaults on top of the policy: while the peer was heard
    within ``offline_after`` a record waits at most ``online_backoff``
    epochs; it never waits less than the peer's measured retransmission
    timeout (RFC 6298, at most ``max_rto``); and hearing from a peer makes
    its records backed off beyond ``reachability_backoff`` epochs due at once.
``spec``
    the policy's schedule as its authors specified it, nothing else: the
    three rules above are switched off through the engine's own settings
    (:data:`SPEC_RULES`), so a record sent for the n-th time at epoch e is
    due again at ``e + policy.delay(n)`` (one epoch later when it was sent
    mid-epoch: waits count from the next epoch boundary).
``auto``
    ``engine`` for ours (``exponential``), ``spec`` for the reference
    implementation's ``linear`` and the research sketch's ``quadratic``.
"""

UNBOUNDED_EPOCHS = 1 << 40
"""An epoch count no run reaches (about 35,000 years of 1-second epochs)."""

SPEC_RULES = {
    # No cap on the wait while the peer is online.
    "online_backoff": UNBOUNDED_EPOCHS,
    # No floor at the peer's round-trip timeout (a ceiling of 0 s).
    "max_rto": 0.0,
    # Hearing from a peer never pulls its records forward.
    "reachability_backoff": UNBOUNDED_EPOCHS,
}
"""EngineConfig settings that run a policy "as specified" (rules ``spec``)."""


def resolve_rules(policy: str, rules: str) -> str:
    """``engine`` or ``spec`` for a policy name and a :data:`RULES` value."""
    if rules not in RULES:
        raise ValueError(f"unknown policy rules {rules!r} (known: {', '.join(RULES)})")
    if rules == "auto":
        return "engine" if policy == "exponential" else "spec"
    return rules


def policy_label(policy: str, rules: str) -> str:
    """How reports name a policy: ``"linear (as specified)"``, ``"exponential (engine)"``."""
    resolved = resolve_rules(policy, rules)
    return f"{policy} ({'as specified' if resolved == 'spec' else 'engine'})"


def peer_id_for(name: str) -> bytes:
    """A node's 32-byte peer id, derived from its name."""
    return hashlib.sha256(b"MVDS_SIM_NODE" + name.encode("utf-8")).digest()


def group_id_for(name: str) -> bytes:
    """A group's id, mapped from its name exactly as the daemon does."""
    return group_id_for_name(name)


@dataclass(frozen=True)
class NodeSpec:
    """One simulated node: its engine's mode and policy, and its availability."""

    name: str
    mode: Mode = Mode.BATCH
    schedule: Schedule = ALWAYS_ON
    policy: str = "exponential"
    groups: tuple[str, ...] = ()
    """Groups the node is a member of from the start (sharing adds more)."""
    delivery: Delivery = Delivery.CAUSAL
    """Hand messages over after their parents (causal) or on arrival."""
    rules: str = "auto"
    """How the policy is applied: see :data:`RULES`."""
    reconcile: bool = False
    """Catch up by range-based set reconciliation (docs/PROTOCOL.md 16)."""
    park_after: float = 120.0
    """With ``reconcile``: ticks of silence before a peer is parked."""
    reconcile_interval: float = 300.0
    """With ``reconcile``: ticks between anti-entropy rounds."""

    def engine_config(self, seed: int) -> EngineConfig:
        """The engine settings this node runs with."""
        extra: dict = dict(SPEC_RULES) if resolve_rules(self.policy, self.rules) == "spec" else {}
        if self.reconcile:
            extra.update(
                reconcile=True,
                park_after=self.park_after,
                reconcile_interval=self.reconcile_interval,
            )
        return EngineConfig(
            mode=self.mode,
            delivery=self.delivery,
            epoch_length=EPOCH_LENGTH,
            policy=policy_by_name(self.policy),
            # The research scenarios share one-way (X syncs to Y only).
            accept_unshared=True,
            seed=seed,
            **extra,
        )


@dataclass(frozen=True)
class LinkSpec:
    """A bidirectional link; each direction loses, duplicates and delays alike.

    Every datagram takes ``latency`` plus a uniform extra delay in
    ``[0, jitter)`` ticks, so jitter larger than the gap between two sends
    reorders them.  ``drop_acks`` drops the first that many datagrams on the
    link that carry an ACK (a targeted loss for the "lost ACK" question).
    """

    a: str
    b: str
    latency: float = 0.1
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    drop_acks: int = 0
    down: tuple[tuple[float, float], ...] = ()
    """Intervals ``[start, stop)`` (ticks) the link is cut: nothing passes."""
    directed: bool = False
    """Only the direction a -> b (the testbed's per-direction links); the
    other direction, if any, is its own directed spec."""

    def __post_init__(self) -> None:
        if self.latency <= 0:
            raise ValueError(f"link {self.a}-{self.b}: latency must be positive")
        if self.jitter < 0:
            raise ValueError(f"link {self.a}-{self.b}: jitter must not be negative")
        for label, value in (("loss", self.loss), ("duplicate", self.duplicate)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"link {self.a}-{self.b}: {label} must be between 0 and 1")


@dataclass(frozen=True)
class ShareSpec:
    """At ``time``, ``node`` starts syncing ``group`` *to* ``peer`` (one-way)."""

    node: str
    group: str
    peer: str
    time: float = 0.0


@dataclass(frozen=True)
class AppendSpec:
    """At ``time``, ``node`` appends ``body`` to ``group``."""

    time: float
    node: str
    group: str
    body: bytes


@dataclass
class Setup:
    """A complete simulation: run it with :class:`mvds.sim.network.Simulation`."""

    nodes: list[NodeSpec]
    links: list[LinkSpec]
    shares: list[ShareSpec]
    appends: list[AppendSpec]
    duration: float
    """Ticks to simulate at most (the run stops earlier once settled)."""
    mtu: int = 1200
    """Largest datagram; bigger payloads are split like the daemon splits them."""
    stop_when_settled: bool = True
    """End the run once every expected delivery happened and all sync state
    drained (nothing is left to change but availability)."""
    trace: bool = False
    """Record every datagram (for sequence diagrams of small scenarios)."""
    detail_limit: int = 200
    """Report per-message detail only for runs with at most this many messages."""
    exposure: bool = True
    """Track what each node could observe (costs memory on huge runs)."""
    decode: bool = True
    """Decode every datagram at the receiver (the full wire path).  False
    still encodes every payload (byte counts stay exact) but hands the
    receiver the sender's payload object when it fits one datagram: about
    a third less CPU time, for very large runs."""

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistency."""
        if self.duration <= 0:
            raise ValueError("duration must be positive")
        if self.mtu < 64:
            raise ValueError("mtu must be at least 64 bytes")
        names = [n.name for n in self.nodes]
        if not names:
            raise ValueError("a simulation needs at least one node")
        if len(set(names)) != len(names):
            raise ValueError("node names must be unique")
        for node in self.nodes:
            policy_by_name(node.policy)
            resolve_rules(node.policy, node.rules)
        known = set(names)
        pairs = set()
        directed: set[tuple[str, str]] = set()
        for link in self.links:
            for end in (link.a, link.b):
                if end not in known:
                    raise ValueError(f"link {link.a}-{link.b} names unknown node {end!r}")
            if link.a == link.b:
                raise ValueError(f"link {link.a}-{link.b} connects a node to itself")
            pair = tuple(sorted((link.a, link.b)))
            directions = {(link.a, link.b)} if link.directed else {(link.a, link.b), (link.b, link.a)}
            if pair in pairs and directions & directed:
                raise ValueError(f"link {link.a}-{link.b} is listed twice")
            pairs.add(pair)
            directed |= directions
        for share in self.shares:
            for end in (share.node, share.peer):
                if end not in known:
                    raise ValueError(f"sharing {share.node}->{share.peer} names unknown node {end!r}")
            if tuple(sorted((share.node, share.peer))) not in pairs:
                raise ValueError(
                    f"{share.node} shares with {share.peer} but no link connects them"
                )
        for append in self.appends:
            if append.node not in known:
                raise ValueError(f"append names unknown node {append.node!r}")
            if append.time < 0:
                raise ValueError("append times must not be negative")
