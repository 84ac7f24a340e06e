"""Property tests: 2-5 engines over a hostile network always converge.

Random appends, loss, duplication and reordering of whole payloads, random
offline periods; then the network heals.  Whatever hypothesis draws:

* every message reaches every node in its group, exactly once to the app;
* causal order holds on causal nodes (parents handed over first);
* nothing is delivered that nobody appended;
* once healed and quiet, every node's sync state is empty.

Runs are seeded (the drawn ``seed`` drives the network) and the hypothesis
profile is derandomized by default, so failures reproduce.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import GROUP, GROUP2, Net, peer
from mvds.engine import Delivery, EngineConfig, ExponentialBackoff, Mode

NAMES = "ABCDE"


@st.composite
def scenarios(draw):
    n = draw(st.integers(min_value=2, max_value=5))
    names = NAMES[:n]
    # A random connected sharing graph: a random tree plus random extra edges.
    edges = set()
    for i in range(1, n):
        j = draw(st.integers(min_value=0, max_value=i - 1))
        edges.add((names[j], names[i]))
    for i in range(n):
        for j in range(i + 1, n):
            if draw(st.booleans()):
                edges.add((names[i], names[j]))
    second_group = draw(st.booleans())
    nodes = {
        name: {
            "mode": draw(st.sampled_from([Mode.BATCH, Mode.INTERACTIVE])),
            "delivery": draw(st.sampled_from([Delivery.CAUSAL, Delivery.EVENTUAL])),
            "max_inflight": draw(st.sampled_from([2, 8, 1024])),
            "offline": draw(
                st.lists(
                    st.tuples(
                        st.floats(min_value=0, max_value=40), st.floats(min_value=0.5, max_value=15)
                    ),
                    max_size=3,
                )
            ),
        }
        for name in names
    }
    appends = draw(
        st.lists(
            st.tuples(
                st.floats(min_value=0, max_value=40),
                st.sampled_from(names),
                st.booleans(),  # second group?
            ),
            min_size=1,
            max_size=25,
        )
    )
    return {
        "names": names,
        "edges": sorted(edges),
        "nodes": nodes,
        "appends": sorted(appends),
        "second_group": second_group,
        "seed": draw(st.integers(min_value=0, max_value=2**32 - 1)),
        "loss": draw(st.sampled_from([0.0, 0.1, 0.3, 0.5])),
        "duplicate": draw(st.sampled_from([0.0, 0.1, 0.3])),
        "jitter": draw(st.sampled_from([0.0, 0.05, 1.5])),
    }


def run_scenario(sc):
    healed = {"at": 50.0}

    def online(name: str, t: float) -> bool:
        if t >= healed["at"]:
            return True
        return not any(start <= t < start + length for start, length in sc["nodes"][name]["offline"])

    net = Net(
        seed=sc["seed"],
        loss=sc["loss"],
        duplicate=sc["duplicate"],
        jitter=sc["jitter"],
        online=online,
        record_sent=False,
    )
    for name in sc["names"]:
        spec = sc["nodes"][name]
        net.add(
            name,
            EngineConfig(
                epoch_length=1.0,
                mode=spec["mode"],
                delivery=spec["delivery"],
                max_inflight=spec["max_inflight"],
                policy=ExponentialBackoff(max_delay=32),
                seed=sc["seed"],
            ),
        )
    groups = [GROUP, GROUP2] if sc["second_group"] else [GROUP]
    for a, b in sc["edges"]:
        for g in groups:
            net.share(g, a, b)

    appended: dict[bytes, dict] = {}
    own: dict[str, list[bytes]] = {name: [] for name in sc["names"]}
    for i, (t, name, second) in enumerate(sc["appends"]):
        net.run(max(0.0, t - net.now))
        group = GROUP2 if (second and sc["second_group"]) else GROUP
        m = net.append(name, b"%s-%d" % (name.encode(), i), group)
        appended[m.id] = {"author": name, "message": m}
        own[name].append(m.id)
        # Causal check needs to know what the author had when appending.
    net.run(max(0.0, healed["at"] - net.now))
    net.loss = 0.0
    net.duplicate = 0.0
    for _ in range(40):
        net.run(100.0)
        if net.quiet():
            break
    return net, appended, own


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_engines_converge_exactly_once_in_causal_order(sc):
    net, appended, own = run_scenario(sc)
    all_ids = set(appended)
    for name in sc["names"]:
        received = net.received_ids(name)
        assert len(received) == len(set(received)), f"{name} got a message twice"
        assert not set(received) & set(own[name]), f"{name} was handed its own message"
        assert set(received) <= all_ids, "delivered something nobody appended"
        assert set(received) | set(own[name]) == all_ids, (
            f"{name} is missing {len(all_ids - set(received) - set(own[name]))} messages"
        )
        if sc["nodes"][name]["delivery"] is Delivery.CAUSAL:
            seen = set(own[name])  # own messages are always known to their author
            for event in net.delivered[name]:
                for parent in event.message.parents:
                    assert parent in seen, f"{name}: child handed over before its parent"
                seen.add(event.message.id)
        seqs = [event.seq for event in net.delivered[name]]
        assert seqs == list(range(1, len(seqs) + 1)), "seq numbers are 1, 2, 3, ..."
    for name, engine in net.engines.items():
        assert engine.is_quiet(), f"{name} still has sync state: {engine.pending()}"


def test_a_known_hard_case_reproduces():
    """A fixed lossy, bursty 5-node case: a regression anchor with a seed."""
    sc = {
        "names": "ABCDE",
        "edges": [("A", "B"), ("A", "C"), ("B", "D"), ("C", "D"), ("D", "E")],
        "nodes": {
            n: {
                "mode": Mode.INTERACTIVE if n in "CE" else Mode.BATCH,
                "delivery": Delivery.CAUSAL,
                "max_inflight": 8,
                "offline": [(2.0, 6.0), (20.0, 8.0)] if n in "AB" else [],
            }
            for n in "ABCDE"
        },
        "appends": sorted((i * 0.7, "ABCDE"[i % 5], False) for i in range(60)),
        "second_group": False,
        "seed": 1234,
        "loss": 0.5,
        "duplicate": 0.1,
        "jitter": 1.5,
    }
    net, appended, own = run_scenario(sc)
    for name in "ABCDE":
        assert set(net.received_ids(name)) | set(own[name]) == set(appended)
        assert net.engines[name].is_quiet()
    assert peer("A") != peer("B")
