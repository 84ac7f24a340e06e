"""The named scenarios: each one answers a research question from the notes.

A scenario turns its parameters (see :mod:`mvds.sim.params`) and a seeded
generator into a :class:`mvds.sim.model.Setup`; sweeps run one base setup
over a grid of loss / availability / mode / policy values.  ``mvds sim
--list`` prints them with their questions; ``mvds sim NAME --list`` (or the
report) lists a scenario's parameters and defaults.
"""

from __future__ import annotations

import dataclasses

import random
from dataclasses import dataclass
from typing import Any, Callable

from mvds.engine import Delivery, Mode
from mvds.engine.policy import POLICIES
from mvds.sim.model import RULES, AppendSpec, LinkSpec, NodeSpec, Setup, ShareSpec, peer_id_for
from mvds.sim.params import Param
from mvds.sim.schedules import ALWAYS_ON, Periodic, RandomAvailability, Schedule

POLICY_NAMES = tuple(sorted(POLICIES))
MODE_NAMES = ("batch", "interactive")
SWEEP_MODES = ("batch", "interactive", "mixed")


@dataclass(frozen=True)
class Scenario:
    """A named, parameterised simulation (or sweep of simulations)."""

    name: str
    question: str
    params: list[Param]
    build: Callable[[dict[str, Any], random.Random], Setup] | None = None
    """Single run: parameters and generator -> setup."""
    axes: tuple[str, ...] = ()
    """Sweep: the list parameters whose cartesian product is run."""


# -- shared parameter groups ------------------------------------------------


def _link_params(latency: float = 0.1, loss: float = 0.0) -> list[Param]:
    return [
        Param("latency", latency, "one-way link latency (ticks)", minimum=1e-6),
        Param("jitter", 0.0, "extra uniform delay up to this (ticks); reorders", minimum=0.0),
        Param("loss", loss, "probability a datagram is lost", minimum=0.0, maximum=1.0),
        Param("duplicate", 0.0, "probability a datagram is duplicated", minimum=0.0, maximum=1.0),
    ]


def _rules_param() -> Param:
    return Param(
        "rules", "auto",
        "how the policy is applied: engine (the engine's online cap, RTO floor and "
        "reachability rule on top), spec (the policy's schedule alone), auto (engine "
        "for exponential, spec for linear and quadratic)",
        kind="str", choices=RULES,
    )


def _run_params(duration: float, policy: str = "exponential") -> list[Param]:
    return [
        Param("duration", duration, "ticks to simulate at most", minimum=1.0),
        Param("policy", policy, "retransmission policy", kind="str", choices=POLICY_NAMES),
        _rules_param(),
        Param("mtu", 1200, "largest datagram (bytes)", kind="int", minimum=64),
    ]


def _node(name: str, mode: Mode, schedule: Schedule, p: dict[str, Any], **extra: Any) -> NodeSpec:
    return NodeSpec(name, mode, schedule, p["policy"], rules=p["rules"], **extra)


def _online_param(node: str, default: float) -> Param:
    return Param(
        f"{node.lower()}_availability", default, f"{node}'s chance to be online in a tick",
        minimum=0.0, maximum=1.0,
    )


def _chat_params(messages: int, who: str, chat: float) -> list[Param]:
    return [
        Param("messages", messages, f"messages {who} append", kind="int", minimum=1),
        Param("chat", chat, "ticks over which the appends are spread", minimum=1.0),
        Param("mode", "batch", "mode of every node", kind="str", choices=MODE_NAMES),
    ]


def _link(a: str, b: str, p: dict[str, Any], **overrides: Any) -> LinkSpec:
    values = dict(latency=p["latency"], jitter=p["jitter"], loss=p["loss"], duplicate=p["duplicate"])
    values.update(overrides)
    return LinkSpec(a, b, **values)


def _mode(name: str) -> Mode:
    return Mode.INTERACTIVE if name == "interactive" else Mode.BATCH


def _availability(p: float) -> Schedule:
    return ALWAYS_ON if p >= 1.0 else RandomAvailability(p)


def _spread(rng: random.Random, count: int, start: float, stop: float) -> list[float]:
    """``count`` append times, uniform in ``[start, stop)``, on 0.01 ticks."""
    return sorted(round(rng.uniform(start, stop), 2) for _ in range(count))


# -- seed: the original research sketch ------------------------------------


def build_seed(p: dict[str, Any], rng: random.Random) -> Setup:
    on, off = p["mobile_on"], p["mobile_off"]
    nodes = [
        _node("A", Mode.BATCH, Periodic(on, off, 0), p),
        _node("B", Mode.BATCH, Periodic(on, off, 1), p),
        _node("C", _mode(p["c_mode"]), ALWAYS_ON, p),
        _node("D", _mode(p["d_mode"]), ALWAYS_ON, p),
    ]
    links = [_link(a, b, p) for a, b in ("AB", "AC", "BD", "CD")]
    shares = [ShareSpec(a, "seed", b) for a, b in ("AB", "BA", "BD", "CA", "CD", "DB", "DC")]
    appends = [
        AppendSpec(1.0, "A", "seed", b"hello world"),
        AppendSpec(2.0, "B", "seed", b"hello!"),
    ]
    return Setup(nodes, links, shares, appends, p["duration"], mtu=p["mtu"], trace=True)


SEED = Scenario(
    "seed",
    "The research sketch: bursty mobiles A and B (batch, 2 ticks on / 2 off, one "
    "tick out of phase), always-on desktops C (interactive) and D (batch); who "
    "holds what when, and through which path?",
    [
        Param("mobile_on", 2, "ticks A and B are online per period", kind="int", minimum=1),
        Param("mobile_off", 2, "ticks A and B are offline per period", kind="int", minimum=0),
        Param("c_mode", "interactive", "mode of desktop C", kind="str", choices=MODE_NAMES),
        Param("d_mode", "batch", "mode of desktop D", kind="str", choices=MODE_NAMES),
        *_link_params(),
        *_run_params(60.0),
    ],
    build_seed,
)


# -- reference: the Go implementation's simulation ----------------------------


def _block(node: int, group_size: int, blocks: int) -> int:
    """The group of node ``node``: leftover nodes join the last group."""
    return min(node // group_size, blocks - 1)


def build_network(p: dict[str, Any], rng: random.Random) -> Setup:
    """The reference simulation's network, generalised.

    ``nodes`` nodes, split into groups of ``group_size`` (0: one group of
    all, as in Go; leftover nodes join the last group); each node shares its group one-way with ``sharing``
    random other members; the first ``communicating`` nodes each append a
    message every ``interval`` ticks for ``chat`` ticks (or until
    ``messages`` appends in total); the first ``interactive`` nodes are in
    interactive mode, the rest in batch.  Every sharing pair gets a link.
    """
    count = p["nodes"]
    group_size = p["group_size"] or count
    sharing = p["sharing"]
    if sharing > group_size - 1:
        raise ValueError(
            f"sharing={sharing} needs groups of at least {sharing + 1} nodes "
            f"(group_size={group_size}, nodes={count})"
        )
    if p["communicating"] > count or p["interactive"] > count:
        raise ValueError("communicating and interactive cannot exceed nodes")
    width = len(str(count - 1))
    names = [f"n{i:0{width}d}" for i in range(count)]
    schedule = _availability(p["availability"])
    nodes = [
        _node(
            name,
            Mode.INTERACTIVE if i < p["interactive"] else Mode.BATCH,
            schedule,
            p,
            delivery=Delivery(p.get("delivery", "causal")),
        )
        for i, name in enumerate(names)
    ]
    shares: list[ShareSpec] = []
    pairs: set[tuple[int, int]] = set()
    blocks = count // group_size
    for i in range(count):
        block = _block(i, group_size, blocks)
        stop = count if block == blocks - 1 else (block + 1) * group_size
        members = [j for j in range(block * group_size, stop) if j != i]
        for j in sorted(rng.sample(members, sharing)):
            shares.append(ShareSpec(names[i], f"group{block}", names[j]))
            pairs.add((min(i, j), max(i, j)))
    links = [_link(names[a], names[b], p) for a, b in sorted(pairs)]
    appends: list[AppendSpec] = []
    limit = p["messages"] or None
    interval = p["interval"]
    pad = p["body_size"]
    round_ = 1
    while round_ * interval <= p["chat"] and (limit is None or len(appends) < limit):
        for i in range(p["communicating"]):
            if limit is not None and len(appends) >= limit:
                break
            body = f"{peer_id_for(names[i]).hex()[:16]} testing {round_}".encode()
            if pad > len(body):
                body = body.ljust(pad, b".")
            group = f"group{_block(i, group_size, blocks)}"
            appends.append(AppendSpec(round_ * interval, names[i], group, body))
        round_ += 1
    small = count <= 6 and len(appends) <= 12
    return Setup(
        nodes,
        links,
        shares,
        appends,
        p["chat"] + p["drain"],
        mtu=p["mtu"],
        trace=small,
        exposure=p.get("exposure", True),
        decode=p.get("decode", True),
    )


def _network_params(nodes: int, communicating: int, sharing: int, interactive: int) -> list[Param]:
    return [
        Param("nodes", nodes, "number of nodes", kind="int", minimum=2),
        Param("communicating", communicating, "nodes that append messages", kind="int", minimum=0),
        Param("sharing", sharing, "peers each node shares with (one-way)", kind="int", minimum=1),
        Param("interval", 5.0, "ticks between a node's messages", minimum=0.01),
        Param("interactive", interactive, "nodes in interactive mode (the rest batch)", kind="int", minimum=0),
        Param("group_size", 0, "split nodes into groups of this size (0: one group)", kind="int", minimum=0),
        Param("chat", 60.0, "ticks during which nodes append", minimum=0.0),
        Param("drain", 240.0, "ticks after chatting for sync to finish", minimum=0.0),
        Param("messages", 0, "stop after this many appends in total (0: no limit)", kind="int", minimum=0),
        Param("body_size", 0, "pad bodies to this many bytes", kind="int", minimum=0),
        Param("availability", 1.0, "probability a node is online in a tick", minimum=0.0, maximum=1.0),
    ]


def build_reference(p: dict[str, Any], rng: random.Random) -> Setup:
    # Go drops each send with probability offline% (its "offline" is a
    # per-send coin, not an availability schedule): that is link loss.
    values = dict(p, loss=p["offline"] / 100.0, jitter=0.0, duplicate=0.0, availability=1.0)
    return build_network(values, rng)


REFERENCE = Scenario(
    "reference",
    "The reference Go simulation (vacp2p/mvds simulation/simulation.go) with its "
    "parameters: nodes, offline %, communicating nodes, sharing, interval, "
    "interactive nodes; epoch 1 s = 1 tick and its linear epoch + 2*count policy.",
    [
        Param("offline", 90.0, "percentage of sends dropped (Go's -offline)", minimum=0.0, maximum=100.0),
        *[q for q in _network_params(3, 2, 2, 2) if q.name != "availability"],
        Param("latency", 0.01, "one-way link latency (ticks)", minimum=1e-6),
        Param("delivery", "eventual", "hand messages over on arrival (eventual, as Go does) or "
              "after their parents (causal)", kind="str", choices=("eventual", "causal")),
        Param("policy", "linear", "retransmission policy", kind="str", choices=POLICY_NAMES),
        _rules_param(),
        Param("mtu", 1200, "largest datagram (bytes)", kind="int", minimum=64),
        Param("decode", True, "decode every datagram (false: hand over payload objects)", kind="bool"),
        Param("exposure", True, "track what each node observes", kind="bool"),
    ],
    build_reference,
)


# -- availability: 10 % mobiles and a 90 % desktop ------------------------------


def build_availability(p: dict[str, Any], rng: random.Random) -> Setup:
    nodes = [
        _node("A", _mode(p["mode"]), _availability(p["a_availability"]), p),
        _node("B", _mode(p["mode"]), _availability(p["b_availability"]), p),
        _node("C", _mode(p["mode"]), _availability(p["c_availability"]), p),
    ]
    pairs = ["AB", "AC", "BC"] if p["with_c"] else ["AB"]
    links = [_link(a, b, p) for a, b in pairs]
    shares = [ShareSpec(a, "chat", b) for x, y in pairs for a, b in ((x, y), (y, x))]
    appends = []
    for name in "AB":
        for index, time in enumerate(_spread(rng, p["messages"], 0.0, p["chat"])):
            appends.append(AppendSpec(time, name, "chat", f"{name} says {index}".encode()))
    appends.sort(key=lambda a: (a.time, a.node))
    return Setup(nodes, links, shares, appends, p["duration"], mtu=p["mtu"])


AVAILABILITY = Scenario(
    "availability",
    "How do A and B with 10% availability fare, alone and with a 90% available C "
    "that shares with both?",
    [
        _online_param("A", 0.1),
        _online_param("B", 0.1),
        _online_param("C", 0.9),
        Param("with_c", True, "include C (else A and B alone)", kind="bool"),
        *_chat_params(20, "A and B each", 200.0),
        *_link_params(),
        *_run_params(3000.0),
    ],
    build_availability,
)


# -- catch-up: the reference and availability scenarios, reconciliation on/off ---


def _reconcile_params() -> list[Param]:
    return [
        Param("reconcile", True, "catch up by range-based set reconciliation "
              "(docs/PROTOCOL.md section 16); false: plain MVDS", kind="bool"),
        Param("park_after", 30.0, "with reconcile: ticks of silence before a peer is parked",
              minimum=0.0),
        Param("reconcile_interval", 60.0, "with reconcile: ticks between anti-entropy rounds",
              minimum=1.0),
    ]


def _with_reconcile(setup: Setup, p: dict[str, Any]) -> Setup:
    if not p["reconcile"]:
        return setup
    setup.nodes = [
        dataclasses.replace(
            node, reconcile=True, park_after=p["park_after"],
            reconcile_interval=p["reconcile_interval"],
        )
        for node in setup.nodes
    ]
    return setup


CATCHUP_REFERENCE = Scenario(
    "catchup-reference",
    "Does reconciliation answer the catch-up question? The reference scenario "
    "(90% of sends dropped) with reconciliation on or off.",
    [*REFERENCE.params, *_reconcile_params()],
    lambda p, rng: _with_reconcile(build_reference(p, rng), p),
)

CATCHUP_AVAILABILITY = Scenario(
    "catchup-availability",
    "Does reconciliation answer the catch-up question? The availability scenario "
    "(A and B online 10% of ticks, C 90%) with reconciliation on or off.",
    [*AVAILABILITY.params, *_reconcile_params()],
    lambda p, rng: _with_reconcile(build_availability(p, rng), p),
)


# -- relay: through C, or through a semi-connected D ---------------------------


def build_relay(p: dict[str, Any], rng: random.Random) -> Setup:
    nodes = [
        _node("A", _mode(p["mode"]), ALWAYS_ON, p),
        _node("B", _mode(p["mode"]), ALWAYS_ON, p),
        _node("C", _mode(p["mode"]), _availability(p["c_availability"]), p),
        _node("D", _mode(p["mode"]), _availability(p["d_availability"]), p),
    ]
    pairs = ["AC", "CB", "AD", "DB"]
    links = [_link(a, b, p) for a, b in pairs]
    shares = [ShareSpec(a, "relay", b) for x, y in pairs for a, b in ((x, y), (y, x))]
    appends = [
        AppendSpec(time, "A", "relay", f"A to B {index}".encode())
        for index, time in enumerate(_spread(rng, p["messages"], 0.0, p["chat"]))
    ]
    return Setup(
        nodes, links, shares, appends, p["duration"], mtu=p["mtu"], trace=p["messages"] <= 5
    )


RELAY = Scenario(
    "relay",
    "How does a message get from A to B (no direct link) through C, or through a "
    "fourth node D that is only semi-connected?",
    [
        _online_param("C", 0.5),
        _online_param("D", 0.3),
        *_chat_params(40, "A", 100.0),
        *_link_params(),
        *_run_params(1000.0),
    ],
    build_relay,
)


# -- ack-loss: what happens when an ACK is lost ---------------------------------


def build_ack_loss(p: dict[str, Any], rng: random.Random) -> Setup:
    nodes = [
        _node("A", _mode(p["mode"]), ALWAYS_ON, p),
        _node("B", _mode(p["mode"]), ALWAYS_ON, p),
    ]
    links = [_link("A", "B", p, drop_acks=p["drop_acks"])]
    shares = [ShareSpec("A", "pair", "B"), ShareSpec("B", "pair", "A")]
    appends = [AppendSpec(0.0, "A", "pair", b"please ack me")]
    return Setup(nodes, links, shares, appends, p["duration"], mtu=p["mtu"], trace=True)


ACK_LOSS = Scenario(
    "ack-loss",
    "What happens when an ACK is lost? A sends B one message; the first "
    "drop_acks ACK-carrying datagrams (each way) are dropped.",
    [
        Param("drop_acks", 1, "ACK-carrying datagrams to drop per direction", kind="int", minimum=0),
        Param("mode", "batch", "mode of both nodes", kind="str", choices=MODE_NAMES),
        *_link_params(),
        *_run_params(100.0),
    ],
    build_ack_loss,
)


# -- new-party: what introducing someone reveals -----------------------------------


def build_new_party(p: dict[str, Any], rng: random.Random) -> Setup:
    nodes = [_node(name, Mode.BATCH, ALWAYS_ON, p) for name in "ABC"]
    links = [_link("A", "B", p), _link("B", "C", p)]
    join = p["join_at"]
    shares = [
        ShareSpec("A", "chat", "B"),
        ShareSpec("B", "chat", "A"),
        # B introduces C: from join_at on, B and C sync the group both ways.
        ShareSpec("B", "chat", "C", join),
        ShareSpec("C", "chat", "B", join),
    ]
    appends = []
    for index in range(p["messages"]):
        author = "AB"[index % 2]
        appends.append(AppendSpec(1.0 + index * 2, author, "chat", f"{author}: message {index}".encode()))
    for index in range(p["c_messages"]):
        appends.append(AppendSpec(join + 1.0 + index * 2, "C", "chat", f"C: message {index}".encode()))
    appends.sort(key=lambda a: (a.time, a.node))
    small = len(appends) <= 12
    return Setup(nodes, links, shares, appends, p["duration"], mtu=p["mtu"], trace=small)


NEW_PARTY = Scenario(
    "new-party",
    "What does introducing a new party reveal about who talks to whom? A and B "
    "chat; at join_at B shares the group with C.",
    [
        Param("messages", 6, "messages A and B append (alternating)", kind="int", minimum=0),
        Param("join_at", 20.0, "tick at which B introduces C", minimum=0.0),
        Param("c_messages", 2, "messages C appends after joining", kind="int", minimum=0),
        *_link_params(),
        *_run_params(100.0),
    ],
    build_new_party,
)


# -- sweeps ------------------------------------------------------------------------


def sweep_base_params(
    loss: list[float], availability: list[float], modes: list[str], policies: list[str]
) -> list[Param]:
    """A sweep's grid axes plus the base network (reference-like, 10 nodes)."""
    base = [
        q
        for q in _network_params(10, 5, 3, 0)
        if q.name not in ("interactive", "availability")
    ]
    return [
        Param("loss", loss, "loss probabilities to run", kind="floats", minimum=0.0, maximum=0.95),
        Param("availability", availability, "availabilities to run", kind="floats", minimum=0.05, maximum=1.0),
        Param("modes", modes, "modes to run", kind="strs", choices=SWEEP_MODES),
        Param("policies", policies, "retransmission policies to run", kind="strs", choices=POLICY_NAMES),
        _rules_param(),
        *base,
        Param("latency", 0.1, "one-way link latency (ticks)", minimum=1e-6),
        Param("jitter", 0.0, "extra uniform delay up to this (ticks)", minimum=0.0),
        Param("duplicate", 0.0, "probability a datagram is duplicated", minimum=0.0, maximum=1.0),
        Param("max_duration", 3000.0, "ticks each run may take at most", minimum=1.0),
        Param("mtu", 1200, "largest datagram (bytes)", kind="int", minimum=64),
    ]


def build_sweep_point(p: dict[str, Any], point: dict[str, Any], rng: random.Random) -> Setup:
    """One grid point of a sweep: the base network with the point's values."""
    count = p["nodes"]
    mode = point["mode"]
    interactive = {"batch": 0, "interactive": count, "mixed": count // 2}[mode]
    values = dict(
        p,
        loss=point["loss"],
        availability=point["availability"],
        policy=point["policy"],
        interactive=interactive,
        exposure=False,
    )
    setup = build_network(values, rng)
    setup.duration = p["max_duration"]
    setup.trace = False
    return setup


TENTHS = [round(i / 10, 1) for i in range(10)]

SWEEP_LOSS = Scenario(
    "sweep-loss",
    "Loss 0-90% against mode: delivery, latency and bandwidth per delivered message.",
    sweep_base_params(TENTHS, [1.0], list(SWEEP_MODES), ["exponential"]),
    axes=("loss", "availability", "modes", "policies"),
)
SWEEP_POLICY = Scenario(
    "sweep-policy",
    "Retransmission policies against loss: the reference's linear epoch+2*count and the "
    "sketch's count^2+1 as specified, ours (exponential) with the engine's rules "
    "(rules=spec or rules=engine runs every policy the same way).",
    sweep_base_params([0.0, 0.3, 0.5, 0.7, 0.9], [1.0], ["batch"], list(POLICY_NAMES)),
    axes=("loss", "availability", "modes", "policies"),
)
SWEEP_AVAILABILITY = Scenario(
    "sweep-availability",
    "Availability 100% down to 10% against mode: how long until everyone has everything?",
    sweep_base_params([0.0], [1.0, 0.9, 0.7, 0.5, 0.3, 0.2, 0.1], list(SWEEP_MODES), ["exponential"]),
    axes=("loss", "availability", "modes", "policies"),
)
SWEEP_MODE = Scenario(
    "sweep-mode",
    "Batch against interactive against mixed: bytes, datagrams and latency on a "
    "lossless and a lossy network.",
    sweep_base_params([0.0, 0.2], [1.0], list(SWEEP_MODES), ["exponential"]),
    axes=("loss", "availability", "modes", "policies"),
)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        SEED,
        REFERENCE,
        AVAILABILITY,
        RELAY,
        ACK_LOSS,
        NEW_PARTY,
        SWEEP_LOSS,
        SWEEP_POLICY,
        SWEEP_AVAILABILITY,
        SWEEP_MODE,
        CATCHUP_REFERENCE,
        CATCHUP_AVAILABILITY,
    )
}
"""Every scenario by name, in the order ``mvds sim --list`` shows them."""


ALL_RUNS: list[tuple[str, str, dict[str, str]]] = [
    *((name, name, {}) for name in SCENARIOS),
    # Variants docs/SIMULATION.md compares against the defaults.
    ("availability-alone", "availability", {"with_c": "false"}),
    ("reference-lossless", "reference", {"offline": "0"}),
    ("reference-causal", "reference", {"delivery": "causal"}),
    ("reference-engine-rules", "reference", {"rules": "engine"}),
    # Catch-up by reconciliation against plain MVDS, same scenario (issue 15).
    ("catchup-reference-plain", "catchup-reference", {"reconcile": "false"}),
    ("catchup-availability-plain", "catchup-availability", {"reconcile": "false"}),
    # Every policy under the same rules: the policy's shape against the
    # engine's rules.
    ("sweep-policy-spec", "sweep-policy", {"rules": "spec"}),
    ("sweep-policy-engine", "sweep-policy", {"rules": "engine"}),
]
"""What ``mvds sim all`` runs: (output directory, scenario, parameters)."""


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        known = ", ".join(SCENARIOS)
        raise ValueError(f"unknown scenario {name!r} (scenarios: {known}, all)") from None
