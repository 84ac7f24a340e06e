"""What the testbed found: a node can deliver a message before its causal past.

The shipped ring and the research sketch (docs/TESTBED.md, "What the
failing verdicts found") showed deliveries out of causal order under loss.
Reduced to three engine calls: X holds Y's ``p`` (its parent ``q`` was
lost), then appends ``m``, whose parents are X's DAG leaves, held ``p``
included; Y appends ``z`` on top of ``m``; when ``z`` reaches X its only
parent ``m`` is ready (X's own), so X delivers ``z`` while ``p`` and ``q``,
both ancestors of ``z``, are still undelivered.

Fixed in the stores: the leaves are those of the ready (delivered)
messages, so ``m`` names only what X delivered and ``z`` waits for ``p``.
"""

from mvds import Engine, EngineConfig, Mode, group_id_for_name
from mvds.engine import MessageReceived
from mvds.store.memory import MemoryStore
from mvds.wire import Payload

GROUP = group_id_for_name("chat")
X, Y = b"X" * 32, b"Y" * 32


def delivered(engine):
    return [e.message.body for e in engine.events() if isinstance(e, MessageReceived)]


def test_a_message_is_not_delivered_before_its_ancestors():
    x = Engine(MemoryStore(), EngineConfig(mode=Mode.BATCH), now=0.0)
    y = Engine(MemoryStore(), EngineConfig(mode=Mode.BATCH), now=0.0)
    x.share(GROUP, Y, now=0.0)
    y.share(GROUP, X, now=0.0)
    y.append(GROUP, b"q", now=1.0)
    p = y.append(GROUP, b"p", now=2.0)
    x.receive(Y, Payload(messages=[p]), now=3.0)  # q was lost: p is held
    assert delivered(x) == []
    m = x.append(GROUP, b"m", now=4.0)
    y.receive(X, Payload(messages=[m]), now=5.0)
    z = y.append(GROUP, b"z", now=6.0)  # z descends from m, p and q
    x.receive(Y, Payload(messages=[z]), now=7.0)
    assert b"z" not in delivered(x), "z was delivered before its ancestors p and q"
